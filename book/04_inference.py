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
# # 04 · Inference: fMRI in, an 8 FPS video out
#
# Everything so far decoded parts of a video from one fMRI sample: chapter 02's **blurry video** (where things
# are and how they move, 6 frames at 3 FPS), chapter 03's **keyframe** (what is there) and its **caption**. This
# chapter hands all three to a text-to-video diffusion model, AnimateDiff with an RGB SparseCtrl, and scores the
# 16-frame, 8 FPS videos it makes the way the field scores them (paper §3.3, §4.3, Table 1).
#
# Three kinds of guidance steer one DDIM chain:
#
# - **alpha, the blurry video.** Its 6 frames are interpolated to 16 (the official 3 → 8 FPS step: frame $j$ at
#   position $3j$), VAE-encoded to $z_{\text{blurry}}$, and taken as an intermediate point of the forward process
#   at step $\theta T$ (paper Eq. 5), then pushed forward the rest of the way to $T$:
#
#   $$z_T = \sqrt{\frac{\bar\alpha_T}{\bar\alpha_{\theta T}}}\; z_{\text{blurry}} +
#   \sqrt{1 - \frac{\bar\alpha_T}{\bar\alpha_{\theta T}}}\;\epsilon, \qquad \epsilon \sim \mathcal{N}(0, I),$$
#
#   and the reverse chain runs the whole way from $T$ to 0. Larger $\theta$ means a larger weight on the blurry
#   video: $\theta = 0$ is plain forward noising of a clean video, $\theta = 1$ takes the blurry latents for the
#   noise itself.
# - **beta, the keyframe.** Its VAE latent sits at frame 0 of the SparseCtrl's condition (with a mask that is 1
#   there and 0 elsewhere), and SparseCtrl's residuals steer the UNet at every step, on both CFG branches.
# - **gamma, the caption.** The keyframe's caption is the prompt, with classifier-free guidance.
#
# **Where this book departs from the paper or the official code, and why** (neuroclips-official-code.md §6, §11):
#
# - *theta is honoured* (`alpha_mode = "paper"`). The official pipeline computes a start step from theta and then
#   ignores it, noising the blurry latents to the chain's first timestep (961), which is Eq. 5 at $\theta = 0$;
#   `alpha_mode = "official"` reproduces it. Neither truncates the chain into img2img.
# - *The discrete T is the chain's first timestep* (961 for 25 DDIM steps with AnimateDiff's "leading" spacing),
#   not 1000: $z_T$ enters the UNet at that timestep, so it must carry that noise level.
# - *A seed per clip*, a function of the run seed and the clip's index (never of batching): the official code
#   resets one seed before every clip, so every clip starts from the same noise. Every variant of a clip starts
#   from the same noise, so ablations differ by their guidance alone.
# - *VAE posterior means* for the blurry frames and the keyframe, so a video is a function of its inputs and seed.
# - *Batched*, in the models' dtype; the official code runs one clip at a time in fp32.
# - *Independent noise per frame* in the paper profile, as the paper and the official code. **The sim profile
#   departs here**: a clip's 16 frames share the fine detail of their starting noise (`frame_noise_share` 1 above
#   `frame_noise_cutoff` 0.4 of the Nyquist frequency; each frame keeps its own coarse noise). The t2v stand-in's
#   motion module ties frames together less well than AnimateDiff's, so with independent noise each frame drew its
#   own fine texture, which is where the sim classes live, and the videos flickered (CLIP-pcc 0.806 against the
#   truth's 0.902 on a validation seed). Sharing *all* of the noise (PYoCo's "mixed" prior) smoothed them too, but
#   let the noise, not the blurry video, set the layout; sharing only the detail keeps the layout the blurry
#   video's. The setting was chosen on seed 12 and on the stand-ins' held-out corpus, not on the seed measured
#   below (`benchmarks/probe_frame_noise.py` has the tables); `-p frame_noise_share 0` gives the paper's sampler.
# - *The sim profile* runs the stand-ins at their 64 px, a 5-step chain and no CFG (the 2-core budget: 5 minutes for
#   the 240 test clips; at guidance scale 1 the caption still conditions the one branch that runs, and CFG 3 moved
#   no score by more than the probe's noise at 1.34 times the cost, see `VideoGenerationConfig.sim`); the paper
#   profile keeps the official settings: 25 DDIM steps, CFG 8.5, 16 frames at 256 px, theta 0.3, the official
#   prompt suffix and negative prompt.

