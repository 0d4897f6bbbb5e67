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
# # 06 · Ablations: what each guidance brings, on every subject
#
# NeuroClips steers one diffusion chain three ways (chapter 04): **alpha**, the blurry video, as the chain's
# starting point (Eq. 5); **beta**, the keyframe, through SparseCtrl; **gamma**, the keyframe's caption, as the
# prompt. The paper's Table 2 takes them away one at a time on subject 1, and its Table 1 reports the full model on
# all three subjects. This chapter runs both as one batch and sets the paper's numbers beside ours.
#
# | variant | alpha | beta | gamma | the paper's row |
# |---|---|---|---|---|
# | `full` | ✓ | ✓ | keyframe caption | NeuroClips |
# | `no_keyframe` | ✓ | – | "a smooth video" | w/o keyframe |
# | `no_blurry` | – (pure noise) | ✓ | keyframe caption | w/o blurry clip |
# | `fmri_caption` | ✓ | ✓ | decoded from the fMRI tokens | GIT captioning |
#
# **Decisions.** The paper drops the keyframe's caption with the keyframe ("the keyframe captioning must be
# obtained through the keyframe") and prompts "a smooth video"; `no_keyframe` does the same. The official code
# has no ablation scripts and no GIT path in its video pipeline; `fmri_caption` decodes captions from the prior's
# fMRI tokens with the stand-in captioner (MindEye2's GIT route, chapter 03), never from a keyframe. Every variant
# of a clip starts from the same noise (one seed per clip), so variants differ by their guidance alone.
#
# **The batch** (`neuroclips_core.ablations_run`) executes chapter 04 with papermill once per subject, with every
# variant, and keeps the executed notebooks in `runs/<profile>/ablations/`. The same batch from a shell:
#
# ```
# python -m neuroclips_core ablations --subjects 1,2,3 --seed 0 --parallel 2
# ```
#
# Finished variants are reused, so rerunning the chapter after the command (or the other way round) makes nothing
# twice. The tables below read only the `metrics.json` files the batch leaves.

# %%
import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display

from neuroclips_core.ablations_run import (PAPER_TABLE2, collect, default_parallel, direction_checks, paper_frame,
                                           run_batch, wide)
from neuroclips_core.config import SUBJECTS
from neuroclips_core.data.ensure import ensure_store
from neuroclips_core.metrics import align_to_ground_truth
from neuroclips_core.metrics_table import PAPER_TABLE1
from neuroclips_core.notebook import chapter_config, env_default, parameter_list
from neuroclips_core.video_run import VARIANTS, inference_dir
from neuroclips_core.viz import frames as vframes

# %% tags=["parameters"]
profile = "sim"
subject = 1
quick = env_default("NEUROCLIPS_QUICK", False)
seed = 0
data_root = None
run_root = None
subjects = None            # e.g. "1,2,3"; None: all three ([subject] in quick mode)
variants = None            # e.g. "full,no_blurry"; None: all four (full always runs)
n_clips = None             # the first n test clips; None: all (24 in quick mode)
parallel = None            # subjects at once; None: one per CPU thread on a CPU (2: one thread each), 1 on a GPU

# %%
cfg = chapter_config(profile=profile, subject=subject, quick=quick, seed=seed,
                     data_root=data_root, run_root=run_root)
subjects = parameter_list(subjects, SUBJECTS, "subjects", [cfg.subject] if cfg.quick else list(SUBJECTS))
variants = parameter_list(variants, VARIANTS, "variants", list(VARIANTS))
variants = ["full", *[v for v in variants if v != "full"]]
parallel = default_parallel(cfg, len(subjects)) if parallel is None else parallel
print(f"subjects {subjects}, variants {variants}, {parallel} subject(s) at once")

# %% [markdown]
# ## The batch
#
# One papermill run of chapter 04 per subject (chapters 02 and 03 run inside it when their results are not on disk:
# about 25 minutes a subject at the default sizes; generation about 4 minutes per variant and subject for the 240
# test clips on two CPU cores). On a CPU the subjects run side by side, one kernel and one thread each
# (`parallel`): these small models get little from a second thread, so two subjects at once finish sooner than one
# after the other. In quick mode, subjects 2 and 3 with two variants took 17.0 minutes side by side against 20.4 one
# after the other at two threads, and every score of the two agreed within 0.025 (the largest gap, a PSNR in dB;
# the median 0.001), thread counts moving only the last digits (`benchmarks/bench_parallel_subjects.py`). Each
# subject writes only its own folders; the caches they share are written atomically.

