"""The PR's motion path: a clip-level displacement decoded from fMRI, applied to the blurry video's frames.

Why it exists (sim profile; measured on seed 12, subject 1, test clips).  Trained per frame against VAE latents,
the PR (like ridge) predicts each frame's *expected* content given the fMRI.  Where the object will be at frame t
is uncertain, so the expectation is one blob near the clip's mean position, the same in every frame: after the
low-pass that the SSIM-optimal blurry video needs (4 px), its frame-difference energy is 100x below the ground
truth's and its correlation with it across clips is nil (Spearman 0.005; 0.41 before the low-pass, from
fine-scale flicker that ridge shows too, 0.35).  Yet the fMRI says how the object moves: the sim's motion areas
(like MT) carry direction-tuned and direction-free motion energy, so a ridge decodes the clip's displacement
and its speed (r 0.4-0.5, below).  NeuroClips' Temporal Upsampling is meant to carry this;
here the PR gets it as an explicit, linear, inspectable path:

1. :func:`frame_displacements`: the ground truth's global displacement between consecutive frames, by phase
   correlation of band-passed grayscale frames (no sim annotation is used: the same works on cc2017's frames);
   a clip's displacement per frame is the median over its F - 1 pairs (:func:`clip_displacement`);
2. :class:`MotionReadout`: two ridges from fMRI, one to the displacement (dy, dx) and one to its length; the
   prediction takes the direction from the first and the length from the second (a ridge to (dy, dx) shrinks
   the length towards 0 wherever the direction is unsure, while speed alone is decoded better);
3. :func:`apply_displacement`: frame t is translated by d * (t - (F - 1) / 2), so the clip's mean position stays
   where the PR put it and the object travels along the decoded path.

Effect on seed 12, subject 1 (test clips; validation r of the readout 0.50 / 0.39 for dy / dx, 0.49 for speed):
SSIM S2 0.7638 -> 0.7636, pixel correlation 0.5659 -> 0.5634, motion Spearman 0.005 -> 0.249 (one-sided p 5e-5);
ridge scores 0.7605 / 0.5368.  Not in the paper or the official code (which have no such path); the chapter
says so.  ``PerceptionRunConfig.motion_path`` switches it (off in the paper recipe).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from .metrics import pearson
from .models.ridge import RidgeRegression


def _band_passed_gray(videos: np.ndarray, sigma: float) -> np.ndarray:
    """(N, F, H, W, 3) uint8 or [0, 1] float -> (N, F, H, W) float32 grayscale, band-passed (a Gaussian low-pass
    of ``sigma`` px minus one of 4 ``sigma`` px: no aliasing texture, no smooth background gradient, whose wrap-
    around edge would pin phase correlation at zero shift) and Hann-windowed (no edge at the border either)."""
    g = videos[..., :3].astype(np.float32).mean(-1)
    if videos.dtype == np.uint8:
        g /= 255.0
    g = ndimage.gaussian_filter(g, (0, 0, sigma, sigma)) - ndimage.gaussian_filter(g, (0, 0, 4 * sigma, 4 * sigma))
    h, w = g.shape[-2:]
    return g * np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)


def frame_displacements(videos: np.ndarray, sigma: float = 2.0, upsample: int = 4) -> np.ndarray:
    """Global displacement between consecutive frames: (N, F, H, W, 3) -> float32 (N, F - 1, 2), (dy, dx) in px of
    frame t + 1 relative to frame t (positive: down / right), by phase correlation of frames band-passed
    above ``sigma`` px (the fine texture would alias), to 1/``upsample`` px."""
    from skimage.registration import phase_cross_correlation

    if videos.ndim != 5 or videos.shape[1] < 2:
        raise ValueError(f"frame_displacements: expected videos (N, F >= 2, H, W, 3), found {videos.shape}")
    g = _band_passed_gray(videos, sigma)
    out = np.zeros((len(g), g.shape[1] - 1, 2), np.float32)
    for i in range(len(g)):
        for t in range(g.shape[1] - 1):
            shift = phase_cross_correlation(g[i, t], g[i, t + 1], upsample_factor=upsample, normalization=None)[0]
            out[i, t] = -shift                  # skimage returns the shift that registers t + 1 back onto t
    return out


def clip_displacement(videos, sigma: float = 2.0, chunk: int = 256, rows: np.ndarray | None = None) -> np.ndarray:
    """A clip's displacement per frame: (N, F, H, W, 3) -> float32 (n, 2), (dy, dx) px per frame, the median over
    its consecutive pairs (robust to a cut inside the clip).  ``rows``: only these clips (default all).  Reads
    ``videos`` ``chunk`` clips at a time, so it may be an array on disk (a store's frames)."""
    rows = np.arange(len(videos)) if rows is None else np.asarray(rows)
    parts = [np.median(frame_displacements(np.asarray(videos[rows[a:a + chunk]]), sigma), axis=1)
             for a in range(0, len(rows), chunk)]
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, 2), np.float32)


