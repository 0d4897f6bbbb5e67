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
# # 01 · Data preparation: from raw cc2017 to the processed store
#
# The official NeuroClips release starts from tensors that were prepared elsewhere: the preprocessing is
# two MATLAB scripts from the cc2017 authors, and the voxel selection, the 4 s haemodynamic delay and the frame
# sampling are not in the code at all. This chapter does all of it in Python, on the real cc2017 layout
# (`profile="paper"`) or on cc2017-sim (`profile="sim"`, the default) with exactly the same code:
#
# 1. **Trim.** A run of 245 volumes drops the first volume and the last 4; a run of 246 (test2–test5) drops
#    the first 2 and the last 4. What is left are the 240 volumes acquired while the 8-minute movie played,
#    one per 2-s clip.
# 2. **Delay.** BOLD peaks about 4 s after the stimulus, so clip $k$ is paired with raw volume
#    $\text{start} + k + 2$. *Our choice:* every run has 4 volumes after the movie, so we take the paired window
#    $[\text{start}+2, \text{start}+242)$ and every one of the 240 clips keeps a measured response; no clip is
#    dropped, none is paired with a volume from another segment, and none wraps around.
# 3. **Detrend and z-score** each vertex over that window: a 4th-order polynomial trend is removed by least
#    squares (the MATLAB `amri_sig_detrend(·, 4)`), then mean 0 and standard deviation 1.
# 4. **Reproducibility.** For each of the training segments, the Pearson correlation $r$ between the two
#    repetitions, Fisher-transformed: $z = \tfrac12 \ln\frac{1+r}{1-r}$.
# 5. **Selection.** A one-sample t-test of $z$ across the $n$ training segments,
#    $t = \bar z / (s_z/\sqrt n)$ with $n-1$ degrees of freedom, Bonferroni-corrected over all 59 412 cortical
#    vertices at $P < 0.05$. *Our choice:* **one-sided** ($\bar z > 0$), because only a positive test-retest
#    correlation means the stimulus drives the vertex; a negative one has no stimulus-driven reading. The paper
#    and its README do not say which.
# 6. **Frames.** Each 2-s clip keeps 6 of its 60 frames (3 FPS). *Our choice:* the centre of each third of a
#    second, frames 5, 15, …, 55 (the official code does not say which).
#
# Everything streams one run at a time, so a full cc2017 subject (18 × 2 + 5 × 10 runs of 91 282
# grayordinates) never sits in memory (see `benchmarks/bench_prepare.py`).

# %%
import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from neuroclips_core.config import detect_data_format
from neuroclips_core.data import layout, prepare
from neuroclips_core.data.cifti import read_cortex
from neuroclips_core.data.ensure import ensure_store
from neuroclips_core.data.store import ClipDataset
from neuroclips_core.notebook import chapter_config, env_default
from neuroclips_core.viz import flatmap, frames as vframes

# %% tags=["parameters"]
profile = "sim"
subject = 1
quick = env_default("NEUROCLIPS_QUICK", False)
seed = 0
data_root = None
run_root = None
all_subjects = None          # also prepare the other subjects (for the counts table); None: not in quick mode

# %%
cfg = chapter_config(profile=profile, subject=subject, quick=quick, seed=seed,
                     data_root=data_root, run_root=run_root)
all_subjects = (not cfg.quick) if all_subjects is None else bool(all_subjects)

# %% [markdown]
# ## The processed store
#
# `ensure_store` simulates the subject if the sim dataset is missing, then prepares the store under
# `runs/<profile>/subjNN/store` (or reuses one made from the same data with the same settings). On the paper
# profile the same call reads the real raw layout, or imports the authors' preprocessed release
# (`subj0S_train_fmri.pt` & co.) when that is what `data_root` holds. The store is the contract every later
# chapter reads:

# %%
store = ensure_store(cfg)
meta = store.meta
rows = [(name, str(getattr(store, attr).shape), str(getattr(store, attr).dtype))
        for name, attr in [("voxel_indices.npy", "voxel_indices"), ("fmri_train.npy", "fmri_train"),
                           ("fmri_test.npy", "fmri_test"), ("frames_train.npy", "frames_train"),
                           ("frames_test.npy", "frames_test")]
        if getattr(store, attr) is not None]
if store.has_labels:
    rows.append(("labels_train.npy", str(store.labels_train.shape), str(store.labels_train.dtype)))
pd.DataFrame(rows, columns=["file", "shape", "dtype"]).set_index("file")

