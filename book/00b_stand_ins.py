# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 00b · The foundation models, in small
#
# NeuroClips stands on seven pretrained models: an SD VAE, OpenCLIP ViT-bigG/14, MindEye2's unCLIP, BLIP-2,
# AnimateDiff with its RGB SparseCtrl, and two classifiers (ViT, VideoMAE) that only score. None of them can be
# downloaded here, and none has ever seen cc2017-sim's world. So the `sim` profile replaces each by a
# **stand-in**: a small model of *the same library class*, trained on a pretraining corpus of simulated shots
# drawn from a seed stream cc2017-sim never uses (as SD never saw cc2017), saved in that library's own format and
# read back by *the same loader* that reads the real weights. The rest of the book cannot tell them apart.
#
# | role | paper weights | stand-in (same class, small) |
# |---|---|---|
# | `vae` | SD-1.x `AutoencoderKL`, 8x down | `AutoencoderKL`, 64x64x3 <-> 4x16x16 (4x down: the class lives in 5-px texture) |
# | `clip` | OpenCLIP ViT-bigG/14: 256x1664 image tokens | open_clip `CLIP`: 64x128 image tokens, vision tower started from the frame classifier |
# | `unclip` | MindEye2 SDXL unCLIP (`unclip6`) | `UNet2DConditionModel` cross-attending to the clip tokens, unclip6's Euler scheduler |
# | `captioner` | BLIP-2 OPT-2.7b | `Blip2ForConditionalGeneration` (ViT from the frame classifier, Q-Former, OPT, a BPE built here) |
# | `t2v` | AnimateDiff v3 + RealisticVision | `UNetMotionModel` + `CLIPTextModel` + the real CLIP BPE tokenizer |
# | `sparsectrl` | SparseCtrl RGB | `SparseControlNetModel`, RGB layout (4 latent + 1 mask channels) |
# | `frame_classifier` | ViT-B/16 (ImageNet) | `ViTForImageClassification` over the 64 sim classes |
# | `video_classifier` | VideoMAE (Kinetics) | `VideoMAEForVideoClassification`, started from the frame classifier |
#
# They were trained once, with one command (seeded, logged, resumable), and ship inside the package, each
# stamped with the simulator version and training config it came from:
#
# ```bash
# python -m neuroclips_core train-standins            # all roles, in dependency order (hours on 2 CPU cores)
# python -m neuroclips_core standins                  # their stamps: time, size, metrics beside the targets
# ```
#
# This chapter loads them (or retrains them, with `retrain_standins=True`) and shows what each does on
# **held-out** corpus clips.

# %%
import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from neuroclips_core.data.sim_checks import blur
from neuroclips_core.data.sim_stimuli import CLASSES
from neuroclips_core.notebook import chapter_config, env_default
from neuroclips_core.viz import frames as vframes
from neuroclips_core.zoo import corpus, load_standin, train_standins
from neuroclips_core.zoo.motion import motion_direction_agreement, object_trajectory
from neuroclips_core.zoo.standins import standin_folder, standin_root as resolve_standin_root
from neuroclips_core.zoo.targets import stamp_summary, targets_table
from neuroclips_core.zoo.train import RECIPES, TRAINING_LOG
from neuroclips_core.zoo.train.captioner import caption_images
from neuroclips_core.zoo.train.classifiers import clip_mean_frame_logits, predict_clips, predict_frames
from neuroclips_core.zoo.train.clip import embed_images, embed_texts
from neuroclips_core.zoo.train.vae import psnr, reconstruct, ssim
from neuroclips_core.zoo.train.video import VideoParts, generate_videos, keyframe_effect_by_timestep
from neuroclips_core.zoo.unclip_sampling import generate_keyframes, image_tokens

# %% tags=["parameters"]
profile = "sim"
subject = 1                # the stand-ins serve every subject; kept for the book's common parameters
quick = env_default("NEUROCLIPS_QUICK", False)
seed = 0
data_root = None           # the stand-ins are judged on the pretraining corpus, not on cc2017(-sim)
run_root = None
retrain_standins = False   # True: train the stand-ins here (quick mode: a few steps each, into runs/)
standin_root = None        # None: $NEUROCLIPS_STANDINS or the shipped weights (retraining in quick mode: runs/standins-quick)
n_show = None              # held-out items drawn and scored live; None: 128 (quick: 8)

# %%
cfg = chapter_config(profile=profile, subject=subject, quick=quick, seed=seed, data_root=data_root,
                     run_root=run_root)
(cfg.run_root / cfg.profile / "figures").mkdir(parents=True, exist_ok=True)
pd.set_option("display.max_colwidth", 120)