# %%
import dataclasses

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display

from neuroclips_core.data.ensure import ensure_store
from neuroclips_core.keyframes_run import reconstruct_semantics
from neuroclips_core.metrics import align_to_ground_truth
from neuroclips_core.metrics_table import PAPER_TABLE1, table1_frame
from neuroclips_core.notebook import chapter_config, env_default, parameter_list
from neuroclips_core.perception_run import train_perception
from neuroclips_core.pipelines.alpha_guidance import alpha_noising
from neuroclips_core.pipelines.blurry import interpolate_frames
from neuroclips_core.semantics_run import train_semantics
from neuroclips_core.video_run import VARIANTS, generation_config, reconstruct_videos, score_references, write_gifs
from neuroclips_core.viz import frames as vframes
from neuroclips_core.viz.browser import BrowserData, KeyframeBrowser
from neuroclips_core.zoo.train.video import animatediff_scheduler

# %% tags=["parameters"]
profile = "sim"
subject = 1
quick = env_default("NEUROCLIPS_QUICK", False)
seed = 0
data_root = None
run_root = None
theta = None               # Eq. 5's theta in [0, 1]; None: the profile's (0.3, the paper's)
alpha_mode = "paper"       # "paper": Eq. 5 with theta; "official": noised to the chain's first step, theta ignored
frame_noise_share = None   # fraction in [0, 1] of the starting noise a clip's frames share; None: the profile's (0)
frame_noise_cutoff = None  # share only above this spatial frequency (fraction of Nyquist, [0, 1)); None: profile's
compare = None             # variants beside "full"; None: ["no_blurry"] ([] in quick mode); chapter 06 runs them all
n_clips = None             # generate and score the first n test clips; None: all (the first 24 in quick mode)
retrain = False            # generate again even if this exact run is already on disk

# %%
cfg = chapter_config(profile=profile, subject=subject, quick=quick, seed=seed,
                     data_root=data_root, run_root=run_root)
compare = parameter_list(compare, VARIANTS, "compare", [] if cfg.quick else ["no_blurry"])   # "-p compare a,b"
config = generation_config(cfg).replace(
    alpha_mode=alpha_mode, **({"theta": float(theta)} if theta is not None else {}),
    **({"frame_noise_share": float(frame_noise_share)} if frame_noise_share is not None else {}),
    **({"frame_noise_cutoff": float(frame_noise_cutoff)} if frame_noise_cutoff is not None else {}))
pd.Series(dataclasses.asdict(config)).to_frame("generation config")

# %% [markdown]
# ## Eq. 5: how much of the blurry video is in $z_T$
#
# The two coefficients of Eq. 5 over theta, for the chain this chapter runs and the paper's 25-step chain. They are
# the sine and cosine of one angle, so $z_T$ keeps unit variance. At the paper's $\theta = 0.3$ the blurry latents
# enter a 25-step chain (first timestep 961) with a weight of about 0.07, and the official code's theta-blind start
# gives 0.05; the sim's 5-step chain starts at timestep 801, where the weight is 0.15. Small per latent pixel, but
# a clip's 16 frames of 32 × 32 latents (8 × 8 × 16 × 16 for the stand-ins) average the noise down, so the colours
# and layout survive into the chain's first steps.

# %%
scheduler = animatediff_scheduler()
thetas = np.linspace(0, 1, 101)
fig, ax = plt.subplots(figsize=(6, 3))
for steps, style in ((config.num_inference_steps, "-"), (25, ":")):
    co = [alpha_noising(t, scheduler, steps) for t in thetas]
    ax.plot(thetas, [c.signal for c in co], style, color="C0", label=f"blurry weight, {steps} steps")
    ax.plot(thetas, [c.noise for c in co], style, color="C1", label=f"noise weight, {steps} steps")
chosen = alpha_noising(config.theta, scheduler, config.num_inference_steps, config.alpha_mode)
ax.plot([config.theta], [chosen.signal], "ko")
ax.set(xlabel=r"$\theta$", ylabel="coefficient in $z_T$", yscale="log", ylim=(1e-3, 1.5),
       title=f"Eq. 5; this run: theta {config.theta}, {config.alpha_mode} mode, {config.num_inference_steps} steps "
             f"-> blurry weight {chosen.signal:.3f}")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## The inputs: chapters 02 and 03
#
# The blurry videos, keyframes and captions come from the runs of chapters 02 and 03 (reused when they are on disk
# with the same parameters, trained here otherwise).

