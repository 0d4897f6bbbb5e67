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
# # 03 · The Semantics Reconstructor: keyframes and captions from fMRI
#
# The blurry video of chapter 02 knows where things are and how they move, not what they are. The **Semantics
# Reconstructor** (SR, paper §3.2) decodes the second half: from the same fMRI sample it predicts the CLIP image
# tokens of the clip's **keyframe**, a diffusion prior sharpens that prediction into tokens unCLIP can draw from,
# and unCLIP draws the keyframe; a captioner then describes it (§3.3). The keyframe becomes AnimateDiff's
# SparseCtrl condition (beta guidance), the caption its prompt (gamma guidance), in chapter 04.
#
# The pipeline, with shapes (paper size / the sim's stand-ins, V voxels):
#
# 1. **Low-dimensional fMRI layer**: $\mathbf{Y} \in \mathbb{R}^{V} \to \mathbb{R}^{h}$ ($h$ = 4096 / 512), a linear
#    map. In the paper it is ridge regression (Eq. 3, $\min_W \lVert \mathbf{Y} W - \mathbf{E} \rVert^2 +
#    \lambda \lVert W \rVert^2$); in the official code a learned linear layer. Here it is the learned layer,
#    **started from the closed-form ridge solution** to the keyframe tokens (sim recipe), so both readings hold.
# 2. **MLP backbone** (MindEye2's residual MLP, dropout 0.15) and a **projector** to the CLIP image tokens
#    $e_{\mathcal{Y}} \in \mathbb{R}^{256 \times 1664}$ (OpenCLIP bigG) / $\mathbb{R}^{64 \times 128}$ (the CLIP
#    stand-in).
# 3. **Diffusion prior**: a DALL-E 2 style transformer that denoises keyframe tokens conditioned on
#    $e_{\mathcal{Y}}$, predicting $x_0$, with the condition dropped 10 % of the time; sampled with DDIM.
# 4. **Reftm**: a frozen projector from image tokens to CLIP's text space, pre-trained on image-caption pairs
#    (the authors' on COCO, here on the simulated pretraining corpus), whose InfoNCE against the clip's caption
#    embedding pulls the SR's output towards what the caption says.
#
# The losses. **BiMixCo** mixes pairs of fMRI samples in voxel space, $\tilde{\mathbf{Y}}_i = \lambda_i
# \mathbf{Y}_i + (1 - \lambda_i)\mathbf{Y}_{k_i}$ with $\lambda_i \sim \text{Beta}(0.15, 0.15)$, and asks the
# embedding of the mix to match its two keyframes in the proportions mixed, in both directions:
#
# $$\mathcal{L}_{\text{BiMixCo}} = -\frac{1}{2N}\sum_{i=1}^{N}\Big[\lambda_i \log\frac{\exp(s(e_i^{*}, e_{\mathcal{X}_i})/\tau)}{\sum_m \exp(s(e_i^{*}, e_{\mathcal{X}_m})/\tau)}
#   + (1-\lambda_i)\log\frac{\exp(s(e_i^{*}, e_{\mathcal{X}_{k_i}})/\tau)}{\sum_m \exp(s(e_i^{*}, e_{\mathcal{X}_m})/\tau)}\Big] + (\text{image} \to \text{fMRI})$$
#
# ($\tau$ = 0.006); after the mixup phase **SoftCLIP** replaces it (soft targets from the keyframes' own
# similarities). The prior's loss is the MSE of its $x_0$ prediction, Reftm an InfoNCE in text space. The paper
# trains them jointly (Eq. 4, $\mathcal{L}_{SR} = \mathcal{L}_{\text{BiMixCo}} + \delta\,\mathcal{L}_{\text{Prior}}
# + \mu\,\mathcal{L}_{\text{Reftm}}$, $\delta = 30$, $\mu = 1$).
#
# **Where this book departs from the paper or the official code, and why** (reference §3-5 and §11):
#
# - *Two stages by default* (`loss_recipe = "official"`): the backbone with BiMixCo every epoch plus
#   0.25 Reftm on its output, then the prior alone (30 × MSE + Reftm on the prior's output), as the official
#   README trains it. The joint Eq. 4 is `loss_recipe = "paper"`. The two-stage recipe is what the authors ran;
#   each stage is selected on its own measure; and on a CPU it is the cheaper one, since backbone epochs do not
#   pay for the prior and prior epochs do not pay for the SR's backward pass.
# - *Validation-split model selection* (whole held-out training segments): the backbone epoch by validation
#   top-1 retrieval, the prior's by validation MSE. The official code selects stage A by *test* loss.
# - *The keyframe is stored frame 2 of 6*, as in the official code: a clip that straddles a shot cut takes its
#   label and caption from the shot covering most of it, and frame 2 lies in that shot 92 % of the time (frame 0
#   only 58 %).
# - *Ridge start of the fMRI layer (sim only)*: there is no MindEye2 checkpoint to start from (the official code
#   loads one NSD subject's weights for every cc2017 subject), and the CPU budget is 10 epochs.
# - *The prior's stage is short but not starved (sim)*: 30 epochs at lr 1e-3 against the official 150 at 3e-4.
#   A first budget of 6 epochs left the prior unconverged: on the validation split its samples identified their
#   clip no better than chance, though their clip_voxels condition did at 0.42 (pools of 300). Sixteen more epochs
#   took that to 0.11 and were still gaining (`benchmarks/probe_prior_training.py`, validation split only).
# - *Beta guidance as the paper describes it*: unCLIP starts from the PR's **blurry frame**, VAE-encoded and
#   noised to a chosen level (strength 0.6: the last 60 % of the steps run), conditioned on the prior's tokens.
#   The official `recon_keyframe.py` never reads the blurry video and starts from pure noise; that is the
#   `keyframe_start = "noise"` switch, and this chapter runs both and compares them. The blurry frame used is the
#   one of the keyframe's own index (2), so layout and semantics describe one moment; the paper says "the first
#   frame".
# - *A seed per clip*: the official code resets one seed before every clip, so every keyframe starts from the same
#   noise.
# - *Reftm's projector is pre-trained here* on the stand-in CLIP's image-caption pairs of the pretraining corpus
#   (the authors' COCO projector, `coco_tokens_avg_proj.pth`, is loadable in the paper profile).

