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
# # 05 · Multi-fMRI fusion: longer videos from neighbouring fMRI
#
# One fMRI sample gives one 2-second clip. A movie's shots last longer than that, so neighbouring samples often
# show the same scene, and their clips, made independently, jump at every boundary. NeuroClips (§3.4) joins them:
# a shallow MLP reads the CLIP representations of two neighbouring **reconstructed keyframes** and decides whether
# they belong to the same scene; when it says yes, the next clip is generated with the **last frame of the previous
# video as its keyframe** (SparseCtrl's frame 0), so the two clips meet where the first one ended. Chains of up to
# three clips make 6-second videos.
#
# With $e_i$ the unit CLIP embedding of clip $i$'s keyframe, the judge is
#
# $$p(\text{same} \mid i, i+1) = \sigma\big(\mathrm{MLP}([\,e_i \odot e_{i+1},\; |e_i - e_{i+1}|\,])\big),$$
#
# symmetric in the two clips, and continuity at a boundary is the cosine of the CLIP embeddings of the two frames
# that meet: the last of clip $i$ and the first of clip $i+1$.
#
# **Decisions** (the official code has no fusion; neuroclips-official-code.md):
#
# - *Labels.* On sim, the simulation's class per clip. On real cc2017, which has no labels, the frame
#   classifier's top class of each clip's ground-truth keyframe (stored frame 2).
# - *Training pairs.* The paper does not say which pairs train the MLP. Reconstructed keyframes exist for the test
#   clips only, so the paper's judge is scored by blocked cross-validation over the one test segment: 5 contiguous
#   folds, the pairs that share a clip with a held-out pair left out of training. Every decision below comes from a
#   model that never saw that pair. (Trained instead on the training runs' *true* keyframes, it does no better on
#   reconstructed ones: 0.59 on seed 12, against 0.91 on the test clips' true keyframes. The keyframes are what
#   limits it.)
# - *What a fused clip keeps.* Its own blurry video, caption and seed; only the keyframe is replaced. So fused and
#   unfused videos differ by the keyframe alone.
# - *A second judge, `fmri_class`* (not in the paper), asks the fMRI directly. A linear class decoder (closed-form
#   ridge from a clip's response to one-hot classes, trained on the training runs, penalty chosen on held-out runs)
#   turns each response $y_i$ into class scores $s_i$; with $\tilde s_i$ the scores centred on their run's mean,
#   the features of the boundary between clips $i$ and $i+1$ are the cosines among the four clips around it,
#
#   $$x_i = \big(\cos(\tilde s_a, \tilde s_b)\big)_{i-1 \le a < b \le i+2},$$
#
#   six numbers, read by the same kind of MLP. A shot change is a change point in a slow signal: the clips on either
#   side of the pair, and how alike the ones before and after it are, say more than the pair alone. The judge needs
#   no reconstruction, so it trains on every neighbouring pair of the 18 training runs (4302 pairs; each run's
#   class scores come from a decoder fitted on the other runs, so they are as noisy as the test's would be) and is
#   scored on every test pair. The features are standardised within each split, since a test response averages 10
#   repetitions and a training one 2. Its design was chosen on seed 12 (`benchmarks/probe_fusion_judges.py` lists
#   what was tried) and checked on seeds 27, 41 and 53; seed 53 was made after the design was final.

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display

from neuroclips_core.data.ensure import ensure_store
from neuroclips_core.fusion_run import JUDGES, MAX_CHAIN, fuse
from neuroclips_core.keyframes_run import reconstruct_semantics
from neuroclips_core.notebook import chapter_config, env_default, parameter_list
from neuroclips_core.perception_run import train_perception
from neuroclips_core.semantics_run import train_semantics
from neuroclips_core.video_run import inference_dir
from neuroclips_core.viz import frames as vframes

# %% tags=["parameters"]
profile = "sim"
subject = 1
quick = env_default("NEUROCLIPS_QUICK", False)
seed = 0
data_root = None
run_root = None
judges = None              # e.g. "keyframe"; None: "keyframe,fmri_class" (the paper's first)
n_clips = None             # the first n test clips, as chapter 04; None: all (24 in quick mode)
retrain = False            # generate the fused clips again even if this exact run is on disk

# %%
cfg = chapter_config(profile=profile, subject=subject, quick=quick, seed=seed,
                     data_root=data_root, run_root=run_root)
judges = parameter_list(judges, JUDGES, "judges", list(JUDGES))