# %%
store = ensure_store(cfg, cfg.subject)
perception = train_perception(cfg, store=store)
semantics = train_semantics(cfg, store=store)
keyframes = reconstruct_semantics(cfg, store=store)
print(f"subject {cfg.subject}: {store.n_test} test clips; blurry videos {perception.blurry().shape}, keyframes "
      f"{keyframes.keyframes.shape}")

# %% [markdown]
# ## Generation and scoring
#
# `reconstruct_videos` runs the pipeline over every test clip and scores the videos against the 6 stored
# ground-truth frames. A 16-frame video at 8 FPS is scored on its frames 0, 3, ..., 15, the ones the blurry
# video's 6 frames were placed at (the 8 → 3 FPS alignment, written down in `metrics_semantic.
# aligned_frame_indices`). The recipes:
#
# - **Pixel level** on those 6 frames: SSIM (S1 colour 7 × 7 window; S2 grayscale Gaussian, the headline; S2'),
#   PSNR on uint8 RGB.
# - **Semantic level**: N-way top-1 with the field's top-3 rule: the classifier's top 3 classes on the ground
#   truth are the targets, each trial draws N−1 distractors, 100 trials, ± the binomial SE. Frame-level with the
#   frame classifier (ViT), video-level with the video classifier (VideoMAE) on the 6-frame video, as the field's
#   harness loads it.
# - **Spatiotemporal level**: CLIP-pcc, the mean cosine of adjacent frames' CLIP embeddings. On all 16 frames it
#   is Table 1's number; on the 6 aligned frames it can be set beside the ground truth's own, at the same frame
#   rate.
#
# The references are read the same way: the blurry video (alpha guidance alone, interpolated to 16 frames) and
# the ground truth's CLIP-pcc.

# %%
runs = {variant: reconstruct_videos(cfg, variant=variant, config=config, store=store, n_clips=n_clips,
                                    retrain=retrain)
        for variant in ["full", *compare]}
refs = score_references(cfg, store=store, n_clips=n_clips)
print(f"{runs['full'].n_clips} of {store.n_test} test clips")
for name, run in runs.items():
    t = run.summary["timings"]
    # "rescored": an earlier run's videos, scored again because only a judge's weights changed
    how = "reused" if run.reused else "rescored" if t.get("rescored") else "made"
    print(f"{name:12s} {how}: {t['generation_s']:.0f} s generation ({t['seconds_per_clip']:.2f} s per clip), "
          f"{t['score_s']:.0f} s scoring")

# %%
COLUMNS = {"SSIM S2": "ssim_s2", "SSIM S1": "ssim_s1", "PSNR": "psnr", "frame 2-way": "frame_2way",
           "frame 50-way": "frame_50way", "video 2-way": "video_2way", "video 50-way": "video_50way",
           "CLIP-pcc (16 frames)": "clip_pcc_adjacent", "CLIP-pcc (6 aligned)": "clip_pcc_aligned",
           "CLIP sim. to truth": "clip_similarity_to_truth"}


def row(scores: dict) -> dict:
    return {name: scores[key]["mean"] for name, key in COLUMNS.items() if key in scores}


table = pd.DataFrame({**{f"{name}: {VARIANTS[name].what}": row(run.metrics) for name, run in runs.items()},
                      "blurry video alone (alpha)": row(refs["blurry"]),
                      "ground truth": {"CLIP-pcc (6 aligned)": refs["ground_truth"]["clip_pcc_aligned"]["mean"]}}).T
table.style.format("{:.3f}", na_rep="")

# %% [markdown]
# ## Table 1 for this subject
#
# Our full model's row beside the paper's NeuroClips row for the same cc2017 subject, with the chance level of
# each semantic column and the recipe each column was computed with. The numbers are not comparable in level (a
# simulated world, 64-px stand-ins trained on two CPU cores, 64 classes instead of ImageNet's 1000); they are
# comparable in recipe.

# %%
paper_row = PAPER_TABLE1.get(f"subject {cfg.subject}", PAPER_TABLE1["average"])
table1_frame(runs["full"].metrics, paper_row, ours=f"ours (sim, subject {cfg.subject})",
             paper_label=f"NeuroClips (paper, subject {cfg.subject})")

# %% [markdown]
# ## A gallery: best and worst clips
#
# Clips ranked by their frame-level 50-way success (ties broken by SSIM S2): the three best and the three worst,
# each as ground truth (6 frames), blurry video, and the generated video at its 6 aligned frames. The keyframe is
# the first frame the video was held to.

