"""Video frames as pictures: frame strips (rows of frames) and GIFs that show in built pages offline."""
from __future__ import annotations

import base64
import io
import os
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np


def as_uint8_frames(frames, name: str = "frames") -> np.ndarray:
    """Check and convert a video to ``(T, H, W, 3)`` uint8.

    Accepts uint8 (returned as is), or floats in [0, 1] (scaled); a single ``(H, W, 3)`` image becomes ``T = 1``.
    """
    a = np.asarray(frames)
    if a.ndim == 3 and a.shape[-1] == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[-1] != 3:
        raise ValueError(f"{name} must have shape (T, H, W, 3); got {a.shape}")
    if a.dtype == np.uint8:
        return a
    if np.issubdtype(a.dtype, np.floating):
        if a.size and (np.nanmin(a) < -1e-3 or np.nanmax(a) > 1 + 1e-3):
            raise ValueError(f"float {name} must lie in [0, 1]; got range [{np.nanmin(a):.3g}, {np.nanmax(a):.3g}]")
        return (np.clip(np.nan_to_num(a), 0, 1) * 255 + 0.5).astype(np.uint8)
    raise ValueError(f"{name} must be uint8 (0..255) or float in [0, 1]; got dtype {a.dtype}")


def _as_rows(frames) -> list[np.ndarray]:
    """One video ``(T,H,W,3)`` -> one row; a list of videos or a ``(R,T,H,W,3)`` array -> several rows."""
    if isinstance(frames, np.ndarray) and frames.ndim == 5:
        frames = list(frames)
    if isinstance(frames, (list, tuple)):
        if not frames:
            raise ValueError("frames is an empty list; expected at least one (T, H, W, 3) video")
        return [as_uint8_frames(f, f"frames[{i}]") for i, f in enumerate(frames)]
    return [as_uint8_frames(frames)]


def frame_strip(
    frames,
    titles: Sequence[str] | None = None,
    row_labels: Sequence[str] | None = None,
    *,
    frame_inches: float = 1.3,
    fig=None,
    suptitle: str | None = None,
):
    """Draw videos as rows of frames (e.g. ground truth over reconstruction); returns the matplotlib Figure.

    Args:
        frames: one video ``(T, H, W, 3)`` (one row), or a list of videos / a ``(R, T, H, W, 3)`` array (R rows).
            Rows may differ in length; short rows leave blank cells.  uint8, or float in [0, 1].
        titles: one title per column (e.g. ``["0 s", "0.33 s", ...]``), shown above the first row.
        row_labels: one label per row, shown at the left.
        frame_inches: size of one frame cell in inches (the figure is sized from it).
        fig: draw into this (empty) figure instead of a new one.
        suptitle: title over the whole strip.
    """
    import matplotlib.pyplot as plt

    rows = _as_rows(frames)
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    if titles is not None and len(titles) != n_cols:
        raise ValueError(f"titles has {len(titles)} entries but the strip has {n_cols} columns")
    if row_labels is not None and len(row_labels) != n_rows:
        raise ValueError(f"row_labels has {len(row_labels)} entries but the strip has {n_rows} rows")
    h, w = rows[0].shape[1:3]
    cell_w, cell_h = frame_inches, frame_inches * h / w
    if fig is None:
        fig = plt.figure(figsize=(cell_w * n_cols + (0.9 if row_labels else 0.1),
                                  cell_h * n_rows + (0.35 if titles else 0.1) + (0.4 if suptitle else 0)),
                         layout="compressed")
    axes = np.asarray(fig.subplots(n_rows, n_cols, squeeze=False,
                                   gridspec_kw=dict(wspace=0.02, hspace=0.02)))
    for i, row in enumerate(rows):
        for j in range(n_cols):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            if j < len(row):
                ax.imshow(row[j], interpolation="nearest")
            if i == 0 and titles is not None:
                ax.set_title(str(titles[j]), fontsize=9)
            if j == 0 and row_labels is not None:
                ax.set_ylabel(str(row_labels[i]), fontsize=9, rotation=0, ha="right", va="center")
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def _atomic_write_bytes(path: Path, write) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _upscale(frames: np.ndarray, scale: int) -> np.ndarray:
    if int(scale) != scale or scale < 1:
        raise ValueError(f"scale must be a positive integer; got {scale!r}")
    scale = int(scale)
    return frames if scale == 1 else frames.repeat(scale, axis=1).repeat(scale, axis=2)


