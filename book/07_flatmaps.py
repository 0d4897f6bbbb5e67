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
# **Two measures** (`neuroclips_core.flatmaps_run`). For a first layer $W \in \mathbb{R}^{h \times V}$ (the PR's
# Inception Extension `lin0`, the SR's `ridge`):
#
# - *weights*, the paper's: $m_v = \lVert W_{:,v} \rVert_2$, saved as `pr_weights.npy` and `sr_weights.npy`;
# - *saliency*: the same column seen through the rest of the network. With $J_h$ the Jacobian of the output with
#   respect to the first layer's output, $\partial y / \partial x_v = J_h W_{:,v}$, and
#
#   $$s_v = \Big(\mathbb{E}_{x \in \text{test}} \big\lVert J_h(x)\, W_{:,v} \big\rVert_2^2\Big)^{1/2},$$
#
#   estimated with random output directions (Hutchinson). The paper's measure is the case $J_h = I$. Saliency also
#   counts every other path from the fMRI, here the PR's frozen ridge skip.
#
# **Why two.** A first layer's column norms are set mostly by where it started: at random in the official code,
# in ridge regression's predictive subspace normalised to unit variance per hidden unit in this book's sim
# recipe (chapters 02-03). Training changes them by a fraction, so the paper's map can look like the mask of the
# selected voxels. The chapter reports both and says how far each is from equal weights.
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
from neuroclips_core.flatmaps_run import GROUP_TITLES, MEASURES, direction_checks, voxel_weight_maps
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
# Each map is divided by its mean over the selected vertices, so 1 is an equal share and the four panels share
# one colour scale; grey is cortex outside the selection. Outlined: V1, V2, V3 (early), MT (motion), V4 and FFC
# (ventral).

# %%
ROIS = ("V1", "V2", "V3", "MT", "V4", "FFC")
for s, result in maps.items():
    fig, axes = plt.subplots(2, 2, figsize=(12, 7), layout="constrained")
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
# ## Mass per area group, beside equal weights and the ground truth
#
# On the simulated world every selected vertex in these groups is one the simulation drives (the last column,
# from `ground_truth/subjectN/responsive.npy`), so an equal share is what a model that reads all of them alike
# would give. A model that leans on a group shows a share above its equal share.

# %%
rows = []
for s, result in maps.items():
    summary = result.summary
    for group, title in GROUP_TITLES.items():
        row = {"subject": s, "group": title, "equal weights": summary["equal_weights"][group]}
        for measure in MEASURES:
            for model in ("pr", "sr"):
                row[f"{model.upper()} {measure}"] = summary["mass"][measure][model][group]
        if "ground_truth" in summary:
            row["driven share of selected (truth)"] = summary["ground_truth"]["responsive_share_of_selected"][group]
        rows.append(row)
mass = pd.DataFrame(rows).set_index(["subject", "group"])
display(mass.style.format("{:.3f}", na_rep=""))

# %%
fig, axes = plt.subplots(1, len(MEASURES), figsize=(11, 3.4), layout="constrained", sharey=True)
groups = list(GROUP_TITLES)
width = 0.8 / (2 * len(maps))
for ax, measure in zip(axes, MEASURES):
    for k, (s, result) in enumerate(maps.items()):
        equal = np.array([result.summary["equal_weights"][g] for g in groups])
        for j, model in enumerate(("pr", "sr")):
            share = np.array([result.summary["mass"][measure][model][g] for g in groups])
            ax.bar(np.arange(len(groups)) + (2 * k + j - len(maps)) * width + width / 2, share / equal - 1,
                   width, color=f"C{j}", alpha=1 - 0.25 * k, label=f"{model.upper()}, subject {s}")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(range(len(groups)), [GROUP_TITLES[g] for g in groups])
    ax.set(title=measure, ylabel="mass ÷ equal share − 1" if measure == MEASURES[0] else None)
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
# **Reading the result.** The paper's measure keeps the start's imprint: where its shares sit within a hair of the
# equal shares, the flat map is the selection mask. Saliency is where training shows. On the sim the PR is the
# one expected to lean: the simulation puts the pixel-level signal its blurry video needs on V1-V3 (and the frozen
# ridge skip carries most of it). The SR's targets, the stand-in CLIP's image tokens, carry the frames' colours and
# layout as well as the class, so early vertices predict them too and the SR need not lean on the ventral group.
# The numbers of this run:

# %%
def lean(result, measure, model, group):
    return result.summary["mass"][measure][model][group] - result.summary["equal_weights"][group]


for s, result in maps.items():
    print(f"subject {s}: share minus equal share, early / ventral  "
          + "  ".join(f"{model.upper()} {measure}: {lean(result, measure, model, 'early'):+.3f} / "
                      f"{lean(result, measure, model, 'higher'):+.3f}"
                      for measure in MEASURES for model in ("pr", "sr")))