# %%
full = runs["full"]
per = full.summary["per_clip"]
rank = np.lexsort((np.asarray(per["ssim_s2"]), np.asarray(per["frame_50way"])))[::-1]
picks = {"best": rank[:3], "worst": rank[-3:]}
videos = full.videos
blurry6 = np.asarray(perception.blurry())
truth = np.asarray(store.frames_test)
kf = np.asarray(keyframes.keyframes)
captions = keyframes.captions
for label, clips in picks.items():
    rows, names = [], []
    for i in clips:
        rows += [truth[i], blurry6[i], align_to_ground_truth(np.asarray(videos[i:i + 1]))[0]]
        names += [f"clip {i}: truth", "blurry", f"video (50-way {per['frame_50way'][i]:.2f})"]
    vframes.frame_strip(rows, row_labels=names, suptitle=f"{label} clips", frame_inches=0.9)
    plt.show()
    for i in clips:
        print(f"clip {i}: caption '{captions[i]}'")

# %% [markdown]
# The same clips as moving pictures: ground truth (its 6 frames held to 8 FPS) | blurry video | keyframe | video.

# %%
gallery = cfg.run_dir / "inference" / "full" / "gallery"
order = np.concatenate([picks["best"], picks["worst"]])
paths = write_gifs(gallery, truth[order], interpolate_frames(blurry6[order], 16), kf[order], np.asarray(videos[order]))
for i, path in zip(order, paths):
    display(vframes.show_gif(path, width=4 * 130))

# %% [markdown]
# ## The keyframe browser
#
# Every test clip, side by side: ground truth, blurry video, keyframe and caption, final video, with the clip's
# scores; sort by any score, filter by a score range or by words in the captions, jump to the best or worst.
# (In the built book the widget shows the clip it was saved on; rerun the notebook in JupyterLab to browse.)

# %%
browser = KeyframeBrowser(BrowserData.from_run(cfg.run_dir, "full"))
browser.set_sort("frame_50way", descending=True)
browser

# %% [markdown]
# ## Acceptance (issue 6), this subject
#
# Each check beside its margin: for the comparisons of two runs on the same clips, the SEM of the per-clip
# difference says whether the margin is more than the clips' noise (a 50-way success rate per clip is noisy: 100
# trials of one video).

# %%
def paired(ours: list, reference: list) -> tuple[float, float]:
    """Mean and SEM of the per-clip difference of two runs on the same clips."""
    d = np.asarray(ours, float) - np.asarray(reference, float)
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(d.size))


f, b = runs["full"], refs["blurry"]
checks = {}
for name, key in (("frame 50-way", "frame_50way"), ("video 50-way", "video_50way")):
    diff, sem = paired(f.summary["per_clip"][key], b["per_clip"][key])
    checks[f"full beats the blurry video on {name}"] = dict(
        full=f.metrics[key]["mean"], reference=b[key]["mean"], margin=diff, sem=sem, passes=diff > 0)
if "no_blurry" in runs:
    diff, sem = paired(f.summary["per_clip"]["ssim_s2"], runs["no_blurry"].summary["per_clip"]["ssim_s2"])
    checks["full beats keyframe-only (no blurry) on SSIM S2"] = dict(
        full=f.metrics["ssim_s2"]["mean"], reference=runs["no_blurry"].metrics["ssim_s2"]["mean"], margin=diff,
        sem=sem, passes=diff > 0)
truth_pcc = refs["ground_truth"]["clip_pcc_aligned"]["mean"]
checks["CLIP-pcc within 0.05 of the ground truth's (6 aligned frames)"] = dict(
    full=f.metrics["clip_pcc_aligned"]["mean"], reference=truth_pcc,
    margin=f.metrics["clip_pcc_aligned"]["mean"] - truth_pcc, sem=np.nan,
    passes=abs(f.metrics["clip_pcc_aligned"]["mean"] - truth_pcc) <= 0.05)
pd.DataFrame(checks).T.style.format({k: "{:.3f}" for k in ("full", "reference", "margin", "sem")}, na_rep="")

