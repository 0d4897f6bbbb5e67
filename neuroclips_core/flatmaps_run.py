"""Chapter 07's core: where on cortex each reconstructor reads from (paper §7, App. C.5).

    from neuroclips_core.flatmaps_run import voxel_weight_maps

    maps = voxel_weight_maps(cfg, subject=2)     # needs chapters 02 and 03 for the subject
    maps.map("pr", "weights")                    # float (59412,): per-vertex weight magnitude, NaN where unselected
    maps.summary["mass"]["saliency"]["sr"]["higher"]   # the SR's share of its saliency on the ventral group

**Three measures per model**, each a float (59412,) map, NaN where the vertex was not selected:

- ``weights``: the paper's.  The first fMRI layer of each model is a linear map of the V selected voxels (the PR's
  Inception Extension ``lin0``, the SR's ``ridge``, both ``nn.Linear(V, hidden)`` as in the official code, each
  model's ``voxel_layer``); a vertex's magnitude is its column's L2 norm ``||W[:, v]||``.  Written to
  ``pr_weights.npy`` and ``sr_weights.npy`` (DESIGN.md §7).
- ``pattern``: the same weights read as a forward model (Haufe et al. 2014, NeuroImage 87:96, "On the
  interpretation of weight vectors of linear models in multivariate neuroimaging").  A decoder's weight on a voxel
  says how much it *uses* the voxel, which includes cancelling noise the voxel shares with others; where the
  information *is* shows in the covariance of each voxel with the layer's output, ``A = Cov(x, W x) = Sigma_x W^T``
  (V, hidden).  A vertex's magnitude is its row norm ``||A[v, :]||``, over the training fMRI (mean of the
  repetitions).  Haufe's full pattern also right-multiplies by ``Cov(W x)^-1``, so that each hidden unit's pattern
  is per unit of its own output; the covariance form kept here weighs the units by their variance instead.
  Written to ``pr_pattern.npy``, ``sr_pattern.npy``.
- ``saliency``: the same column seen through the rest of the network.  By the chain rule the output's gradient
  with respect to voxel v is ``J_h W[:, v]`` (``J_h``: the Jacobian of the output with respect to the first layer's
  outputs), so ``sqrt(E_x ||dy/dx_v||^2)`` over the test fMRI weights each column by how much the network downstream
  uses the hidden units it feeds.  The raw column norm is the special case ``J_h = I``.  It also counts every path
  from the fMRI (the PR's frozen ridge skip in the sim recipe).  Written to ``pr_saliency.npy``, ``sr_saliency.npy``.

Why three: a first layer that starts at random (official code) or in ridge's predictive subspace normalised to
unit variance per hidden unit (this book's sim recipe, :func:`~neuroclips_core.models.blocks.init_linear_from_ridge`)
has column norms set mostly by its start; training moves them by a fraction.  And even a converged decoder's
weights spread over every voxel whose noise helps cancel another's, which is the case Haufe et al. warn of.  The
chapter shows how far each measure is from what a model that learned nothing would give (:func:`baseline_shares`).

**Area groups** (:data:`AREA_GROUPS`): HCP-MMP parcels of early visual cortex (V1-V3), the dorsal / motion stream
and the ventral / higher stream, the grouping cc2017-sim draws its vertex roles from (``data/sim_brain.py``), so on
sim the groups are the ground-truth roles.  A map's *mass* in a group is the share of its total on the group's
vertices (free of the models' different scales); beside it, the share of the selected vertices in the group (what
equal weights give), the share of a random layer's pattern (the pattern's baseline: :func:`random_layer_pattern`)
and, on sim, the share of each group's selected vertices the simulation drives.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .artifacts import json_clean, step_dir
from .config import RunConfig
from .data.layout import N_CORTEX, ground_truth_dir
from .data.sim_brain import ROLE_PARCELS
from .pipelines.blurry import save_npy_atomic
from .train import write_json_atomic

MODELS = ("pr", "sr")
MEASURES = ("weights", "pattern", "saliency")
SUMMARY_FILE = "flatmaps.json"
#: HCP-MMP parcels of each area group: the parcels cc2017-sim draws its vertex roles from (one definition)
AREA_GROUPS = dict(ROLE_PARCELS)
GROUP_TITLES = {"early": "early (V1-V3)", "motion": "dorsal / motion", "higher": "ventral / higher"}
SALIENCY_PROBES = 8          # random output directions per batch: the estimate's relative noise is ~1/sqrt(8 N)


def map_file(model: str, measure: str) -> str:
    """``pr_weights.npy``, ``sr_saliency.npy``, ...: the file of one model's map."""
    if model not in MODELS or measure not in MEASURES:
        raise ValueError(f"flat maps exist for models {MODELS} and measures {MEASURES}; asked for {model!r}, "
                         f"{measure!r}")
    return f"{model}_{measure}.npy"