# %% [markdown]
# ## Trimming, delay and detrending on one vertex
#
# The most reproducible selected vertex, in the first run of the first training segment: the raw signal
# with the trimmed window (the movie) and the delay-paired window, the 4th-order trend fitted on the paired
# window, and the result.

# %%
is_raw = detect_data_format(cfg.data_root, cfg.subject) == "raw"
if is_raw:
    seg0 = meta["train_segments"][0]
    tstat = np.load(store.path / "tstat.npy")
    vertex = int(store.voxel_indices[np.argmax(tstat[store.voxel_indices])])
    run = read_cortex(layout.run_path(cfg.data_root, cfg.subject, seg0, 1), layout.expected_volumes(seg0))[:, vertex]
    t0, t1 = prepare.trim_for(len(run))
    a, b = prepare.paired_window(len(run), meta["delay_trs"])
    basis = prepare.legendre_basis(b - a)
    trend = basis @ (basis.T @ run[a:b].astype(np.float64))
    fig, (ax0, ax1) = plt.subplots(2, 1, figsize=(11, 5.5), layout="constrained")
    ax0.plot(run, lw=0.8, color="0.3", label=f"raw ({len(run)} volumes)")
    ax0.plot(np.arange(a, b), trend, color="tab:red", lw=1.5, label="4th-order trend (paired window)")
    low, span = run.min(), np.ptp(run)
    # the two windows as bars under the trace: the movie volumes, and the same shifted by the 4 s delay
    ax0.hlines(low - 0.08 * span, t0, len(run) - t1 - 1, color="tab:blue", lw=5,
               label=f"trimmed: movie volumes {t0}..{len(run) - t1 - 1}")
    ax0.hlines(low - 0.16 * span, a, b - 1, color="tab:orange", lw=5,
               label=f"delay-paired window {a}..{b - 1} (+2 TRs)")
    ax0.set(xlabel="raw volume", ylabel="BOLD", title=f"{seg0}, repetition 1, vertex {vertex}")
    ax0.legend(loc="upper right", fontsize=8)
    ax1.plot(prepare.detrend_zscore(run[a:b, None])[:, 0], lw=0.8)
    ax1.set(xlabel="clip (paired volume = start + clip + 2)", ylabel="z")
    plt.show()

# %% [markdown]
# ## Reproducibility and selection
#
# The t-map over the cortex, and the vertices that pass the Bonferroni threshold, with the visual areas of the
# HCP-MMP atlas outlined:

# %%
if is_raw:
    sel = meta["selection"]
    pvalue = np.load(store.path / "pvalue.npy")
    fig, (ax0, ax1) = plt.subplots(2, 1, figsize=(11, 8))
    flatmap.plot_flatmap(np.clip(tstat, -5, 30), ax=ax0, cmap="magma", vmin=-5, vmax=30,
                         colorbar_label="t (clipped to [-5, 30])",
                         title=f"one-sample t of Fisher z across {len(meta['train_segments'])} training segments")
    mask = np.zeros(layout.N_CORTEX, bool)
    mask[store.voxel_indices] = True
    flatmap.plot_mask_flatmap(mask, ax=ax1, title=f"{mask.sum()} selected vertices "
                              f"({sel['sided']}, Bonferroni p < {sel['alpha']}/{sel['n_tests']}, t > "
                              f"{np.min(tstat[mask]):.1f})")
    plt.show()

# %% [markdown]
# On cc2017-sim we know which vertices the simulation drives, so the selection can be scored. The
# Bonferroni threshold bounds false positives (precision); recall depends on how reproducible the responsive
# vertices are and on how many training segments the t-test sees.

# %%
is_sim = meta["dataset"] == "sim"
if is_sim:
    from neuroclips_core.data.simulate import load_ground_truth

    def selection_scores(st, subj):
        truth = load_ground_truth(cfg.data_root, subj)["responsive"]
        chosen = np.zeros(layout.N_CORTEX, bool)
        chosen[st.voxel_indices] = True
        hits = int((chosen & truth).sum())
        return {"subject": subj, "selected": int(chosen.sum()), "truly responsive": int(truth.sum()),
                "precision": round(float(hits / max(chosen.sum(), 1)), 4),
                "recall": round(float(hits / max(truth.sum(), 1)), 4)}

    print(selection_scores(store, cfg.subject))

# %% [markdown]
# ## Counts per subject
#
# The three subjects differ (how much of each area responds, how reliably), so the same rule selects
# different numbers of voxels. The real cc2017 counts from the NeuroClips release are beside ours for scale
# (MinD-Video's stricter rule kept 6 016 / 6 224 / 3 744).