# %%
import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from neuroclips_core.artifacts import profile_role
from neuroclips_core.data.ensure import ensure_store
from neuroclips_core.data.sim_stimuli import CLASSES
from neuroclips_core.keyframes_run import ground_truth_keyframes, reconstruct_semantics
from neuroclips_core.models.losses import SemanticsLossConfig
from neuroclips_core.models.prior import DiffusionPrior, PriorConfig
from neuroclips_core.models.blocks import count_parameters
from neuroclips_core.models.semantics import SemanticsConfig, SemanticsReconstructor
from neuroclips_core.notebook import chapter_config, env_default
from neuroclips_core.perception_run import train_perception
from neuroclips_core.pipelines.keyframes import KeyframeConfig
from neuroclips_core.semantics_run import SemanticsRunConfig, train_semantics
from neuroclips_core.viz import frames as vframes

# %% tags=["parameters"]
profile = "sim"
subject = 1
quick = env_default("NEUROCLIPS_QUICK", False)
seed = 0
data_root = None
run_root = None
loss_recipe = "official"     # "official" (two stages: backbone, then prior) or "paper" (Eq. 4, one joint stage)
keyframe_start = "blurry"    # "blurry": unCLIP from the PR's blurry frame (paper); "noise": pure noise (official code)
strength = None              # blurry start's noise level in [0, 1]; None: the config's (0.6)
compare_starts = True        # also draw the other start, to compare the two
retrain = False              # train and draw again even if this exact run is already on disk

# %%
cfg = chapter_config(profile=profile, subject=subject, quick=quick, seed=seed,
                     data_root=data_root, run_root=run_root)
if loss_recipe not in ("official", "paper"):
    raise ValueError(f"loss_recipe must be 'official' or 'paper', found {loss_recipe!r}")
if keyframe_start not in ("blurry", "noise"):
    raise ValueError(f"keyframe_start must be 'blurry' or 'noise', found {keyframe_start!r}")
