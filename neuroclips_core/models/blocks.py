"""Pieces both fMRI decoders (the Perception and the Semantics Reconstructor) are built from.

- :class:`ResidualMLP`: MindEye2's residual MLP block, the backbone of both reconstructors;
- :func:`check_fmri`: the (B, V) input check with an error that names the expected voxel count;
- :func:`voxel_weight_norms`: per-voxel weight magnitude of a model's first layer (the flat-map chapter's input);
- :func:`init_linear_from_ridge`: start a voxel-reading layer in the subspace a closed-form ridge found predictive;
- :func:`count_parameters`.
"""
from __future__ import annotations

import torch
from torch import nn


class ResidualMLP(nn.Module):
    """x + Linear(Drop(GELU(Linear(LN(x))))): (..., d) -> (..., d).

    MindEye2's ``mixer_blocks1`` block (``BrainNetwork``), which both official reconstructors use with d = 4096.
    """

    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(dim, dim))

    def forward(self, x):
        return x + self.net(x)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def check_fmri(fmri: torch.Tensor, n_voxels: int, model_name: str) -> None:
    """Raise a ValueError unless ``fmri`` is (B, ``n_voxels``)."""
    if fmri.ndim != 2 or fmri.shape[1] != n_voxels:
        raise ValueError(f"{model_name}: expected fMRI of shape (B, {n_voxels}), found {tuple(fmri.shape)}")


def voxel_weight_norms(layer: nn.Linear) -> torch.Tensor:
    """(V,) float32 on the CPU: the L2 norm of each voxel's outgoing weights in ``layer`` (a Linear(V, h)).

    How much the model reads each voxel: the paper's Fig. 5 / App. Fig. 12 map this over the cortex.
    """
    return layer.weight.detach().float().norm(dim=0).cpu()


@torch.no_grad()
def init_linear_from_ridge(layer: nn.Linear, coef: torch.Tensor, fmri: torch.Tensor) -> None:
    """Start ``layer`` (Linear(V, h)) in the subspace a closed-form ridge found predictive (in place).

    ``coef`` (V, K): ridge weights fMRI -> K targets; ``fmri`` (n, V): the training inputs.  The layer's first
    ``rank = min(h, V, K)`` rows become the leading left singular vectors of ``coef`` (scaled by their singular
    values), normalised to zero mean and unit variance on ``fmri``; the other rows keep their initialisation.
    So the network starts from the voxel-space directions ridge regression uses instead of random ones, and a
    linear readout of the first ``rank`` features reproduces the ridge prediction.
    """
    h = layer.out_features
    coef = coef.to(torch.float32)
    rank = min(h, *coef.shape)
    u, sv, _ = torch.svd_lowrank(coef, q=min(rank + 10, *coef.shape), niter=4)
    w = (u[:, :rank] * sv[:rank]).T                                   # (rank, V)
    x = fmri.to(torch.float32)
    scale = (x @ w.T).std(0).clamp_min(1e-8)
    w = w / scale[:, None]
    layer.weight[:rank] = w.to(layer.weight)
    if layer.bias is not None:
        layer.bias[:rank] = -(x.mean(0) @ w.T).to(layer.bias)