def on_cortex(per_voxel: np.ndarray, voxel_indices: np.ndarray, n_vertices: int = N_CORTEX) -> np.ndarray:
    """float64 (n_vertices,): ``per_voxel`` (V,) placed at the selected vertices ``voxel_indices`` (V,), NaN
    elsewhere."""
    values, idx = np.asarray(per_voxel, np.float64), np.asarray(voxel_indices)
    if values.shape != idx.shape:
        raise ValueError(f"on_cortex: {values.shape[0] if values.ndim == 1 else values.shape} values for "
                         f"{len(idx)} selected voxels; the model was trained on another voxel selection "
                         f"(rerun chapters 02-03 on this store)")
    if len(idx) and (idx.min() < 0 or idx.max() >= n_vertices or len(np.unique(idx)) != len(idx)):
        raise ValueError(f"on_cortex: voxel indices must be distinct and in [0, {n_vertices}), found range "
                         f"[{idx.min()}, {idx.max()}] with {len(idx) - len(np.unique(idx))} repeats")
    out = np.full(n_vertices, np.nan)
    out[idx] = values
    return out


def input_saliency(forward, fmri: np.ndarray, *, probes: int = SALIENCY_PROBES, batch_size: int = 64,
                   seed: int = 0) -> np.ndarray:
    """float64 (V,): ``sqrt(E_x ||d forward(x) / d x_v||^2)`` over the rows of ``fmri`` (N, V).

    ``forward`` maps a float32 tensor (B, V) to any tensor (B, ...).  The squared column norms of the Jacobian are
    estimated with random output directions r ~ N(0, I): ``E_r (r^T J)_v^2 = ||J[:, v]||^2`` (Hutchinson), so
    the cost is ``probes`` backward passes per batch whatever the output size.
    """
    x_all = torch.as_tensor(np.asarray(fmri, np.float32))
    if x_all.ndim != 2 or not torch.isfinite(x_all).all():
        raise ValueError(f"input_saliency: expected finite fMRI (N, V), found shape {tuple(x_all.shape)}"
                         + ("" if x_all.ndim != 2 else " with NaN/inf values"))
    generator = torch.Generator().manual_seed(seed)
    total = torch.zeros(x_all.shape[1], dtype=torch.float64)
    for start in range(0, len(x_all), batch_size):
        x = x_all[start:start + batch_size].clone().requires_grad_(True)
        y = forward(x)
        for _ in range(probes):
            r = torch.randn(y.shape, generator=generator, dtype=y.dtype)
            (g,) = torch.autograd.grad(y, x, grad_outputs=r, retain_graph=True)
            total += (g.double() ** 2).sum(0)
    return (total / (probes * len(x_all))).sqrt().numpy()


def _centred_fmri(fmri: np.ndarray, caller: str) -> torch.Tensor:
    """float32 (N, V): ``fmri`` minus its mean over samples, after checking it is finite and has >= 2 rows."""
    x = torch.as_tensor(np.asarray(fmri, np.float32))
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"{caller}: a covariance needs fMRI (N, V) with N >= 2, found shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{caller}: the fMRI has NaN/inf values; the store is damaged: rerun chapter 01")
    return x - x.mean(0)


