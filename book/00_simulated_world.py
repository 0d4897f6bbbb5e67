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
# # 00 · The simulated world: cc2017-sim
#
# NeuroClips is trained and tested on cc2017 (Wen et al. 2018): three subjects watched 18 training movie
# segments twice and 5 test segments ten times, 8 minutes each, scanned at a TR of 2 s. Neither that dataset
# nor the foundation models the paper stands on can be downloaded here, and a decoder can only be *checked*
# where the truth is known. So this chapter builds **cc2017-sim**: the same experiment, in the real dataset's
# own file format (30 FPS mp4 stimuli; CIFTI-2 dense time series with 91 282 grayordinates; 245 or 246
# volumes per run), from a world whose every parameter we chose. Chapter 01 reads it with the very reader and
# preprocessing that read the real cc2017.
#
# The world is built to keep the paper's premise true. NeuroClips splits reconstruction into a
# **Perception Reconstructor** (a blurry but smooth video: layout, colour, motion) and a **Semantics
# Reconstructor** (a keyframe: *what* is shown). That split only makes sense if the two kinds of information
# are separable in the stimulus and in the brain. Here they are by construction:
#
# * each clip shows one object whose **class** (64 = 8 outlines × 8 surface patterns) lives in fine detail
#   that blur destroys, while colour, position, size and motion vary freely within a class;
# * early visual cortex (V1–V3) sees the image through small receptive fields, motion areas (MT and
#   neighbours) see motion, and higher ventral and lateral areas see the class.
#
# This chapter shows the stimuli, checks that blur removes the class, draws a subject's ground-truth brain
# on the cortical flat map, and calibrates the noise against real movie fMRI.

# %%
import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from neuroclips_core.config import ConfigError
from neuroclips_core.data import layout, sim_brain, sim_checks, sim_stimuli, simulate
from neuroclips_core.data.cifti import read_cortex
from neuroclips_core.data.prepare import detrend_zscore, paired_window
from neuroclips_core.data.video import read_clip_frames
from neuroclips_core.notebook import chapter_config, env_default
from neuroclips_core.viz import flatmap, frames as vframes

# %% tags=["parameters"]
profile = "sim"
subject = 1
quick = env_default("NEUROCLIPS_QUICK", False)
seed = 0
data_root = None
run_root = None
simulate_subjects = None     # None: all three (quick mode: only `subject`)
probe_steps = None           # training steps of the blur probe; None: 2000 (quick: 80)

# %%
cfg = chapter_config(profile=profile, subject=subject, quick=quick, seed=seed,
                     data_root=data_root, run_root=run_root)
if cfg.profile != "sim":
    raise ConfigError("chapter 00 builds cc2017-sim and only runs with profile='sim'; "
                      "with the real data, start at chapter 01")
subjects = simulate_subjects or ([cfg.subject] if cfg.quick else [1, 2, 3])
probe_steps = probe_steps or (80 if cfg.quick else 2000)
figdir = cfg.run_root / cfg.profile / "figures"
figdir.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## Building the dataset
#
# One call writes the whole dataset (or finishes an interrupted one: every file is written atomically and
# skipped when it is already there; each segment, subject and run draws from its own seed stream, so the
# result does not depend on what was simulated before). The presets:

# %%
pd.DataFrame({name: simulate.preset_info(name) for name in simulate.PRESETS}).T

# %%
root = simulate.simulate_dataset(cfg.data_root, cfg.sim_preset, cfg.seed, subjects=subjects, progress=True)
info = json.loads((layout.ground_truth_dir(root) / "sim.json").read_text())
train_segments, test_segments = info["train_segments"], info["test_segments"]
print(f"{root}: preset {info['preset']}, seed {info['seed']}, simulator {info['simulator_version']}")
print(f"{len(train_segments)} training segments x 2 runs, {len(test_segments)} test segments x 10 runs, "
      f"subjects simulated: {info['subjects_complete']}")
for seg in (train_segments[0], test_segments[0]):
    p = layout.run_path(root, cfg.subject, seg, 1)
    print(f"  {p.relative_to(root)}  ({layout.expected_volumes(seg)} volumes, {p.stat().st_size / 1e6:.0f} MB)")

# %% [markdown]
# ## The stimuli
#
# Every class at a glance (one rendering each; within a class, colours, size, position and orientation
# change from shot to shot):

# %%
gallery_shot = simulate.segment_shots(cfg.seed, train_segments[0])[0]
fig, axes = plt.subplots(8, 8, figsize=(9, 9.6))
for c, ax in enumerate(axes.flat):
    gallery_shot.label = c
    ax.imshow(sim_stimuli.render_frames([gallery_shot], np.array([gallery_shot.start]), 64)[0])
    ax.set_title(sim_stimuli.CLASSES[c], fontsize=7)
    ax.axis("off")
fig.suptitle("the 64 classes: outline (rows) x surface pattern (columns)")
plt.show()

