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
# # 07 · Where each reconstructor reads: voxel-weight flat maps
#
# NeuroClips' two reconstructors read the same fMRI for different things: the Perception Reconstructor (PR) for
# the layout and motion of a blurry video, the Semantics Reconstructor (SR) for what is in it. The paper (§7,
# App. C.5, Fig. 5 and 12) draws the first layer's voxel weights of each on the cortical surface and reads the
# PR's as leaning on early visual cortex and the SR's on higher visual cortex. The official code has no such
# figure; this chapter makes it for every subject and, on the simulated world, checks it against the truth: there
# we know which vertices the simulation drives with pixels (V1-V3), with motion (the dorsal stream) and with the
# object's class (the ventral stream).
#
# **Three measures** (`neuroclips_core.flatmaps_run`). For a first layer $W \in \mathbb{R}^{h \times V}$ (the PR's
# Inception Extension `lin0`, the SR's `ridge`):
#
# - *weights*, the paper's: $m_v = \lVert W_{:,v} \rVert_2$, saved as `pr_weights.npy` and `sr_weights.npy`;
# - *pattern*: the same weights read as a forward model (Haufe et al. 2014, "On the interpretation of weight
#   vectors of linear models in multivariate neuroimaging"). A decoder weighs a voxel by how much it *uses* it, and
#   that includes cancelling the noise the voxel shares with its neighbours; where the signal the layer extracts
#   *lies* shows in each voxel's covariance with the layer's output,
#
#   $$A = \operatorname{Cov}(x, Wx) = \Sigma_x W^\top \in \mathbb{R}^{V \times h}, \qquad p_v = \lVert A_{v,:} \rVert_2,$$
#
#   over the training fMRI. Haufe's full pattern also right-multiplies by $\operatorname{Cov}(Wx)^{-1}$, so that
#   each hidden unit's pattern is per unit of its own output; we keep the covariance form, which weighs the hidden
#   units by their variance, as the column norms weigh them by their weights. Its baseline is not equal weights: a layer of random weights has
#   $\mathbb{E}\, p_v^2 \propto \lVert (\Sigma_x)_{v,:} \rVert_2^2$, so voxels that share variance with many
#   others (here early visual cortex, whose receptive fields overlap) get more of it even from a layer that learned
#   nothing;
# - *saliency*: the same column seen through the rest of the network. With $J_h$ the Jacobian of the output with
#   respect to the first layer's output, $\partial y / \partial x_v = J_h W_{:,v}$, and
#
#   $$s_v = \Big(\mathbb{E}_{x \in \text{test}} \big\lVert J_h(x)\, W_{:,v} \big\rVert_2^2\Big)^{1/2},$$
#
#   estimated with random output directions (Hutchinson). The paper's measure is the case $J_h = I$. Saliency also
#   counts every other path from the fMRI, here the PR's frozen ridge skip.
#
# **Why three.** A first layer's column norms are set mostly by where it started: at random in the official code,
# in ridge regression's predictive subspace normalised to unit variance per hidden unit in this book's sim
# recipe (chapters 02-03). Training changes them by a fraction, so the paper's map can look like the mask of the
# selected voxels. And even a converged linear decoder spreads its weights over every voxel whose noise helps
# cancel another's: its weights say how a voxel is used, not whether it carries the signal. The pattern answers
# the second question from the same $W$; the saliency answers the first one through the whole network. Each is
# compared with what a model that learned nothing would give (`baseline_shares`).
#
# **Mass per area group.** The share of a map's total on the HCP-MMP parcels of each group: early (V1-V3),
# dorsal / motion (MT, MST, FST, V4t, V3A/B, V6/6A) and ventral / higher (V4, V8, PIT, FFC, VVC, VMV1-3, LO1-3, PH,
# V7, IPS1, TPOJ1), the groups cc2017-sim draws its vertex roles from. Shares are free of the two models'
# different weight scales; equal weights give each group its share of the selected vertices.

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display

from neuroclips_core.config import SUBJECTS
from neuroclips_core.data.ensure import ensure_store
from neuroclips_core.flatmaps_run import (GROUP_TITLES, MEASURES, baseline_shares, direction_checks,
                                          voxel_weight_maps)
from neuroclips_core.notebook import chapter_config, env_default, parameter_list
from neuroclips_core.perception_run import train_perception
from neuroclips_core.semantics_run import train_semantics
from neuroclips_core.viz import flatmap