class MotionReadout:
    """fMRI (N, V) -> displacement per frame (N, 2) (dy, dx) px: direction from a ridge to (dy, dx), length from
    a ridge to the displacement's length; both penalties chosen on validation clips.

    Attributes after :meth:`fit`: ``velocity`` and ``speed`` (:class:`~neuroclips_core.models.ridge.
    RidgeRegression`), ``val_r`` ({"dy", "dx", "speed"}: validation Pearson r of each readout)."""

    def fit(self, x: np.ndarray, displacement: np.ndarray, x_val: np.ndarray,
            displacement_val: np.ndarray) -> "MotionReadout":
        """x (n, V) fMRI, displacement (n, 2) from :func:`clip_displacement`; the same for the validation clips."""
        for name, d in (("displacement", displacement), ("displacement_val", displacement_val)):
            if d.ndim != 2 or d.shape[1] != 2 or not np.isfinite(d).all():
                raise ValueError(f"MotionReadout.fit: {name} must be finite (n, 2) (dy, dx), found {d.shape}")
        self.velocity = RidgeRegression().fit(x, displacement, x_val, displacement_val)
        speed = np.linalg.norm(displacement, axis=1, keepdims=True)
        speed_val = np.linalg.norm(displacement_val, axis=1, keepdims=True)
        self.speed = RidgeRegression().fit(x, speed, x_val, speed_val)
        v, s = np.asarray(self.velocity.predict(x_val)), np.asarray(self.speed.predict(x_val))[:, 0]
        self.val_r = {"dy": pearson(v[:, 0], displacement_val[:, 0]),
                      "dx": pearson(v[:, 1], displacement_val[:, 1]), "speed": pearson(s, speed_val[:, 0])}
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        """fMRI (n, V) -> float32 (n, 2) displacement per frame: the velocity ridge's direction at the speed
        ridge's length (clipped at 0)."""
        v = np.asarray(self.velocity.predict(x), np.float64)
        s = np.clip(np.asarray(self.speed.predict(x), np.float64)[:, 0], 0, None)
        return (v / (np.linalg.norm(v, axis=1, keepdims=True) + 1e-9) * s[:, None]).astype(np.float32)


def apply_displacement(videos: np.ndarray, displacement: np.ndarray, gain: float = 1.0) -> np.ndarray:
    """Translate frame t of each clip by ``gain * displacement * (t - (F - 1) / 2)`` px (bilinear, edges
    repeated): (N, F, H, W, 3) uint8, (N, 2) (dy, dx) -> (N, F, H, W, 3) uint8.  The mean frame position is kept."""
    if videos.ndim != 5 or displacement.shape != (len(videos), 2):
        raise ValueError(f"apply_displacement: expected videos (N, F, H, W, 3) and displacement (N, 2), found "
                         f"{videos.shape} and {displacement.shape}")
    out = np.empty_like(videos)
    centre = (videos.shape[1] - 1) / 2
    for i in range(len(videos)):
        for t in range(videos.shape[1]):
            dy, dx = gain * displacement[i] * (t - centre)
            moved = ndimage.shift(videos[i, t].astype(np.float32), (dy, dx, 0), order=1, mode="nearest")
            out[i, t] = np.clip(np.rint(moved), 0, 255) if videos.dtype == np.uint8 else moved
    return out