def activation_pattern(weight: torch.Tensor | np.ndarray, fmri: np.ndarray) -> np.ndarray:
    """float64 (V,): ``||Cov(x, W x)[v, :]||_2``, each voxel's covariance with a linear layer's outputs.

    ``weight`` (h, V): the layer's weight matrix; ``fmri`` (N, V): the samples the covariance is taken over.
    ``Cov(x, W x) = Sigma_x W^T`` (V, h) is the layer's activation pattern (Haufe et al. 2014): where the signal
    it extracts lies, as opposed to how the layer weighs each voxel (module docstring).
    """
    x = _centred_fmri(fmri, "activation_pattern")
    w = torch.as_tensor(weight).detach().to(torch.float32).cpu()
    if w.ndim != 2 or w.shape[1] != x.shape[1]:
        raise ValueError(f"activation_pattern: the weight must be (hidden, V) with the fMRI's V = {x.shape[1]}, "
                         f"found {tuple(w.shape)}; the model was trained on another voxel selection (rerun "
                         f"chapters 02-03 on this store)")
    return (x.T @ (x @ w.T)).double().div(len(x) - 1).norm(dim=1).numpy()


def random_layer_pattern(fmri: np.ndarray, block: int = 1024) -> np.ndarray:
    """float64 (V,): the pattern's baseline, ``||Sigma_x[v, :]||_2``, the covariance row norms of ``fmri`` (N, V).

    For a layer with i.i.d. random weights ``E ||(Sigma_x W^T)[v, :]||^2 = h s^2 ||Sigma_x[v, :]||^2``, so this is,
    up to a common factor, the pattern a layer that learned nothing would show: voxels that share variance with
    many others (here the early visual ones, driven by overlapping receptive fields) get more of it.  Computed a
    block of ``block`` voxels at a time: O(V block) memory.
    """
    x = _centred_fmri(fmri, "random_layer_pattern")
    sq = torch.zeros(x.shape[1], dtype=torch.float64)
    for start in range(0, x.shape[1], block):
        sq[start:start + block] = (x.T @ x[:, start:start + block]).double().pow(2).sum(0)
    return (sq.sqrt() / (len(x) - 1)).numpy()


def group_vertices(groups: dict[str, tuple[str, ...]] = AREA_GROUPS) -> dict[str, np.ndarray]:
    """{group: sorted cortical indices of its HCP-MMP parcels, both hemispheres}."""
    from .atlas import roi_indices

    return {name: roi_indices(parcels) for name, parcels in groups.items()}


def group_mass(values: np.ndarray, members: dict[str, np.ndarray]) -> dict[str, float]:
    """{group: share of the total (finite) magnitude on the group's vertices}; vertices in no group keep their
    share, so the groups' shares sum to at most 1."""
    w = np.nan_to_num(np.asarray(values, np.float64), nan=0.0)
    if (w < 0).any():
        raise ValueError("group_mass: magnitudes must be non-negative")
    total = w.sum()
    if not total > 0:
        raise ValueError("group_mass: the values are all zero or NaN; there is no mass to share")
    return {name: float(w[idx].sum() / total) for name, idx in members.items()}


@dataclass
class FlatmapResult:
    """One subject's maps: ``folder`` (``runs/<profile>/subjNN/flatmaps``) and ``summary`` (flatmaps.json)."""

    folder: Path
    summary: dict

    def map(self, model: str, measure: str = "weights") -> np.ndarray:
        """float64 (59412,), NaN where the vertex was not selected."""
        return np.load(self.folder / map_file(model, measure))