# %% [markdown]
# ## The inputs: chapters 02-04
#
# The blurry videos, keyframes and chapter 04's full videos (the unfused ones), reused from disk or made here.

# %%
store = ensure_store(cfg, cfg.subject)
train_perception(cfg, store=store)
train_semantics(cfg, store=store)
reconstruct_semantics(cfg, store=store)
results = {j: fuse(cfg, judge=j, n_clips=n_clips, retrain=retrain) for j in judges}
first = results[judges[0]]
print(f"{len(first.summary['probabilities'])} neighbouring pairs of {len(first.videos)} test clips")

# %% [markdown]
# ## The judge on held-out pairs
#
# Accuracy against the majority-class rate (always answering the commoner label), and balanced accuracy (the mean
# of the recall of "same" and "different", 0.5 by chance). Every probability comes from a model that did not train
# on its pair: cross-validated on the test pairs (`keyframe`) or trained on the training runs (`fmri_class`).

# %%
judge_table = pd.DataFrame({j: {k: r.summary["judge"][k] for k in
                                ("accuracy", "balanced_accuracy", "majority_rate", "same_rate_true",
                                 "same_rate_judged", "n_pairs")} for j, r in results.items()}).T
display(judge_table.style.format("{:.3f}", subset=judge_table.columns[:-1]))
print("labels:", first.summary["judge"]["labels"])
for j, r in results.items():
    print(f"{j}: trained on {r.summary['judge']['trained_on']}")

# %%
fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3), layout="constrained", squeeze=False)
for ax, (j, r) in zip(axes[0], results.items()):
    p, y = np.asarray(r.summary["probabilities"]), np.asarray(r.summary["same_true"])
    bins = np.linspace(0, 1, 21)
    ax.hist(p[y], bins, alpha=0.6, label="same class")
    ax.hist(p[~y], bins, alpha=0.6, label="different")
    ax.axvline(0.5, color="k", lw=0.8)
    ax.set(title=f"judge '{j}': held-out probabilities", xlabel="p(same)", ylabel="pairs")
    ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## Continuity across the boundaries the fusion joins
#
# For every boundary inside a chain: the CLIP cosine of the two frames that meet, unfused (chapter 04's videos,
# made independently) and fused, with the ground truth's own boundary (its last and first stored frames, 1/3 s
# apart at 3 FPS, so a little lower than a seamless cut would give).

# %%
rows = {}
for j, r in results.items():
    c = r.summary["continuity"]
    rows[j] = {"boundaries joined": c["fused"]["n"], "fused": c["fused"]["mean"], "unfused": c["unfused"]["mean"],
               "ground truth": c["ground_truth"]["mean"], "unfused, all neighbours": c["unfused_all_pairs"]["mean"],
               "chains of 1 / 2 / 3": " / ".join(str(r.summary["chain_lengths"][str(k)])
                                                for k in range(1, MAX_CHAIN + 1))}
continuity = pd.DataFrame(rows).T
display(continuity)

fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.6), layout="constrained", squeeze=False)
for ax, (j, r) in zip(axes[0], results.items()):
    b = r.summary["per_boundary"]
    ax.scatter(b["unfused"], b["fused"], s=12)
    lo = min(b["unfused"] + b["fused"] + [0.5])
    ax.plot([lo, 1], [lo, 1], "k:", lw=0.8)
    better = np.mean(np.asarray(b["fused"]) > np.asarray(b["unfused"])) if b["fused"] else float("nan")
    ax.set(xlabel="unfused boundary similarity", ylabel="fused", title=f"judge '{j}': fused higher at "
           f"{better:.0%} of {len(b['fused'])} boundaries")
plt.show()

# %% [markdown]
# ## Fused long videos
#
# Chains of two or three clips, end to end: chapter 04's unfused clips on the left, the fused ones on the right
# (8 FPS; a chain of three is 48 frames, 6 s). Then one chain as a strip: every fourth frame, boundaries marked.

# %%
for path in first.gifs():
    display(vframes.show_gif(path, width=2 * 130 + 10))

# %%
long = [c for c in first.chains if len(c) > 1]
if long:
    chain = max(long, key=len)
    truth = np.asarray(store.frames_test)
    unfused_all = np.load(inference_dir(cfg, cfg.subject, "full") / "videos_test.npy", mmap_mode="r")
    unfused = np.concatenate([np.asarray(unfused_all[i]) for i in chain])
    fused = np.concatenate([np.asarray(first.videos[i]) for i in chain])
    vframes.frame_strip([np.concatenate([truth[i] for i in chain]), unfused[::4], fused[::4]],
                        row_labels=["truth (3 FPS)", "unfused (every 4th)", "fused (every 4th)"],
                        suptitle=f"chain of clips {chain}: boundaries after every 6 truth frames / 4 video frames",
                        frame_inches=0.8)
    plt.show()