# %% [markdown]
# A segment is a sequence of shots of 2.5–8 s with hard cuts, so some 2-s clips straddle a cut, as in real
# movies. Each clip's ground-truth label and caption come from the shot that covers most of it. Here are the
# first clips of the first training segment, decoded from the mp4 at 3 FPS (frames 5, 15, …, 55 of each
# clip's 60), with their captions:

# %%
gt_seg = json.loads((layout.ground_truth_dir(root) / "stimuli" / f"{train_segments[0]}.json").read_text())
clips = read_clip_frames(layout.stimulus_path(root, train_segments[0]), n_clips=6)
fig = vframes.frame_strip(list(clips), titles=[f"{t / 3:.2f} s" for t in range(6)],
                          row_labels=[f"clip {k}" for k in range(6)], frame_inches=1.1)
plt.show()
for k in range(6):
    cut = " (straddles a cut)" if gt_seg["straddles_cut"][k] else ""
    print(f"clip {k}: {gt_seg['captions'][k]}{cut}")
print(f"\n{sum(gt_seg['straddles_cut'])} of 240 clips in {train_segments[0]} straddle a cut")

# %% [markdown]
# The same twelve seconds at the full 30 FPS:

# %%
import av  # noqa: E402  (only this cell needs raw frames)

with av.open(str(layout.stimulus_path(root, train_segments[0]))) as container:
    raw = np.stack([f.to_ndarray(format="rgb24") for _, f in zip(range(360), container.decode(video=0))])
gif = vframes.save_gif(raw[::2], figdir / "stimulus_first_12s.gif", fps=15, scale=2)
vframes.show_gif(gif)

# %% [markdown]
# ## Semantics live in fine detail
#
# The paper's premise: a blurry reconstruction can carry layout and motion but not the semantic class. We
# test it on the stimuli themselves. A small CNN is trained on sharp frames of newly drawn shots (a corpus
# disjoint from the dataset, as a real classifier never saw cc2017), then tested on the 3 FPS frames of the
# test segment, sharp and after a Gaussian blur with $\sigma = W/16$ pixels (4 px at 64 px), the blur the
# issue set as the bar.

# %%
train_x, train_y = sim_checks.fresh_frames(cfg.seed, 3000 if cfg.quick else 20000)
test_x, test_y = sim_checks.probe_frames(cfg.seed, test_segments[:1])
probe, probe_losses = sim_checks.train_frame_probe(train_x, train_y, steps=probe_steps, batch=48, lr=5e-3,
                                                   seed=cfg.seed, progress=True)
blurred = sim_checks.blur(test_x)
acc_sharp = float((sim_checks.probe_predict(probe, test_x) == test_y).mean())
acc_blur = float((sim_checks.probe_predict(probe, blurred) == test_y).mean())
chance = 1 / sim_stimuli.N_CLASSES
blur_table = pd.DataFrame({"top-1 accuracy": [acc_sharp, acc_blur, chance]},
                          index=["sharp test frames", "blurred (sigma = W/16)", "chance (1/64)"])
blur_table

# %%
fig, ax = plt.subplots(figsize=(7, 2.5))
ax.plot(probe_losses, lw=0.6)
ax.set(xlabel="step", ylabel="cross-entropy", title="blur probe training")
plt.show()
keep = np.linspace(0, len(test_x) - 1, 6).astype(int)
vframes.frame_strip([test_x[keep], blurred[keep]], row_labels=["sharp", "blurred"],
                    titles=[sim_stimuli.CLASSES[c] for c in test_y[keep]], frame_inches=1.2)
plt.show()
share = 1 - (acc_blur - chance) / max(acc_sharp - chance, 1e-9)
print(f"blurring removes {share:.0%} of the above-chance class information the probe finds in sharp frames")

# %% [markdown]
# ## The simulated brain
#
# Each subject has an encoding model over the 59 412 cortical vertices of the 32k_fs_LR surface. The role of
# a vertex comes from its HCP-MMP parcel: **early** (V1–V3; retinotopic Gaussian receptive fields reading
# luminance, colour-opponent and contrast channels), **motion** (MT, MST, FST, V4t, V3A/B, V6/V6A; large
# receptive fields tuned to a direction of object motion plus transients, which also fire at cuts) and
# **higher** (V4, V8, PIT, FFC, VVC, VMV1–3, LO1–3, PH, V7, IPS1, TPOJ1 and, for subject 2, TPOJ2/3 and PHA1–3;
# tuned to outline and pattern, weakly to hue, preferring the contralateral field). Only a spatially smooth,
# subject-specific part of each role responds. Everything else is noise.
#
# The clip-level responses are convolved with a haemodynamic response sampled at the TR that peaks 2 TRs
# (4 s) after the clip — the delay the paper uses, which chapter 01 must rediscover — and each responsive
# vertex gets a single-repetition test-retest correlation $r_v$ drawn from a Beta distribution, by scaling
# its unit-variance signal to amplitude $\sqrt{r_v / (1 - r_v)}$ over unit-variance AR(1) noise. Slow drift,
# a global fluctuation and a baseline of about 1000 complete raw-looking BOLD.