def voxel_weight_maps(cfg: RunConfig, subject: int | None = None) -> FlatmapResult:
    """Write one subject's six maps (module docstring) and ``flatmaps.json``: each map's group masses, the
    equal-weight shares, a random layer's pattern shares, the PR's ridge skip's pattern shares (when it has
    one) and, on sim, the ground truth's responsive shares.

    Recomputed on every call from the current checkpoints (seconds: one forward and 8 backward passes per 64
    test clips and model, and one pass over the training fMRI per model for the pattern).

    Raises:
        FileNotFoundError: chapter 02 or 03 has not run for the subject (the message names what to run).
        ValueError: a checkpoint's first layer does not match the store's voxel selection.
    """
    from .data.store import Store
    from .perception_run import load_perception_result
    from .semantics_run import load_semantics_result

    subject = int(subject or cfg.subject)
    perception, semantics = load_perception_result(cfg, subject), load_semantics_result(cfg, subject)
    store = Store.open(step_dir(cfg, subject, "store"))
    idx = np.asarray(store.voxel_indices)
    pr, sr = perception.load_model(len(idx)), semantics.load_models(len(idx)).sr
    fmri = np.asarray(store.fmri_test, np.float32).mean(axis=1)        # the test clips, mean of 10 repetitions
    fmri_train = np.asarray(store.fmri_train, np.float32).mean(axis=1)  # (N_train, V): the pattern's covariance
    per_voxel = {
        ("pr", "weights"): pr.voxel_weights().numpy(),
        ("sr", "weights"): sr.voxel_weights().numpy(),
        ("pr", "pattern"): activation_pattern(pr.voxel_layer.weight, fmri_train),
        ("sr", "pattern"): activation_pattern(sr.voxel_layer.weight, fmri_train),
        ("pr", "saliency"): input_saliency(pr, fmri, seed=cfg.seed),
        ("sr", "saliency"): input_saliency(lambda x: sr(x).clip_voxels, fmri, seed=cfg.seed),
    }
    folder = step_dir(cfg, subject, "flatmaps")
    members = group_vertices()
    selected = np.zeros(N_CORTEX, bool)
    selected[idx] = True
    mass = {measure: {} for measure in MEASURES}
    for (model, measure), values in per_voxel.items():
        cortical = on_cortex(values, idx)
        save_npy_atomic(folder / map_file(model, measure), cortical)
        mass[measure][model] = group_mass(cortical, members)
    summary = {"subject": subject, "n_selected": int(len(idx)), "mass": mass,
               "equal_weights": {g: float(selected[m].sum() / len(idx)) for g, m in members.items()},
               "random_layer_pattern": group_mass(on_cortex(random_layer_pattern(fmri_train), idx), members)}
    skip = getattr(pr, "skip", None)
    if skip is not None:     # the sim recipe's frozen ridge path: the PR's other linear map of the voxels
        summary["pr_ridge_skip_pattern"] = group_mass(on_cortex(activation_pattern(skip.weight, fmri_train), idx),
                                                      members)
    truth = ground_truth_responsive(cfg, subject)
    if truth is not None:
        summary["ground_truth"] = {
            "responsive_share_of_selected": {g: float(truth[m][selected[m]].mean()) if selected[m].any() else None
                                             for g, m in members.items()},
            "responsive_vertices": {g: int(truth[m].sum()) for g, m in members.items()}}
    write_json_atomic(folder / SUMMARY_FILE, json_clean(summary))
    return FlatmapResult(folder, summary)


def ground_truth_responsive(cfg: RunConfig, subject: int) -> np.ndarray | None:
    """bool (59412,): the vertices the simulation drives (sim only; None for real data)."""
    path = ground_truth_dir(cfg.data_root) / f"subject{subject}" / "responsive.npy"
    return np.load(path) if cfg.profile == "sim" and path.is_file() else None


def baseline_shares(summary: dict, measure: str) -> dict[str, float]:
    """{group: share} a first layer that learned nothing would give on ``measure``: equal weights for the column
    norms and the saliency, a random layer's pattern for the pattern.  ``summary``: one flatmaps.json."""
    if measure not in MEASURES:
        raise ValueError(f"unknown measure {measure!r}; flat maps have {MEASURES}")
    if measure == "pattern":
        if "random_layer_pattern" not in summary:
            raise KeyError("this flatmaps.json predates the pattern measure; rerun voxel_weight_maps (chapter 07)")
        return summary["random_layer_pattern"]
    return summary["equal_weights"]


def direction_checks(summaries: dict[int, dict], measure: str) -> dict[str, bool]:
    """The issue's two checks on one measure, every subject: the PR's mass on V1-V3 exceeds the SR's, and the
    SR's on the ventral / higher group exceeds the PR's.  ``summaries``: {subject: flatmaps.json}."""
    if not summaries:
        raise ValueError("direction_checks: no subjects")
    m = {s: summary["mass"][measure] for s, summary in summaries.items()}
    return {"pr_early_above_sr": all(v["pr"]["early"] > v["sr"]["early"] for v in m.values()),
            "sr_higher_above_pr": all(v["sr"]["higher"] > v["pr"]["higher"] for v in m.values())}


def read_summary(folder: Path) -> dict:
    return json.loads((Path(folder) / SUMMARY_FILE).read_text())