# %% [markdown]
# **Measured on a seed none of this was tuned on** (cc2017-sim seed 27, default preset, subject 1, 240 test clips;
# `python -m neuroclips_core ablations --subjects 1 --seed 27 --run-root runs/seed27`, which runs this chapter
# with `-p compare no_keyframe,no_blurry,fmri_caption`, after chapters 01-03 on that seed; 26 minutes on 1 thread
# with two other chapters sharing the 2 cores, 5.6 minutes of it generating the 240 full videos, 1.4 s a clip).
# The margins are paired per clip, ± the SEM of the per-clip difference.
#
# | run | SSIM S2 | frame 50-way | video 50-way | CLIP-pcc (6 aligned) | CLIP sim. to truth |
# |---|---|---|---|---|---|
# | full | 0.672 | **0.081** | **0.086** | 0.879 | **0.227** |
# | no keyframe | 0.675 | 0.078 | 0.077 | 0.898 | 0.171 |
# | no blurry video | 0.626 | 0.082 | 0.059 | 0.851 | 0.128 |
# | fMRI caption | 0.676 | 0.084 | 0.087 | 0.876 | 0.186 |
# | blurry video alone | 0.771 | 0.053 | 0.056 | 1.000 | 0.105 |
# | ground truth | | | | 0.885 | |
#
# (50-way chance under the top-3 rule: 0.058.) All four of the checks pass. The full model beats the blurry
# video on frame 50-way by 0.029 ± 0.016 and on video 50-way by 0.030 ± 0.023, beats keyframe-only on SSIM by
# 0.046 ± 0.002, and its CLIP-pcc is 0.006 under the truth's. Subjects 2 and 3 of the same seed (chapter 06's
# batch) pass the same four checks, with frame 50-way margins of 0.018 ± 0.015 and 0.033 ± 0.016, video 50-way
# margins of 0.017 ± 0.022 and 0.001 ± 0.019 (a tie, for subject 3), SSIM margins of 0.048 and 0.045 (± 0.002) and
# CLIP-pcc 0.881 and 0.879 against the truth's 0.885. All but one of the 50-way margins are under two SEMs: the
# videos carry class evidence the blurry video lacks, but not much of it (chapter 03 says why the keyframes are
# weak). The keyframe adds likeness to the truth (0.227 against 0.171) and video 50-way (+0.009 ± 0.013, the paper's
# direction but within noise). It costs smoothness: without it the videos are smoother by 0.008 ± 0.003 (16-frame
# CLIP-pcc), because the SparseCtrl stand-in pins frame 0 to the keyframe and does not carry it into the later
# frames, so the first step jumps: on its first 120 clips the adjacent frames' CLIP cosine is 0.842 at step 0 and
# 0.90-0.93 at every later step, against 0.929 at step 0 without the keyframe. Holding the keyframe at frame 5
# moves the jump to step 5; a weaker hold shrinks it and the keyframe's class evidence with it
# (`benchmarks/probe_frame_noise.py` has the numbers). In the paper the keyframe made the videos smoother (Table 2).
#
# **What got the CLIP-pcc there: the sim sampler shares the frames' fine noise.** With the paper's independent
# noise per frame the stand-ins' videos flickered; the adjacent 8 FPS frames of seed 12's full videos had a CLIP
# cosine of 0.78-0.84 at every step, not only after the keyframe. Sharing the starting noise above 0.4 x Nyquist
# (see the list of departures above) was chosen on seed 12 as a validation seed and on the stand-ins' held-out
# corpus (`benchmarks/probe_frame_noise.py`). On the first 120 test clips of seed 12:
#
# | seed 12, 120 clips | SSIM S2 | frame 50-way | video 50-way | CLIP-pcc (6 aligned) | CLIP sim. to truth |
# |---|---|---|---|---|---|
# | independent noise (the paper's) | 0.704 | 0.095 | 0.105 | 0.806 | 0.279 |
# | all noise shared, share 0.7 | 0.628 | 0.059 | 0.093 | 0.869 | 0.134 |
# | **fine detail shared (the sim profile)** | 0.678 | 0.089 | 0.092 | **0.882** | 0.244 |
# | ground truth | | | | 0.902 | |
#
# Sharing everything smooths as much but lets the noise, not the blurry video, decide where things are (SSIM and
# the likeness fall, frame 50-way drops under the blurry video's 0.100 on these clips). Sharing the detail costs
# 0.026 SSIM and a little likeness for a CLIP-pcc 0.02 from the truth's. On all 240 clips of seed 12 with the
# independent noise, the full model had scored SSIM 0.697, frame 50-way 0.119, video 50-way 0.113 and CLIP-pcc 0.799
# against the truth's 0.901, the one check that failed.