# %% tags=["parameters"]
profile = "sim"
subject = 1
quick = env_default("NEUROCLIPS_QUICK", False)
seed = 0
data_root = None
run_root = None
subjects = None            # the subjects to map, e.g. "1,2,3"; None: all three ([subject] in quick mode)

# %%
cfg = chapter_config(profile=profile, subject=subject, quick=quick, seed=seed,
                     data_root=data_root, run_root=run_root)
subjects = parameter_list(subjects, SUBJECTS, "subjects", [cfg.subject] if cfg.quick else list(SUBJECTS))

# %% [markdown]
# ## The models: chapters 02 and 03 for each subject
#
# Reused when their runs are on disk with the same parameters, trained here otherwise (about 25 minutes a subject
# on two CPU cores at the default sizes).

# %%
maps = {}
for s in subjects:
    store = ensure_store(cfg, s)
    train_perception(cfg, s, store=store)
    train_semantics(cfg, s, store=store)
    maps[s] = voxel_weight_maps(cfg, s)
    print(f"subject {s}: {maps[s].summary['n_selected']} selected vertices -> {maps[s].folder}")

# %% [markdown]
# ## The maps
#
# Each map is divided by its mean over the selected vertices, so 1 is an equal share; each panel's colour scale is
# centred on 1 and spans 98 % of its vertices' distance from it; grey is cortex outside the selection. Outlined: V1, V2, V3 (early), MT (motion), V4 and FFC
# (ventral).

# %%
ROIS = ("V1", "V2", "V3", "MT", "V4", "FFC")
for s, result in maps.items():
    fig, axes = plt.subplots(len(MEASURES), 2, figsize=(12, 3.5 * len(MEASURES)), layout="constrained")
    for row, measure in enumerate(MEASURES):
        for col, model in enumerate(("pr", "sr")):
            values = result.map(model, measure)
            relative = values / np.nanmean(values)
            spread = np.nanpercentile(np.abs(relative - 1), 98)
            flatmap.plot_flatmap(relative, ax=axes[row, col], cmap="RdBu_r", vmin=1 - spread, vmax=1 + spread,
                                 outline_rois=ROIS, colorbar_label="÷ mean", crop=True,
                                 title=f"subject {s}, {model.upper()}, {measure}")
    plt.show()

# %% [markdown]
# ## Mass per area group, beside the baselines and the ground truth
#
# On the simulated world every selected vertex in these groups is one the simulation drives (the last column,
# from `ground_truth/subjectN/responsive.npy`), so an equal share is what a model that reads all of them alike
# would give, and a random layer's pattern is what the pattern of a layer that learned nothing gives. A model that
# leans on a group shows a share above its baseline.

# %%
rows = []
for s, result in maps.items():
    summary = result.summary
    for group, title in GROUP_TITLES.items():
        row = {"subject": s, "group": title, "equal weights": summary["equal_weights"][group],
               "random layer's pattern": summary["random_layer_pattern"][group]}
        for measure in MEASURES:
            for model in ("pr", "sr"):
                row[f"{model.upper()} {measure}"] = summary["mass"][measure][model][group]
        if "pr_ridge_skip_pattern" in summary:
            row["PR ridge skip pattern"] = summary["pr_ridge_skip_pattern"][group]
        if "ground_truth" in summary:
            row["driven share of selected (truth)"] = summary["ground_truth"]["responsive_share_of_selected"][group]
        rows.append(row)
mass = pd.DataFrame(rows).set_index(["subject", "group"])
display(mass.style.format("{:.3f}", na_rep=""))

# %%
fig, axes = plt.subplots(1, len(MEASURES), figsize=(14, 3.4), layout="constrained", sharey=True)
groups = list(GROUP_TITLES)
width = 0.8 / (2 * len(maps))
for ax, measure in zip(axes, MEASURES):
    for k, (s, result) in enumerate(maps.items()):
        base = baseline_shares(result.summary, measure)
        base = np.array([base[g] for g in groups])
        for j, model in enumerate(("pr", "sr")):
            share = np.array([result.summary["mass"][measure][model][g] for g in groups])
            ax.bar(np.arange(len(groups)) + (2 * k + j - len(maps)) * width + width / 2, share / base - 1,
                   width, color=f"C{j}", alpha=1 - 0.25 * k, label=f"{model.upper()}, subject {s}")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(range(len(groups)), [GROUP_TITLES[g] for g in groups])
    ax.set(title=measure, ylabel="mass ÷ baseline share − 1" if measure == MEASURES[0] else None)
axes[-1].legend(fontsize=7, ncol=2)
plt.show()