# %%
executed = run_batch(cfg, subjects, variants, n_clips=n_clips, progress=False, parallel=parallel)
for path in executed:
    print(f"executed: {path}")
scores = collect(cfg, subjects, variants)
print(f"{scores['n_clips'].iloc[0]} test clips per run")

# %% [markdown]
# ## Table 2: the variants of each subject, the paper's subject 1 beside
#
# Means over the test clips (SSIM: S2, the 2-D grayscale SSIM; CLIP-pcc: adjacent frames of all 16; N-way: the
# field's top-3 rule, chance 0.75 at 2-way and 0.058 at 50-way with 3 GT classes). The paper's rows are quoted from
# its Table 2, subject 1. Our levels are the simulated world's and the stand-ins' (chapter 00b); what compares is the
# direction of each change.

# %%
for s in subjects:
    ours = wide(scores[scores.subject == s])
    ours.index = [f"ours: {v}" for v in ours.index]
    paper = paper_frame({f"paper: {v}": PAPER_TABLE2[v] for v in variants})
    print(f"subject {s}")
    display(pd.concat([ours, paper]).style.format("{:.3f}"))

# %% [markdown]
# ## Each change, relative to the full model
#
# Every variant's score minus the full model's, per subject (bars, ± 2 combined standard errors), and the same
# difference in the paper (black ticks, subject 1). A bar below zero means that taking the guidance away costs.

# %%
COLUMNS = {"ssim": "SSIM", "psnr": "PSNR", "frame_50way": "frame 50-way", "video_50way": "video 50-way",
           "clip_pcc": "CLIP-pcc"}
others = [v for v in variants if v != "full"]
if others:
    fig, axes = plt.subplots(1, len(COLUMNS), figsize=(3.0 * len(COLUMNS), 3.2), layout="constrained")
    width = 0.8 / len(subjects)
    for ax, (column, title) in zip(axes, COLUMNS.items()):
        m = scores[scores.column == column].set_index(["subject", "variant"])
        for k, s in enumerate(subjects):
            diff = [m.loc[(s, v), "mean"] - m.loc[(s, "full"), "mean"] for v in others]
            err = [2 * np.hypot(m.loc[(s, v), "se"], m.loc[(s, "full"), "se"]) for v in others]
            ax.bar(np.arange(len(others)) + (k - (len(subjects) - 1) / 2) * width, diff, width, yerr=err,
                   color=f"C{k}", label=f"subject {s}", capsize=2)
        paper = [PAPER_TABLE2[v][column][0] - PAPER_TABLE2["full"][column][0] for v in others]
        ax.scatter(range(len(others)), paper, marker="_", s=300, color="k", label="paper, subject 1", zorder=3)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xticks(range(len(others)), others, rotation=30, fontsize=8)
        ax.set_title(title)
    axes[0].set_ylabel("variant − full")
    axes[-1].legend(fontsize=7)
    plt.show()

# %% [markdown]
# ## Table 1: the full model on every subject
#
# The full model's row per subject and their average, beside the paper's NeuroClips rows (Table 1, which reports
# the average of the three subjects).

# %%
full = wide(scores[scores.variant == "full"], index=("subject",))
full.index = [f"ours: subject {s}" for s in full.index]
if len(subjects) > 1:
    full.loc["ours: average"] = full.mean()
paper1 = paper_frame({f"paper: {k}": v for k, v in PAPER_TABLE1.items()
                      if k == "average" or int(k.split()[-1]) in subjects})
pd.concat([full, paper1]).style.format("{:.3f}")

# %% [markdown]
# ## The same clips under each variant
#
# Two test clips at the 6 frames that are scored (the ones aligned with the ground truth), as the paper's Figure 4
# shows its ablations.