run = SemanticsRunConfig.for_config(cfg, loss=SemanticsLossConfig.for_recipe(loss_recipe))
keyframe_config = KeyframeConfig.for_config(cfg, **({"strength": float(strength)} if strength is not None else {}))
pd.Series({k: v for k, v in run.to_dict().items() if k not in ("loss", "reftm_pretrain")}).to_frame("recipe")

# %% [markdown]
# ## The shapes
#
# The SR and prior this chapter trains (sim size, for the CLIP stand-in's 64 × 128 tokens) beside the paper's
# (cc2017 subject 1's 13 447 voxels, hidden 4096, bigG's 256 × 1664 tokens). The paper-size SR is only counted
# here, on PyTorch's "meta" device, which allocates nothing; `benchmarks/bench_semantics.py` trains it on
# whatever device is there.

# %%
store = ensure_store(cfg, cfg.subject)
perception = train_perception(cfg, store=store)       # chapter 02's run (reused when chapter 02 made it)
clip = profile_role(cfg, "clip")                       # its tokens are the SR's targets: they set its shape
sr_cfg = run.sr_config(store.n_voxels, clip)
prior_cfg = run.prior_config(sr_cfg.token_shape)
paper_sr = SemanticsConfig.paper(13447)
with torch.device("meta"):                            # counted without allocating their 9 GB of weights
    paper_sr_meta, paper_prior_meta = SemanticsReconstructor(paper_sr), DiffusionPrior(PriorConfig.paper())

n_params = lambda module: count_parameters(module) / 1e6   # noqa: E731

sizes = pd.DataFrame({
    "this chapter": {"voxels": store.n_voxels, "hidden": sr_cfg.hidden, "tokens": str(sr_cfg.token_shape),
                     "SR parameters (M)": n_params(SemanticsReconstructor(sr_cfg)),
                     "prior parameters (M)": n_params(DiffusionPrior(prior_cfg))},
    "paper": {"voxels": 13447, "hidden": paper_sr.hidden, "tokens": str(paper_sr.token_shape),
              "SR parameters (M)": n_params(paper_sr_meta),
              "prior parameters (M)": n_params(paper_prior_meta)}})
sizes

# %% [markdown]
# ## Training
#
# `train_semantics` encodes every keyframe with CLIP once (a cache every subject shares), pre-trains the Reftm
# projector once per CLIP model, starts the fMRI layer from ridge, then trains the stages in order, each keeping
# its best validation epoch, and samples the prior's tokens for every test clip. A finished run with the same
# parameters is reused; an interrupted one resumes from its last epoch.

# %%
result = train_semantics(cfg, run=run, store=store, clip=clip, retrain=retrain)
r = result.retrieval
print(f"{r['n_train']} training, {r['n_val']} validation, {r['n_test']} test clips; timings {r['timings']}")
print("Reftm:", {k: v for k, v in r["reftm"].items() if k != "path"})