def hwc(x: torch.Tensor) -> np.ndarray:
    """(..., 3, H, W) in [0, 1] -> (..., H, W, 3), the layout the frame-drawing helpers take."""
    return x.movedim(-3, -1).numpy()


n_show = n_show or (8 if cfg.quick else 128)
if retrain_standins:
    results = train_standins(quick=cfg.quick, out=standin_root, seed=cfg.seed)
    standin_root = next(iter(results.values())).folder.parent
root = resolve_standin_root(standin_root)
print(f"stand-ins from {root}")

# %% [markdown]
# ## What was trained, for how long
#
# Each stamp records the training run (steps, batch, minutes on this 2-core CPU) and the held-out metrics
# measured on the saved and reloaded weights, in float32, exactly as the book loads them.

# %%
stamp_summary(root).round(3)

# %%
roles = [r for r in RECIPES if (standin_folder(r, root) / TRAINING_LOG).is_file()]
fig, axes = plt.subplots(1, len(roles), figsize=(2.6 * len(roles), 2.4), squeeze=False)
for ax, role in zip(axes[0], roles):
    log = [json.loads(line) for line in (standin_folder(role, root) / TRAINING_LOG).read_text().splitlines()]
    ax.plot([r["step"] for r in log], [r["loss"] for r in log], lw=1)
    ax.set_title(role, fontsize=9)
    ax.set_xlabel("step")
axes[0, 0].set_ylabel("training loss")
fig.tight_layout()

# %% [markdown]
# ## The targets
#
# Each stand-in has to be good enough for the chapters that use it (issue 3). The table sets each measured
# number beside its baseline (chance, an unrelated frame, or a ceiling) and the target:

# %%
targets = targets_table(root)
targets.round(3)

# %% [markdown]
# ## The classifiers: the judges of the semantic metrics
#
# The N-way metrics of chapter 04 ask a classifier which class a reconstructed frame (ViT) or video
# (VideoMAE) shows. The stand-ins output the 64 sim class ids, and expect what the real checkpoints expect
# (resize, mean 0.5, std 0.5: their processor config is saved beside them). Blur leaves them at chance, which is
# the sim's premise: the class lives in fine detail.
#
# The VideoMAE starts from the ViT's weights and is trained on clips with two teachers: the labels, and the ViT's
# own verdict on the clip, its logits averaged over the 16 frames (knowledge distillation). That average is right
# far more often than the ViT on any one frame, since a clip shows its object at several places, sizes and angles;
# it is the third column below, and the bar the VideoMAE is pulled towards.

# %%
frame_classifier = load_standin("frame_classifier", root=root)
video_classifier = load_standin("video_classifier", root=root)
frames = corpus.heldout_frames(cfg.seed, n_show)
clips = corpus.heldout_clips(cfg.seed, min(n_show, 64))
pred = predict_frames(frame_classifier, frames.images)
blurred = torch.from_numpy(blur(frames.images.permute(0, 2, 3, 1).numpy())).permute(0, 3, 1, 2).contiguous()
pd.DataFrame({"frame classifier top-1": [(pred == frames.labels).float().mean().item()],
              "... on blurred frames": [(predict_frames(frame_classifier, blurred) == frames.labels)
                                        .float().mean().item()],
              "frame classifier, averaged over a clip": [(clip_mean_frame_logits(frame_classifier, clips.clips)
                                                          .argmax(-1) == clips.labels).float().mean().item()],
              "video classifier top-1": [(predict_clips(video_classifier, clips.clips) == clips.labels)
                                         .float().mean().item()],
              "chance": [1 / len(CLASSES)], "n (frames, clips)": [f"{n_show}, {len(clips.labels)}"]}).round(3)

