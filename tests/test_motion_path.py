"""The PR's motion path: displacement measured on frames, decoded from fMRI, applied to the blurry video."""
from __future__ import annotations

import numpy as np
import pytest

from neuroclips_core.metrics import motion_agreement
from neuroclips_core.motion_path import MotionReadout, apply_displacement, clip_displacement, frame_displacements
from neuroclips_core.perception_run import verdict


def _blob_videos(velocities: np.ndarray, frames: int = 6, size: int = 48) -> np.ndarray:
    """(N, F, S, S, 3) uint8: a bright Gaussian blob on a dark gradient, moving by ``velocities`` (N, 2) (dy, dx)
    px a frame from a centre start."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    out = np.empty((len(velocities), frames, size, size, 3), np.uint8)
    for i, (vy, vx) in enumerate(velocities):
        for t in range(frames):
            cy, cx = size / 2 + vy * (t - (frames - 1) / 2), size / 2 + vx * (t - (frames - 1) / 2)
            img = 0.2 + 0.1 * xx / size + 0.6 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 4.0 ** 2))
            out[i, t] = np.clip(img * 255, 0, 255).astype(np.uint8)[..., None]
    return out


def test_frame_displacements_recover_a_known_motion():
    v = np.array([[0.0, 0.0], [1.5, 0.0], [0.0, -2.0], [1.0, 1.25]], np.float32)
    d = frame_displacements(_blob_videos(v))
    assert d.shape == (4, 5, 2)
    np.testing.assert_allclose(d, np.repeat(v[:, None], 5, 1), atol=0.3)
    np.testing.assert_allclose(clip_displacement(_blob_videos(v), chunk=3), v, atol=0.3)
    np.testing.assert_allclose(clip_displacement(_blob_videos(v), chunk=1, rows=np.array([3, 1])), v[[3, 1]],
                               atol=0.3)
    with pytest.raises(ValueError, match=r"\(N, F >= 2, H, W, 3\)"):
        frame_displacements(np.zeros((2, 1, 8, 8, 3), np.uint8))


def test_apply_displacement_moves_frames_about_the_middle():
    still = _blob_videos(np.zeros((2, 2), np.float32))
    d = np.array([[1.0, 0.0], [0.0, -1.5]], np.float32)
    moved = apply_displacement(still, d)
    np.testing.assert_array_equal(apply_displacement(still, np.zeros_like(d)), still)
    np.testing.assert_allclose(clip_displacement(moved), d, atol=0.3)        # the applied path is measured back
    assert moved.dtype == np.uint8 and motion_agreement(moved, moved)["energy_pred"] > 0
    with pytest.raises(ValueError, match="displacement"):
        apply_displacement(still, d[:1])


def test_motion_readout_decodes_direction_and_speed_from_linear_responses():
    rng = np.random.default_rng(0)
    n, voxels = 600, 80
    disp = rng.normal(0, 1.5, (n, 2)).astype(np.float32)
    w = rng.normal(0, 1, (3, voxels))
    feats = np.column_stack([disp, np.linalg.norm(disp, axis=1)])       # directed and direction-free channels
    x = (feats @ w + rng.normal(0, 1.0, (n, voxels))).astype(np.float32)
    r = MotionReadout().fit(x[:400], disp[:400], x[400:500], disp[400:500])
    assert min(r.val_r.values()) > 0.8
    pred = r.predict(x[500:])
    assert pred.shape == (100, 2) and pred.dtype == np.float32
    cos = (pred * disp[500:]).sum(1) / (np.linalg.norm(pred, axis=1) * np.linalg.norm(disp[500:], axis=1) + 1e-9)
    assert np.median(cos) > 0.9
    with pytest.raises(ValueError, match="finite"):
        MotionReadout().fit(x[:10], np.full((10, 2), np.nan, np.float32), x[:10], disp[:10])


def test_verdict_wants_motion_beyond_chance():
    def metrics(rho, p):
        scores = {"ssim_s2": {"mean": 0.8}, "pixcorr": {"mean": 0.5}}
        base = {"ssim_s2": {"mean": 0.7}, "pixcorr": {"mean": 0.4}}
        return {"pr": {**scores, "motion": {"spearman": rho, "spearman_p": p}},
                "baselines": {"mean_frame": base, "ridge": base}}

    assert verdict(metrics(0.2, 0.001))["all"]
    assert not verdict(metrics(0.005, 0.47))["moves_with_stimulus"]      # positive, but chance
    assert not verdict(metrics(-0.3, 0.99))["all"]
