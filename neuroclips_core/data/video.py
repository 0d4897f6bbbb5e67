"""Stimulus video I/O: the 3 FPS clip frames NeuroClips trains on, and an atomic, streaming mp4 writer.

cc2017 stimuli are 30 FPS mp4s of 8 minutes (14400 frames); a 2 s clip is 60 raw frames, of which NeuroClips
keeps 6 (3 FPS).  :func:`read_clip_frames` decodes a whole segment in one streaming pass and converts only
the kept frames, so memory holds the output array and one decoded frame, never the 14400 frames.

:class:`VideoWriter` (and :func:`write_video` on top of it) writes H.264 (libx264, yuv420p) into a temp file
beside the target and renames it into place only on a clean exit, so a crash never leaves a half video under
the real name.  cc2017-sim writes its stimuli with it.
"""
from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np

from .layout import CLIPS_PER_RUN, FRAME_OFFSETS, RAW_FRAMES_PER_CLIP, STIMULUS_FPS


class VideoError(ValueError):
    """A stimulus video is missing, undecodable, too short or at the wrong frame rate."""


# ----------------------------------------------------------------------------------------------- resizing
def _resize_image(img, size: int):
    """PIL image -> ``size`` x ``size`` PIL image.

    A non-square image is centre-cropped to a square first (resizing it straight to a square would
    distort shapes).  Bicubic in PIL is antialiased when shrinking: its kernel widens with the scale
    factor, so each output pixel averages its whole footprint (no aliasing of fine stimulus texture).
    """
    from PIL import Image

    w, h = img.size
    if w != h:
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        img = img.crop((left, top, left + side, top + side))
    if img.size != (size, size):
        img = img.resize((size, size), Image.BICUBIC)
    return img


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """Resize uint8 frames ``(..., H, W, 3)`` to ``(..., size, size, 3)`` (centre crop if not square).

    Returns the input unchanged when it already has the requested size.
    """
    from PIL import Image

    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim < 3 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames of shape (..., H, W, 3); got {frames.dtype} {frames.shape}")
    if frames.shape[-3:-1] == (size, size):
        return frames
    flat = frames.reshape(-1, *frames.shape[-3:])
    out = np.empty((len(flat), size, size, 3), np.uint8)
    for i, f in enumerate(flat):
        out[i] = np.asarray(_resize_image(Image.fromarray(f), size))
    return out.reshape(*frames.shape[:-3], size, size, 3)


# ------------------------------------------------------------------------------------------------ reading
def read_clip_frames(
    mp4_path: str | Path,
    n_clips: int = CLIPS_PER_RUN,
    offsets: Sequence[int] = FRAME_OFFSETS,
    size: int | None = None,
    fps: int = STIMULUS_FPS,
) -> np.ndarray:
    """Decode the kept frames of every clip of one stimulus video.

    Clip ``k`` (0-based) covers raw frames ``60*k .. 60*k+59``; frame ``60*k + offsets[j]`` becomes
    ``out[k, j]``.  Frames are counted in decoding order, which for the constant-frame-rate cc2017 videos
    is presentation order.  Frames past ``n_clips * 60`` are ignored.

    Args:
        mp4_path: the segment's mp4 (``stimuli/segK.mp4``).
        n_clips: clips to return (240 for an 8-minute cc2017 segment).
        offsets: which of the 60 raw frames of a clip to keep (default: centres of the six 1/3-s bins).
        size: output side in pixels (square; centre crop + antialiased resize); ``None`` keeps the native size.
        fps: the frame rate the video must have.

    Returns:
        uint8 array ``(n_clips, len(offsets), H, W, 3)``, RGB.

    Raises:
        VideoError: naming the file, when it is missing, not decodable, not ``fps`` frames per second, or
            has fewer than ``n_clips * 60`` frames.
    """
    import av
    from av.video.reformatter import VideoReformatter
    from PIL import Image

    path = Path(mp4_path)
    offsets = [int(o) for o in offsets]
    if not offsets or min(offsets) < 0 or max(offsets) >= RAW_FRAMES_PER_CLIP:
        raise ValueError(f"frame offsets must lie in 0..{RAW_FRAMES_PER_CLIP - 1}; got {offsets}")
    slot = {o: j for j, o in enumerate(offsets)}
    needed = n_clips * RAW_FRAMES_PER_CLIP
    if not path.is_file():
        raise VideoError(f"{path}: stimulus video not found (expected a {fps} FPS mp4 with {needed} frames); "
                         "put the cc2017 stimuli/ folder beside subjectN/, or prepare without frames")
    try:
        container = av.open(str(path))
    except Exception as exc:  # av raises InvalidDataError, FileNotFoundError, ... for non-video bytes
        raise VideoError(f"{path}: not a decodable video ({type(exc).__name__}: {exc}); expected an mp4 with "
                         f"{needed} frames at {fps} FPS; re-download or re-simulate it") from exc
    out = None
    n = 0
    with container:
        if not container.streams.video:
            raise VideoError(f"{path}: no video stream found; expected an mp4 with {needed} frames at {fps} FPS")
        stream = container.streams.video[0]
        if stream.codec_context.width * stream.codec_context.height >= 256 * 256:
            stream.thread_type = "AUTO"  # frame threads pay off only for large frames; small ones lose to overhead
        to_rgb = VideoReformatter()  # one converter for all frames (a new one per frame costs ~1 ms)
        rate = stream.average_rate or stream.guessed_rate
        if rate is None or abs(float(rate) - fps) > 1e-3:
            found = "unknown" if rate is None else f"{float(rate):g}"
            raise VideoError(f"{path}: expected {fps} FPS (cc2017 clips are {RAW_FRAMES_PER_CLIP} frames = 2 s), "
                             f"found {found} FPS; re-encode it at {fps} FPS without dropping frames")
        try:
            for frame in container.decode(stream):
                if n >= needed:
                    break
                k, off = divmod(n, RAW_FRAMES_PER_CLIP)
                if off in slot:
                    # only kept frames pay for the RGB conversion
                    arr = to_rgb.reformat(frame, format="rgb24").to_ndarray()
                    if size is not None:
                        arr = np.asarray(_resize_image(Image.fromarray(arr), size))
                    if out is None:
                        out = np.empty((n_clips, len(offsets), *arr.shape), np.uint8)
                    out[k, slot[off]] = arr
                n += 1
        except Exception as exc:
            raise VideoError(f"{path}: decoding failed after {n} of {needed} frames ({type(exc).__name__}: "
                             f"{exc}); the file is corrupt; re-download or re-simulate it") from exc
    if n < needed:
        raise VideoError(f"{path}: truncated: found {n} frames, expected at least {needed} "
                         f"({n_clips} clips x {RAW_FRAMES_PER_CLIP} frames at {fps} FPS); "
                         "re-download or re-simulate it")
    return out