# %% [markdown]
# ## The paper's reading, checked
#
# The paper's claim as two checks that must hold for every subject mapped: the PR's share on V1-V3 exceeds the
# SR's, and the SR's share on the ventral / higher group exceeds the PR's.

# %%
checks = pd.DataFrame({measure: direction_checks({s: r.summary for s, r in maps.items()}, measure)
                       for measure in MEASURES})
checks.index = ["PR's V1-V3 share > SR's", "SR's ventral share > PR's"]
checks

# %% [markdown]
# **Reading the result.** The paper's measure keeps the start's imprint: its shares sit within a hair of the
# equal shares, so its flat map is the selection mask, and its V1-V3 check fails on every seed we ran (the PR's
# share is within 0.0034 of the SR's, and below it on 6 of the 8 subject runs in the table below). The two other measures, per run (`benchmarks/probe_flatmaps.py --seed S
# --run-root runs/seedS --subjects 1,2,3` prints them from chapters 02-03's checkpoints):
#
# | seed | subject | V1-V3 pattern: PR / SR (random layer) | ventral pattern: PR / SR (random layer) | V1-V3 saliency: PR / SR | ventral saliency: PR / SR |
# |---|---|---|---|---|---|
# | 27 | 1 | 0.591 / 0.553 (0.565) | 0.268 / 0.308 (0.300) | 0.470 / 0.430 | 0.377 / 0.416 |
# | 27 | 2 | 0.536 / 0.482 (0.493) | 0.258 / 0.302 (0.296) | 0.427 / 0.384 | 0.335 / 0.367 |
# | 27 | 3 | 0.588 / 0.554 (0.560) | 0.261 / 0.307 (0.305) | 0.505 / 0.427 | 0.340 / 0.418 |
# | 12 | 1 | 0.583 / 0.549 (0.550) | 0.270 / 0.316 (0.315) | 0.469 / 0.429 | 0.376 / 0.416 |
# | 41 | 1 | 0.561 / 0.550 (0.559) | 0.289 / 0.308 (0.302) | 0.469 / 0.428 | 0.376 / 0.417 |
# | **53** | 1 | 0.602 / 0.556 (0.566) | 0.256 / 0.310 (0.302) | 0.470 / 0.429 | 0.376 / 0.415 |
# | **53** | 2 | 0.517 / 0.505 (0.494) | 0.263 / 0.282 (0.291) | 0.429 / 0.382 | 0.325 / 0.359 |
# | **53** | 3 | **0.537** / 0.561 (0.562) | 0.289 / 0.308 (0.306) | 0.501 / 0.429 | 0.343 / 0.417 |
#
# The pattern was added after the runs of seeds 27, 12 and 41 had been looked at; seed 53 was simulated and trained
# for the check after both the pattern and the saliency were final. **The saliency passes both checks on every
# subject of every run, the fresh seed included. The pattern fails the V1-V3 check on seed 53's subject 3**, where
# the PR's first layer sits below even a random layer's share. A look after the fact says why: in this book's sim
# recipe the PR reads the voxels through two linear maps, the Inception Extension's first layer and the frozen
# ridge skip (chapter 02), and the skip's pattern (the mass table's "PR ridge skip pattern") has 0.77-0.80 of its
# mass on V1-V3 on all three subjects of seed 53. So the first layer is free to model what the ridge misses, and
# how much of that is early visual varies from run to run. On seed 53's subject 3 it went to motion: the first
# layer's pattern puts 0.174 of its mass on the dorsal / motion group against a random layer's 0.131 (the skip's:
# 0.094). The paper's PR has no skip; the saliency counts both paths.
#
# Read beside its baseline, the SR is not the PR's mirror image: its pattern sits within 0.012 of a random layer's
# share on both groups, either way. Its targets, the stand-in CLIP's image tokens, carry the frames' colours and
# layout as well as the class, so early vertices predict them too and the SR has no reason to lean on the ventral
# group. The difference between the two models that the paper draws is, on the sim, carried by the PR. The numbers
# of this run:

# %%
def lean(result, measure, model, group):
    return result.summary["mass"][measure][model][group] - baseline_shares(result.summary, measure)[group]


for s, result in maps.items():
    print(f"subject {s}: share minus baseline share, early / ventral  "
          + "  ".join(f"{model.upper()} {measure}: {lean(result, measure, model, 'early'):+.3f} / "
                      f"{lean(result, measure, model, 'higher'):+.3f}"
                      for measure in MEASURES for model in ("pr", "sr")))