# %%
gt = simulate.load_ground_truth(root, cfg.subject)
role_map = np.where(gt["roles"] > 0, gt["roles"].astype(float), np.nan)
role_map[(gt["roles"] > 0) & ~gt["responsive"]] = 0
fig, ax = plt.subplots(figsize=(11, 4))
flatmap.plot_flatmap(role_map, ax=ax, cmap=plt.get_cmap("tab10", 4), vmin=-0.5, vmax=3.5,
                     colorbar_label="0 silent, 1 early, 2 motion, 3 higher",
                     title=f"subject {cfg.subject}: ground-truth roles (parcels of a role that stay silent: 0)")
plt.show()

# %%
rows = []
for s in info["subjects_complete"]:
    g = simulate.load_ground_truth(root, s)
    row = {"subject": s, "responsive vertices": int(g["responsive"].sum())}
    for r, name in enumerate(sim_brain.ROLE_NAMES[1:], start=1):
        row[name] = int((g["responsive"] & (g["roles"] == r)).sum())
    row["median target r"] = float(np.median(g["reliability"][g["responsive"]]))
    rows.append(row)
pd.DataFrame(rows).set_index("subject")

# %% [markdown]
# One responsive early-visual vertex in its first training run: the raw signal with its drift, and the same
# run trimmed to the delay-paired window, detrended and z-scored (chapter 01's preprocessing), against the
# noise-free response the simulation put in.

# %%
resp_idx = np.nonzero(gt["responsive"])[0]
early = np.nonzero(gt["responsive"] & (gt["roles"] == 1))[0]
vertex = early[np.argsort(gt["reliability"][early])[len(early) // 2]]     # a vertex of median reliability
col = int(np.searchsorted(resp_idx, vertex))
run = read_cortex(layout.run_path(root, cfg.subject, train_segments[0], 1), layout.expected_volumes(train_segments[0]))
clean = simulate.load_noise_free(root, cfg.subject, train_segments[0])[:, col]
a, b = paired_window(len(run), delay_trs=2)
z = detrend_zscore(run[a:b, [vertex]])[:, 0]
clean_z = (clean[a:b] - clean[a:b].mean()) / clean[a:b].std()
fig, (ax0, ax1) = plt.subplots(2, 1, figsize=(11, 5.5), layout="constrained")
ax0.plot(run[:, vertex], lw=0.8)
ax0.axvspan(a, b - 1, color="0.9", label="delay-paired window")
ax0.set(xlabel="raw volume", ylabel="raw BOLD", title=f"vertex {vertex} (early visual, target r = {gt['reliability'][vertex]:.2f})")
ax0.legend(loc="upper right")
ax1.plot(z, lw=0.8, label="measured (detrended, z-scored)")
ax1.plot(clean_z, lw=1.2, label="noise-free response")
ax1.set(xlabel="clip", ylabel="z")
ax1.legend(loc="upper right")
plt.show()
print(f"correlation of this single run with the noise-free response: {np.corrcoef(z, clean_z)[0, 1]:.2f}")

# %% [markdown]
# ## Calibrating the noise
#
# Real movie fMRI is noisy: in cc2017 the reproducibility of single runs is modest even in visual cortex. A
# decoder tested on an easy world would prove little, so the simulation targets a median single-repetition
# test-retest correlation between 0.15 and 0.5 for the responsive vertices. We measure it on the test
# segment's ten repetitions, preprocessed as chapter 01 will (Pearson r averaged over all 45 pairs of runs).

# %%
retest = sim_checks.test_retest_correlations(root, cfg.subject, test_segments[0])
median_r = float(np.median(retest[gt["responsive"]]))
fig, ax = plt.subplots(figsize=(7, 3))
bins = np.linspace(-0.2, 1, 61)
ax.hist(retest[~gt["responsive"]], bins, alpha=0.6, density=True, label="silent vertices")
ax.hist(retest[gt["responsive"]], bins, alpha=0.6, density=True, label="responsive vertices")
ax.axvline(median_r, color="k", ls="--", lw=1)
ax.set(xlabel="single-repetition test-retest r", ylabel="density")
ax.legend()
plt.show()
print(f"median single-repetition test-retest r of the responsive vertices: {median_r:.3f} "
      f"(target band 0.15-0.5; the '{cfg.sim_preset}' preset)")
if cfg.sim_preset != "tiny" and not 0.15 <= median_r <= 0.5:
    raise AssertionError(f"noise calibration out of band: median r = {median_r:.3f}")

# %% [markdown]
# The `tiny` preset (quick mode, tests) deliberately has a much higher SNR: with only 6 training segments a
# one-sample t-test has 5 degrees of freedom, and Bonferroni over 59 412 vertices would select almost nothing
# at realistic noise.
#
# **What this world buys.** Every claim of the paper becomes checkable: voxel selection against the true
# responsive set (chapter 01), blurry videos against the stimulus, keyframe retrieval and N-way tests against
# chance, the ablations' trade-offs, and the flat-map claim that the Perception Reconstructor's weights sit in
# early visual cortex and the Semantics Reconstructor's in higher cortex.