# %%
confusion = np.zeros((8, 8))       # confusions between outlines and between patterns (class = shape*8 + pattern)
for t, p in zip(frames.labels.tolist(), pred.tolist()):
    confusion[t // 8, p // 8] += 1
fig, ax = plt.subplots(figsize=(3.6, 3.2))
ax.imshow(confusion / confusion.sum(1, keepdims=True).clip(1), cmap="viridis", vmin=0, vmax=1)
ax.set(xlabel="predicted outline", ylabel="true outline", title="frame classifier, by outline")
fig.tight_layout()

# %% [markdown]
# ## The VAE: the ceiling of everything decoded
#
# The Perception Reconstructor predicts VAE latents, and unCLIP and AnimateDiff denoise in them, so nothing this
# book draws can be sharper than a VAE round trip. Its PSNR is the ceiling every later frame is measured against.

# %%
vae = load_standin("vae", root=root)
rec = reconstruct(vae, frames.images)
pd.DataFrame({"PSNR (dB)": [psnr(rec, frames.images).mean().item()],
              "SSIM": [ssim(rec, frames.images).mean()],
              "classifier top-1 on reconstructions": [(predict_frames(frame_classifier, rec) == frames.labels)
                                                      .float().mean().item()],
              "unrelated frame's SSIM": [ssim(frames.images.roll(1, 0), frames.images).mean()]}).round(3)

# %%
fig = vframes.frame_strip([hwc(frames.images[:8]), hwc(rec[:8])], row_labels=["held-out", "VAE round trip"])

# %% [markdown]
# ## CLIP: a joint space for frames and captions
#
# Its image tokens (64 x 128 here, 256 x 1664 for bigG) are what the Semantics Reconstructor regresses and what
# unCLIP is conditioned on. Trained contrastively on keyframes and their clips' captions, it must find each
# frame's caption among 100: the class alone is not enough (a perfect class reader tops out near 0.51, since
# about 1.5 other captions in 100 share the class), so it must read colour and background too.

# %%
clip = load_standin("clip", root=root)
keys = corpus.heldout_keyframes(cfg.seed, n_show)
image_emb = embed_images(clip.model, keys.images, clip.preprocess_cfg)
text_emb = embed_texts(clip.model, clip.tokenizer, keys.captions)
sim = (image_emb @ text_emb.T).numpy()
fig, ax = plt.subplots(figsize=(3.8, 3.4))
ax.imshow(sim[:8, :8], cmap="magma")
ax.set(xlabel="caption", ylabel="keyframe", title="cosine similarity (diagonal: true pairs)")
fig.tight_layout()
print(f"image -> caption top-1 among {len(keys.captions)}: {(sim.argmax(1) == np.arange(len(sim))).mean():.3f} "
      f"(chance {1 / len(sim):.3f})")

# %% [markdown]
# ## unCLIP: keyframes from image tokens
#
# The Semantics Reconstructor hands unCLIP predicted tokens; here it gets the true ones. It can start from pure
# noise (the official code) or, as the paper describes beta guidance, from a given image at a chosen noise level:
# the blurry first frame of the Perception Reconstructor. Here the start is a blurred keyframe (strength 0.6:
# 60 % of the steps run).

# %%
unclip = load_standin("unclip", root=root)
tokens = image_tokens(clip, keys.images)
steps = 6 if cfg.quick else 25
gen = generate_keyframes(unclip, vae, tokens, steps=steps, guidance_scale=3.0,
                         generator=torch.Generator().manual_seed(cfg.seed))
blurred_keys = torch.from_numpy(blur(keys.images.permute(0, 2, 3, 1).numpy())).permute(0, 3, 1, 2).contiguous()
from_blur = generate_keyframes(unclip, vae, tokens, init_images=blurred_keys, strength=0.6, steps=steps,
                               guidance_scale=3.0, generator=torch.Generator().manual_seed(cfg.seed))
rows = {"keyframe": keys.images, "from noise": gen, "blurred start": blurred_keys, "from the blurred frame": from_blur}
pd.DataFrame({name: {"classifier top-1": (predict_frames(frame_classifier, x) == keys.labels).float().mean().item(),
                     "SSIM to keyframe": ssim(x, keys.images).mean()} for name, x in rows.items()}).T.round(3)

# %%
fig = vframes.frame_strip([hwc(x[:8]) for x in rows.values()], row_labels=list(rows))

# %% [markdown]
# ## The captioner: words for the keyframe
#
# BLIP-2 describes each reconstructed keyframe, and the caption becomes AnimateDiff's prompt (gamma guidance).
# A single frame shows class, colour and background, not motion, so the motion words it writes are guesses.

# %%
captioner = load_standin("captioner", root=root)
captions = caption_images(captioner, keys.images[:8])
pd.DataFrame({"true caption": keys.captions[:8], "generated": captions,
              "class named": [CLASSES[label] in text for label, text in zip(keys.labels[:8].tolist(), captions)]})

# %% [markdown]
# ## AnimateDiff + SparseCtrl: a video from a keyframe and a caption
#
# The text-to-video model makes 16 frames at 8 FPS from a caption; the RGB SparseCtrl holds the keyframe at
# frame 0 (beta guidance), and the caption says which way the object goes. Each generated clip is read for
# motion with the same estimator that reads the ground truth (`neuroclips_core.zoo.motion`).
#
# *One departure from AnimateDiff:* the stand-in's UNet predicts the velocity
# $v = \sqrt{\bar\alpha_t}\,\epsilon - \sqrt{1-\bar\alpha_t}\,x_0$ where AnimateDiff's predicts the noise $\epsilon$
# (the scheduler's `prediction_type`; everything else, the schedule, DDIM, Eq. 5, reads it from there). At the
# highest noise levels an $\epsilon$ model has to hand back its input almost unchanged, and a small UNet's error in
# doing so drowned everything a caption could add: the epsilon stand-in's estimate of the clean latents at
# $t = 999$ was 2.6 times worse than guessing zeros, with or without its caption. There $v$ is mostly $-x_0$, which
# is what the caption tells. Retrained that way, the t2v's clean-latent error at $t = 801$ is 0.263 with the true
# caption, 0.312 with none and 0.422 with another clip's (`benchmarks/probe_caption_use.py`); the epsilon model's
# was 0.55 for all three.

# %%
parts = VideoParts(load_standin("t2v", root=root), vae, load_standin("sparsectrl", root=root))
n_video = 2 if cfg.quick else 32
videos = generate_videos(parts, clips.captions[:n_video], keyframes=clips.clips[:n_video, 0],
                         steps=6 if cfg.quick else 25, seed=cfg.seed)
agreement = motion_direction_agreement(videos, clips.velocity[:n_video])
pd.DataFrame({"frame-0 SSIM to keyframe": [ssim(videos[:, 0], clips.clips[:n_video, 0]).mean()],
              "frame-0 SSIM to an unrelated keyframe": [ssim(videos[:, 0], clips.clips[:n_video, 0].roll(1, 0))
                                                        .mean()],
              "moves the right way (moving clips)": [agreement["agreement"]],
              "moving clips": [agreement["n_moving"]]}).round(3)

# %%
pairs = [video for i in range(min(n_video, 4)) for video in (hwc(clips.clips[i]), hwc(videos[i]))]
gif = vframes.side_by_side_gif(pairs, cfg.run_root / cfg.profile / "figures" / "standin_videos.gif", fps=8, scale=2,
                               labels=[label for i in range(len(pairs) // 2) for label in (f"true {i}", f"gen {i}")])
for i in range(len(pairs) // 2):
    print(f"{i}: {clips.captions[i]}")
vframes.show_gif(gif)

# %% [markdown]
# ### Where along the chain the keyframe acts
#
# A sampler follows the UNet's estimate of the clean latents, $\hat x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,
# \hat\epsilon)/\sqrt{\bar\alpha_t}$. So the SparseCtrl's worth at a noise level is how much its residuals shrink
# the error of $\hat x_0$ there: with the clip's own frame 0 as keyframe against none, and against another clip's
# frame 0, which should make it worse. Frame 0 holds the keyframe; the later frames get it only through the
# SparseCtrl's temporal attention. The sim's five-step chain visits $t$ = 801, 601, 401, 201 and 1 after the
# alpha-guided start (`neuroclips_core.zoo.train.video.keyframe_effect_by_timestep`;
# `benchmarks/probe_sparsectrl_timesteps.py` prints the same for other checkpoints).

# %%
effect = pd.DataFrame(keyframe_effect_by_timestep(
    parts, clips.clips[:4 if cfg.quick else 16], clips.captions[:4 if cfg.quick else 16],
    timesteps=(961, 401, 41) if cfg.quick else (961, 801, 601, 401, 201, 41), seed=cfg.seed)).set_index("t")
fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
for ax, where, title in zip(axes, ("frame0", "later"), ("frame 0 (the keyframe's)", "frames 1-15")):
    for name, style in (("none", "k--"), ("own", "C0o-"), ("other", "C3s-")):
        ax.plot(effect.index, effect[f"{name}_{where}"], style, label={"none": "no keyframe", "own": "its own",
                                                                      "other": "another clip's"}[name])
    ax.set(title=title, xlabel="timestep t", yscale="log")
    ax.invert_xaxis()
axes[0].set_ylabel("clean-latent MSE")
axes[0].legend(fontsize=8)
plt.tight_layout()
plt.show()
effect.round(3)

# %% [markdown]
# Read the two panels from the left, in the order a chain runs. At high noise the keyframe sets the clip: its own
# frame 0 cuts frame 0's error several-fold against no keyframe and roughly halves the later frames', and another
# clip's makes both worse, so the residuals carry *this* keyframe's layout and colours. By $t \approx 200$ the
# curves nearly meet: there the noisy latents already show the layout, and what is left to draw is the 5-px
# texture and outline that carry the class. The stand-in SparseCtrl barely adds them even at frame 0, and not at
# all later, where the object has moved from where the keyframe shows it (SparseCtrl zeroes its noisy input, so it
# cannot see where the object went). That is why a keyframe steers the sim's videos' colours and layout but lifts
# their 50-way class scores little: chapter 06 measures it.

# %% [markdown]
# These are the models the rest of the book stands on. Where a chapter's number is limited by one of them
# (a 50-way score by the classifier, an SSIM by the VAE), the chapter says so and points back here.