# %%
fig, axes = plt.subplots(1, len(result.history), figsize=(5 * len(result.history), 3), squeeze=False)
for ax, (stage, hist) in zip(axes[0], result.history.items()):
    epochs = pd.DataFrame([{"epoch": e["epoch"], "train": e["train"]["loss"],
                            **{f"val {k}": v for k, v in e["val"].items()}} for e in hist["epochs"]])
    ax.plot(epochs["epoch"], epochs["train"], "o-", label="training loss")
    ax.set(xlabel="epoch", title=f"stage {stage}")
    twin = ax.twinx()
    for col in [c for c in epochs.columns if c.startswith("val ")][:1]:
        twin.plot(epochs["epoch"], epochs[col], "s--", color="C1", label=col)
        twin.set_ylabel(col)
    ax.axvline(r["stages"][stage]["best_epoch"], color="k", ls=":", lw=0.8)
    ax.legend(loc="upper left", fontsize=8)
    twin.legend(loc="upper right", fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Retrieval (paper Table 4)
#
# Keyframe retrieval: each test fMRI's embedding $e_{\mathcal{Y}}$ against its own keyframe's CLIP tokens and
# those of the other clips of a random pool of 300, top-1 by cosine (fMRI retrieval: the other way round), the
# mean over 4 random parts (App. C.6; the whole test set once when it is smaller than 300). The ridge line is the
# closed-form Eq. 3 alone; the prior line scores the prior's sampled tokens in place of $e_{\mathcal{Y}}$.

# %%
PAPER_TABLE4 = {1: (0.231, 0.207), 2: (0.263, 0.198), 3: (0.173, 0.159)}
rows = []
for name, key in (("SR (clip_voxels)", "clip_voxels"), ("prior tokens", "prior_tokens"),
                  ("ridge (Eq. 3 only)", "ridge")):
    if key in r["test"]:
        t = r["test"][key]
        rows.append({"embedding": name, "keyframe retrieval": t["forward"], "fMRI retrieval": t["backward"],
                     "pool": t["pool_size"], "chance": t["chance"], "× chance": t["forward"] / t["chance"]})
paper_k, paper_f = PAPER_TABLE4.get(cfg.subject, (float("nan"), float("nan")))
rows.append({"embedding": f"paper, cc2017 subject {cfg.subject}", "keyframe retrieval": paper_k,
             "fMRI retrieval": paper_f, "pool": 300, "chance": 1 / 300, "× chance": paper_k * 300})
pd.DataFrame(rows).set_index("embedding").style.format("{:.3f}")

# %% [markdown]
# ## Keyframes
#
# unCLIP draws one keyframe per test clip from the prior's tokens, starting from the blurry frame (or from noise),
# and the captioner describes it. Scores against the stored ground-truth keyframe: SSIM S2 and pixel correlation
# (layout), the frame-level 2- and 50-way test with the field's top-3 rule (field-and-evaluation.md §2.2; the
# frame classifier's top 3 classes on the ground truth are the targets, chance about 0.058 for 50-way), and
# identification (each reconstructed keyframe's CLIP embedding against the true keyframes'). The captions are
# checked for naming the clip's class, beside captions of random training keyframes.

# %%
keyframes = reconstruct_semantics(cfg, config=keyframe_config, store=store, retrain=retrain)
variants = {keyframe_start: keyframes}
if compare_starts:
    other = "noise" if keyframe_start == "blurry" else "blurry"
    variants[other] = reconstruct_semantics(cfg, config=KeyframeConfig(**{**keyframe_config.to_dict(), "start": other}),
                                            variant=f"start_{other}", store=store, retrain=retrain)


def score_row(name, s):
    row = {"start": name, "SSIM S2": s["ssim_s2"], "pixel corr.": s["pixcorr"], "PSNR": s["psnr"],
           "2-way": s["n_way"]["2"]["mean"], "50-way": s["n_way"]["50"]["mean"], "50-way ± SE": s["n_way"]["50"]["se"],
           "50-way chance": s["n_way"]["50"]["chance"], "classifier agrees": s["classifier_top1"],
           "identification": s["identification"]["forward"]}
    if "captions" in s:
        row.update({"captions name the class": s["captions"]["class_named"],
                    "random training caption": s["captions"]["random_training_caption"]})
    return row


scores = pd.DataFrame([score_row(name, v.scores) for name, v in variants.items()]).set_index("start")
scores.style.format("{:.3f}")

# %% [markdown]
# The paper reports its frame-level 50-way for the final videos (0.203 on cc2017, averaged over subjects, Table 1),
# not for keyframes alone; it gives no keyframe score. On cc2017-sim the classes are drawn in 5-px texture and
# outline, which a blurry frame cannot carry (chapter 00), so the semantic numbers here are the SR's alone.

# %%
print("acceptance (issue 5), this subject:")
s = keyframes.scores
sr_test = r["test"]["clip_voxels"]
checks = {"keyframe retrieval >= 10 x chance": sr_test["forward"] >= 10 * sr_test["chance"],
          "50-way (top-3 rule) >= 0.20 (averaged over subjects in the issue)": s["n_way"]["50"]["mean"] >= 0.20}
if "captions" in s:
    checks["captions name the class >= 2 x random training captions"] = (
        s["captions"]["class_named"] >= 2 * s["captions"]["random_training_caption"])
if compare_starts and "blurry" in variants and "noise" in variants:
    b, n = variants["blurry"].scores, variants["noise"].scores
    checks["blurry start raises SSIM S2 over the noise start"] = b["ssim_s2"] > n["ssim_s2"]
    checks["... without lowering 50-way by more than 0.05"] = b["n_way"]["50"]["mean"] >= n["n_way"]["50"]["mean"] - 0.05
print(json.dumps(checks, indent=1))

# %% [markdown]
# **Measured on test clips none of this was tuned on** (cc2017-sim seed 12, subject 1, 240 test clips, so one pool of
# 240, chance 0.004; `papermill book/03_semantics.ipynb out.ipynb -p seed 12 -p subject 1`, 21 minutes on 2 cores
# with chapter 02's run on disk, 15 of them the prior): keyframe retrieval 0.388 and fMRI retrieval 0.396
# (93 × chance; ridge alone 0.150 / 0.329), where the paper reports 0.231 / 0.207 on cc2017 in pools of 300. The
# prior's sampled tokens retrieve their keyframe 0.150 of the time (0.021 with the first, 6-epoch prior). The
# unCLIP stand-in is now the weak link: it draws the class from even the *true* tokens only 9 % of the time
# (chapter 00b). So the keyframes carry layout and colour and some class: 50-way 0.188 ± 0.004 from the blurry
# frame and 0.181 from noise (chance 0.058; the issue asks 0.20; 0.118 with the 6-epoch prior), SSIM S2 0.681
# against 0.605 from noise; the keyframes identify their clip's true keyframe 0.042 of the time (10 × chance);
# captions name the class 0.063 of the time, 4.2 × the 0.015 of random training captions. Subject 2 (`-p subject
# 2`): 50-way 0.204 ± 0.004 (0.164 from noise), identification 0.054 (13 × chance), SSIM S2 0.684 against 0.609.
# Subject 3: retrieval 0.367 / 0.438, 50-way 0.212 ± 0.005 (0.201 from noise), identification 0.033 (8 × chance),
# SSIM S2 0.682 against 0.608, captions 4.7 × random. Averaged over the three subjects the keyframes' 50-way is
# 0.201, level with the paper's 0.203 for its final videos on cc2017 (a different dataset and a different judge),
# and no further: the margin over the 0.20 (0.001) is below one subject's standard error. The prior's
# length was chosen on seed 12's validation split (`benchmarks/probe_prior_training.py`), never on its test clips.
# The next step is a stronger unCLIP stand-in. These runs used 2 threads. The same subject-1 run on 1 thread
# (`NEUROCLIPS_THREADS=1`, 18 minutes beside another job) sums in another order and trains a slightly different
# model: keyframe retrieval 0.388 again, fMRI retrieval 0.421, prior tokens 0.183 and the keyframes' SSIM S2 0.679.
# Differences of this size separate two runs of this chapter on different thread counts.

# %% [markdown]
# ## Looking at them
#
# Eight test clips, evenly spaced through the test set: ground-truth keyframe, the PR's blurry frame unCLIP
# started from, and the keyframes drawn from each start, with the caption written for the default one.

# %%
truth = ground_truth_keyframes(store, result.retrieval["keyframe_index"])
blurry = np.asarray(perception.blurry()[:, keyframe_config.blurry_frame])
drawn = {name: np.asarray(v.keyframes) for name, v in variants.items()}
captions = keyframes.captions
n_show = min(8, len(truth))
show = np.linspace(0, len(truth) - 1, n_show).round().astype(int)
rows = [truth[show], blurry[show]] + [drawn[name][show] for name in drawn]
labels = ["ground truth", "blurry frame (PR)"] + [f"keyframe, {name} start" for name in drawn]
vframes.frame_strip(rows, row_labels=labels, suptitle="test clips, evenly spaced")
plt.show()
for i in show:
    true_class = CLASSES[int(store.labels_test[i])] if store.labels_test is not None else "?"
    print(f"clip {i:4d} ({true_class}): {captions[i]}")

# %% [markdown]
# Starting from the blurry frame keeps the keyframe's layout and colours where the PR put them; from pure noise,
# unCLIP draws whatever the tokens say, wherever it likes. The table above measures what that is worth in SSIM
# and what it costs in class.