# %%
PAPER_COUNTS = {1: 13447, 2: 14828, 3: 9114}
subjects = [1, 2, 3] if all_subjects else [cfg.subject]
table = []
for s in subjects:
    st = store if s == cfg.subject else ensure_store(cfg, subject=s)
    row = selection_scores(st, s) if is_sim else {"subject": s, "selected": st.n_voxels}
    row["NeuroClips (real cc2017)"] = PAPER_COUNTS[s]
    table.append(row)
counts = pd.DataFrame(table).set_index("subject")
counts

# %% [markdown]
# ## Frames and captions
#
# Six frames per clip at 3 FPS, with the caption the store holds (on cc2017-sim the ground-truth caption; on
# the real data the captioner of chapter 03 writes them).

# %%
if store.has_frames:
    picks = np.linspace(0, store.n_test - 1, 4).astype(int)
    vframes.frame_strip([store.frames_test[i] for i in picks], titles=[f"{j / 3:.2f} s" for j in range(6)],
                        row_labels=[f"test clip {i}" for i in picks], frame_inches=1.2)
    plt.show()
    for i in picks:
        print(f"test clip {i}: {store.captions_test[i]}")

# %% [markdown]
# ## The delay check
#
# Is 2 TRs the right delay? For each shift $s$ we pair clip $k$ with raw volume $\text{start}+k+s$, fit a ridge
# encoding model from simple stimulus features (an 8 × 8 luminance image, colour means and frame-difference
# energy of each clip) to the selected vertices, and score held-out prediction correlation, leaving one
# training segment out at a time. The stimulus-driven prediction should match the data best at the true delay.

# %%
if is_raw and store.has_frames:
    n_check = 4 if cfg.quick else len(meta["train_segments"])
    profile_ = prepare.delay_profile(cfg.data_root, cfg.subject, store.voxel_indices,
                                     shifts=range(0, 5), frames=store.frames_train[:n_check * 240],
                                     segments=meta["train_segments"][:n_check], progress=True)
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.errorbar(profile_["shifts"] * layout.TR_SECONDS, profile_["mean_r"],
                yerr=profile_["fold_r"].std(1) / np.sqrt(profile_["fold_r"].shape[1]), marker="o")
    ax.axvline(meta["delay_trs"] * layout.TR_SECONDS, color="k", ls="--", lw=1, label="delay used (4 s)")
    ax.set(xlabel="shift (s)", ylabel="held-out prediction r", title="delay check")
    ax.legend()
    plt.show()
    print(f"best shift: {profile_['best_shift']} TRs ({profile_['best_shift'] * layout.TR_SECONDS:.0f} s)")
    if not cfg.quick and profile_["best_shift"] != meta["delay_trs"]:
        raise AssertionError(f"the data peak at shift {profile_['best_shift']}, not {meta['delay_trs']}")

# %% [markdown]
# ## Datasets for training
#
# The models read the store through `ClipDataset`. Training draws one of the two repetitions at random per
# sample; the test set averages its 10 repetitions at the input (as the official code does). The validation
# split is carved from the training data as **whole segments**, so no validation clip shares a segment, a
# shot or a haemodynamic tail with a training clip. *Against the official code*, which selects its checkpoints
# on the test set, no model in this book ever sees the test set before its final evaluation.

# %%
train_idx, val_idx = store.train_val_split(0.1)
val_segments = sorted({str(s) for s in store.segment_of_train_clip[val_idx]}, key=layout.segment_sort_key)
print(f"train clips {len(train_idx)}, validation clips {len(val_idx)} (segments {val_segments}), "
      f"test clips {store.n_test}")
sample = ClipDataset(store, "test")[0]
{k: (tuple(v.shape), str(v.dtype)) if hasattr(v, "shape") else v for k, v in sample.items()}

# %% [markdown]
# **Decisions in this chapter, against the paper and the official code**
#
# | step | official (paper / code) | here, and why |
# |---|---|---|
# | voxel selection | t-test + Bonferroni P < 0.05 (not in the code; sidedness unstated) | implemented; one-sided, since only positive reproducibility is stimulus-driven |
# | 4 s delay | "with a delay of 4 seconds"; no code applies it | clip $k$ ↔ raw volume start + k + 2; the trailing volumes keep all 240 clips |
# | detrend window | the trimmed 240 volumes | the delay-paired 240 volumes, so each clip's statistics come from its own responses |
# | frames | 6 per clip at 3 FPS, which 6 unstated | frames 5, 15, …, 55 (bin centres) |
# | model selection | on the test set | on whole held-out training segments |
# | test repetitions | averaged at the input | same (a train/test SNR shift the models must live with) |