def gif_bytes(frames, fps: float = 8, *, scale: int = 1, loop: int = 0) -> bytes:
    """A video ``(T, H, W, 3)`` as the bytes of an animated GIF (for widgets and in-memory use).

    ``scale`` enlarges each pixel to ``scale x scale`` (nearest neighbour: small frames stay sharp); ``loop=0``
    loops forever.  GIF timing has 10 ms resolution, and identical consecutive frames are merged into one.
    """
    from PIL import Image

    if fps <= 0:
        raise ValueError(f"fps must be > 0; got {fps}")
    a = _upscale(as_uint8_frames(frames), scale)
    if len(a) == 0:
        raise ValueError("frames holds no frames (T = 0)")
    images = [Image.fromarray(f) for f in a]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:],
                   duration=int(round(1000 / fps)), loop=loop, disposal=1, optimize=False)
    return buf.getvalue()


def png_bytes(image, *, scale: int = 1) -> bytes:
    """One image ``(H, W, 3)`` (uint8, or float in [0, 1]) as PNG bytes, enlarged ``scale`` x by nearest neighbour."""
    from PIL import Image

    a = as_uint8_frames(image, "image")
    if len(a) != 1:
        raise ValueError(f"image must be one (H, W, 3) picture; got {len(a)} frames")
    buf = io.BytesIO()
    Image.fromarray(_upscale(a, scale)[0]).save(buf, format="PNG")
    return buf.getvalue()


def save_gif(frames, path: str | Path, fps: float = 8, *, scale: int = 1, loop: int = 0) -> Path:
    """Write a video ``(T, H, W, 3)`` as an animated GIF (:func:`gif_bytes`), atomically; returns the path."""
    data = gif_bytes(frames, fps, scale=scale, loop=loop)
    return _atomic_write_bytes(Path(path), lambda tmp: Path(tmp).write_bytes(data))


def side_by_side_gif(rows: Sequence, path: str | Path, fps: float = 8, scale: int = 1, *,
                     labels: Sequence[str] | None = None, gap: int = 2) -> Path:
    """Several videos next to each other in one GIF (e.g. stimulus | blurry | reconstruction); returns the path.

    Videos may differ in length (a short one holds its last frame) and in height (padded at the bottom).
    ``labels`` puts a caption above each video; ``gap`` is the white gap between videos in (scaled) pixels.
    """
    from PIL import Image, ImageDraw

    vids = [_upscale(as_uint8_frames(v, f"rows[{i}]"), scale) for i, v in enumerate(rows)]
    if not vids:
        raise ValueError("rows is empty; expected a list of (T, H, W, 3) videos")
    if labels is not None and len(labels) != len(vids):
        raise ValueError(f"labels has {len(labels)} entries for {len(vids)} videos")
    T = max(len(v) for v in vids)
    H = max(v.shape[1] for v in vids)
    head = 14 if labels else 0
    W = sum(v.shape[2] for v in vids) + gap * (len(vids) - 1)
    canvas = np.full((T, head + H, W, 3), 255, np.uint8)
    x = 0
    for v in vids:
        idx = np.minimum(np.arange(T), len(v) - 1)
        canvas[:, head:head + v.shape[1], x:x + v.shape[2]] = v[idx]
        x += v.shape[2] + gap
    if labels:
        header = Image.fromarray(canvas[0, :head].copy())
        draw = ImageDraw.Draw(header)
        x = 0
        for v, text in zip(vids, labels):
            draw.text((x + 2, 1), str(text), fill=(0, 0, 0))
            x += v.shape[2] + gap
        canvas[:, :head] = np.asarray(header)[None]
    return save_gif(canvas, path, fps=fps)


def show_gif(path: str | Path, width: int | None = None):
    """An IPython display object that embeds the GIF at ``path`` as base64 (shows in built pages, offline)."""
    from IPython.display import HTML

    data = Path(path).read_bytes()
    if data[:6] not in (b"GIF87a", b"GIF89a"):
        raise ValueError(f"{path} is not a GIF file")
    size = f' width="{int(width)}"' if width else ""
    b64 = base64.b64encode(data).decode("ascii")
    return HTML(f'<img src="data:image/gif;base64,{b64}"{size} style="image-rendering: pixelated" '
                f'alt="{Path(path).name}"/>')