else:
    print("the judge joined no pairs")

# %% [markdown]
# ## Acceptance (issue 7), this subject
#
# The judge is at least 0.8 accurate on held-out pairs, and fused boundaries are smoother than unfused ones.

# %%
for j, r in results.items():
    c = r.summary["continuity"]
    print(f"judge '{j}': accuracy >= 0.8: {r.summary['judge']['accuracy'] >= 0.8} "
          f"({r.summary['judge']['accuracy']:.3f});  fused smoother: "
          f"{c['fused']['n'] > 0 and c['fused']['mean'] > c['unfused']['mean']}")

# %% [markdown]
# **Measured** on cc2017-sim seed 27, subject 1: 240 test clips, 239 neighbouring pairs, 64% of them the same
# class (`papermill book/05_fusion.ipynb out.ipynb -p seed 27 -p run_root runs/seed27 -p subject 1`, 4.5 minutes on
# 1 thread with chapter 04 and the `keyframe` judge's fused clips on disk; regenerating the chains' later clips takes
# about 3 minutes a judge; the sim sampler, which shares the frames' fine noise, chapter 04).
#
# | judge | accuracy | balanced | always "same" | boundaries joined | boundary cosine: fused / unfused / truth | fused higher |
# |---|---|---|---|---|---|---|
# | `keyframe` (the paper's) | 0.594 | 0.568 | 0.636 | 114 | **0.792** / 0.520 / 0.897 | 82% |
# | `fmri_class` | **0.874** | 0.877 | 0.636 | 128 | **0.796** / 0.539 / 0.941 | 80% |
#
# And on seed 41, subject 1 (chapters 01-03 run on that seed first; 10.4 minutes for this chapter on 1 thread,
# chapter 04's full videos included; 62% of the pairs the same class):
#
# | judge | accuracy | balanced | always "same" | boundaries joined | boundary cosine: fused / unfused / truth | fused higher |
# |---|---|---|---|---|---|---|
# | `keyframe` (the paper's) | 0.556 | 0.521 | 0.623 | 120 | **0.804** / 0.583 / 0.920 | 80% |
# | `fmri_class` | **0.845** | 0.854 | 0.623 | 120 | **0.800** / 0.617 / 0.952 | 78% |
#
# The `fmri_class` judge's accuracy on every subject of four seeds
# (`benchmarks/probe_fusion_judges.py --seed S --run-root runs/seedS --subjects 1,2,3`, a minute and a half for
# three subjects; it calls the chapter's own judge function and needs only chapter 01):
#
# | seed | subject 1 | subject 2 | subject 3 | always "same" |
# |---|---|---|---|---|
# | 12 (where the design was chosen) | 0.883 | 0.887 | 0.900 | 0.632 |
# | 27 | 0.874 | 0.900 | 0.849 | 0.636 |
# | 41 (seen with an earlier version, the raw fMRI in place of the class scores: 0.80 / 0.80 / 0.79) | 0.845 | 0.874 | 0.854 | 0.623 |
# | 53 (made after the design was final) | **0.921** | **0.891** | **0.908** | 0.623 |
#
# The fusion does what the paper says: starting a clip from the previous clip's last frame raises the similarity
# where two clips meet by 0.18-0.27 (from 0.52-0.62 to 0.79-0.80), and does so at 78-82% of the boundaries it joins.
# On seed 12 (with the paper's independent frame noise) the gain was similar, 0.25, at 80-84% of the boundaries.
#
# The paper's judge is the weak part here. It sees only the two reconstructed keyframes, and the stand-in unCLIP's
# keyframes carry little of their clip's class (chapter 03: keyframe 50-way about 0.19), so it does worse than always
# answering "same". The fMRI itself carries the class well: the `fmri_class` judge's ridge decoder names the right
# one of 60 classes for 0.84-0.88 of seed 12's test clips. So a judge that reads the fMRI directly, and the clips
# around the boundary as well as the pair, reaches 0.85-0.92 on each subject of four seeds. The fused videos of
# the two judges are about equally smooth at the boundaries they join. `fmri_class` joins more of the true
# same-scene pairs, so its joined boundaries are smoother in the ground truth too (0.941 against 0.897).