# %%
s = subjects[0]
truth = np.asarray(ensure_store(cfg, s).frames_test)
videos = {v: np.load(inference_dir(cfg, s, v) / "videos_test.npy", mmap_mode="r") for v in variants}
per_clip = json.loads((inference_dir(cfg, s, "full") / "metrics.json").read_text())["per_clip"]
for i in np.argsort(per_clip["ssim_s2"])[::-1][:2]:
    rows = [truth[i]] + [align_to_ground_truth(np.asarray(videos[v][i:i + 1]))[0] for v in variants]
    vframes.frame_strip(rows, row_labels=[f"clip {i}: truth", *variants], suptitle=f"subject {s}, clip {i}",
                        frame_inches=0.9)
    plt.show()

# %% [markdown]
# ## The paper's directions, checked on every subject
#
# Removing the blurry video lowers SSIM; removing the keyframe (and its caption) lowers the frame- and the
# video-level 50-way; the full model has the best CLIP-pcc, or is within 2 combined standard errors of the best.

# %%
if {"no_blurry", "no_keyframe"} <= set(variants):
    checks = pd.DataFrame(direction_checks(scores))
    checks.columns = [f"subject {s}" for s in checks.columns]
    display(checks)
else:
    print("the checks need the variants no_blurry and no_keyframe")

# %% [markdown]
# **Measured on a seed none of this was tuned on** (cc2017-sim seed 27, subjects 1-3, 240 test clips each;
# `python -m neuroclips_core ablations --subjects 1,2,3 --seed 27 --run-root runs/seed27`, with chapters 01-03 run
# on that seed first; about 25 minutes a subject for three or four variants on 1 thread, two other jobs sharing the
# 2 cores; the videos regenerated and the video 50-way read by the distilled VideoMAE of 2400 steps on 2026-12-01,
# the other columns unchanged to the last digit; the 4000-step VideoMAE shipped since has not re-read them).
# Differences are the full model minus the variant, paired per clip, ± the SEM of the per-clip difference:
#
# | subject | SSIM: full - no blurry | frame 50-way: full - no keyframe | video 50-way: full - no keyframe | CLIP-pcc (16 frames): full - no keyframe |
# |---|---|---|---|---|
# | 1 | **+0.046 ± 0.002** | +0.003 ± 0.007 | +0.021 ± 0.017 | -0.008 ± 0.003 |
# | 2 | **+0.048 ± 0.002** | -0.005 ± 0.007 | -0.002 ± 0.017 | -0.009 ± 0.003 |
# | 3 | **+0.045 ± 0.002** | +0.003 ± 0.006 | -0.001 ± 0.016 | -0.007 ± 0.003 |
#
# One of the paper's three directions holds on every subject: the blurry video is what gives the videos their
# structure. The other two do not. The keyframe's effect on the 50-way scores is within the clips' noise, either
# way; and the videos are slightly *smoother* without the keyframe, where the paper found them smoother with it
# (its Table 2: CLIP-pcc 0.736 against 0.695). Both come from the stand-ins. The smoothness, measured: the
# SparseCtrl stand-in pins frame 0 to the keyframe and does not carry it into the later frames, so the first step
# jumps (adjacent-frame CLIP cosine 0.842 at step 0 and 0.90-0.93 elsewhere on subject 1's first 120 clips, against
# 0.929 at step 0 without the keyframe). Of three sampler changes tried on seed 12
# (`benchmarks/probe_frame_noise.py`), holding the keyframe at the frame it shows moved the jump there, a weaker
# hold shrank it only by giving up the keyframe's class evidence, and mixing the keyframe into every frame's start
# barely touched it. The class evidence: chapter 00b shows where along the chain the SparseCtrl stand-in acts, and
# it adds nothing at the low noise levels where the class's texture and outline are drawn; even the *true* keyframe
# lifts the frame 50-way of chapter 04's chain only from 0.040 to 0.049, where the keyframe itself scores 0.836
# (seed 12, subject 1, 96 clips, `benchmarks/probe_video_guidance.py --scales 1`). A SparseCtrl retrained with more
# of its steps at low noise did not change that (0.045). Besides, the sim sampler's shared fine noise, which made
# the videos as smooth as the truth, may set much of the texture the keyframe used to hand on. On seed 12,
# with the paper's independent frame noise, removing the keyframe had
# cost video 50-way 0.052 ± 0.021 (subject 1) and the full model had been the smoothest variant; its videos
# flickered far more than the truth (CLIP-pcc 0.80 against 0.90).