# ------------------------------------------------------------------------------------------------ writing
class VideoWriter:
    """Streaming, atomic mp4 writer (libx264, yuv420p).

    Usage::

        with VideoWriter("stimuli/seg1.mp4", fps=30, size=(128, 128)) as w:
            for batch in batches:          # uint8 (T, H, W, 3) or one (H, W, 3) frame
                w.write(batch)

    Frames go into a temp file beside ``path``; a clean exit renames it to ``path`` (replacing an old file),
    an exception deletes it.  ``size`` is ``(height, width)`` (an int means square) and must be even, as
    yuv420p needs; ``None`` takes it from the first frame.  ``crf`` is x264's quality (0 lossless, 18
    visually lossless, 23 default); ``preset`` trades encoding speed for file size.
    """

    def __init__(self, path: str | Path, fps: int | float | Fraction = STIMULUS_FPS,
                 size: int | tuple[int, int] | None = None, crf: int = 18, preset: str = "medium"):
        self.path = Path(path)
        self.fps = Fraction(fps).limit_denominator(1001)
        self.size = (size, size) if isinstance(size, int) else (tuple(size) if size is not None else None)
        if self.size is not None:
            self._check_size(self.size)
        self.crf, self.preset = int(crf), str(preset)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}.mp4")
        self._container = self._stream = None
        self.n_frames = 0

    def _check_size(self, size):
        h, w = size
        if h <= 0 or w <= 0 or h % 2 or w % 2:
            raise ValueError(f"{self.path}: libx264/yuv420p needs even frame sizes; got {h}x{w} (HxW); "
                             "crop or pad the frames to even sides")

    def _open(self, h: int, w: int):
        import av

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(str(self.tmp), mode="w", format="mp4")
        stream = self._container.add_stream("libx264", rate=self.fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": str(self.crf), "preset": self.preset}
        self._stream = stream

    def write(self, frames: np.ndarray) -> None:
        """Append uint8 RGB frames ``(T, H, W, 3)`` (or a single ``(H, W, 3)`` frame)."""
        import av

        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"{self.path}: expected uint8 frames (T, H, W, 3); got {frames.dtype} {frames.shape}")
        if self.size is None:
            self._check_size(frames.shape[1:3])
            self.size = tuple(frames.shape[1:3])
        if tuple(frames.shape[1:3]) != self.size:
            raise ValueError(f"{self.path}: frames of size {frames.shape[1:3]} (HxW) written to a video of "
                             f"size {self.size}")
        if self._container is None:
            self._open(*self.size)
        for f in frames:
            for packet in self._stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                self._container.mux(packet)
        self.n_frames += len(frames)

    def close(self) -> Path:
        """Flush the encoder and move the finished file to ``path``."""
        if self._container is None:
            raise ValueError(f"{self.path}: no frames were written; an mp4 needs at least one frame")
        try:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
            self._container = None
            os.replace(self.tmp, self.path)
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        """Discard everything written so far (the temp file); ``path`` is left untouched."""
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # the container may be in a broken state; removing the file is what matters
                pass
            self._container = None
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_video(path: str | Path, frames: np.ndarray, fps: int | float = STIMULUS_FPS, crf: int = 18,
                preset: str = "medium") -> Path:
    """Write uint8 RGB frames ``(T, H, W, 3)`` (H, W even) as an H.264 mp4, atomically.  Returns ``path``."""
    with VideoWriter(path, fps=fps, crf=crf, preset=preset) as w:
        w.write(frames)
    return Path(path)
