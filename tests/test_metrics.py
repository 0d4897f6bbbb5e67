"""neuroclips_core.metrics: the SSIM recipes, PSNR and pixel correlation against direct scikit-image / numpy
calls, and the motion-agreement measure on videos whose motion is known."""
from __future__ import annotations

import numpy as np
import pytest
from skimage.color import rgb2gray
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from neuroclips_core import metrics as M


def _videos(seed=0, n=3, f=4, size=32):
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, 256, (n, f, size, size, 3), dtype=np.uint8)
    noise = rng.integers(-40, 41, gt.shape)
    pred = np.clip(gt.astype(int) + noise, 0, 255).astype(np.uint8)
    return pred, gt


def test_ssim_recipes_match_direct_scikit_image_calls():
    pred, gt = _videos()
    scores = M.frame_scores(pred, gt)
    for i in range(pred.shape[0]):
        for j in range(pred.shape[1]):
            p, g = pred[i, j], gt[i, j]
            s1 = structural_similarity(p, g, data_range=255, channel_axis=-1)
            s2 = structural_similarity(rgb2gray(p), rgb2gray(g), gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False, data_range=1.0)
            s2p = structural_similarity(rgb2gray(p), rgb2gray(g), gaussian_weights=True, sigma=1.5,
                                        use_sample_covariance=False, data_range=1.0, channel_axis=-1)
            assert abs(scores["ssim_s1"][i, j] - s1) < 1e-6
            assert abs(scores["ssim_s2"][i, j] - s2) < 1e-6
            assert abs(scores["ssim_s2p"][i, j] - s2p) < 1e-6
            assert abs(scores["psnr"][i, j] - peak_signal_noise_ratio(g, p, data_range=255)) < 1e-6
            r = np.corrcoef(p.ravel().astype(float), g.ravel().astype(float))[0, 1]
            assert abs(scores["pixcorr"][i, j] - r) < 1e-6


@pytest.mark.parametrize("shape", [(64, 64), (48, 80), (256, 256)])
def test_vectorised_s2p_equals_the_scikit_image_column_loop(shape):
    rng = np.random.default_rng(5)
    gt = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    pred = np.clip(gt.astype(int) + rng.integers(-60, 61, gt.shape), 0, 255).astype(np.uint8)
    direct = structural_similarity(rgb2gray(pred), rgb2gray(gt), gaussian_weights=True, sigma=1.5,
                                   use_sample_covariance=False, data_range=1.0, channel_axis=-1)
    assert abs(M.ssim_s2p(pred, gt) - direct) < 1e-6


def test_recipes_differ_from_each_other():
    """S1, S2 and S2' are different numbers on the same frames (the point of naming the recipe)."""
    pred, gt = _videos(1)
    s = M.summarize(M.frame_scores(pred, gt))
    values = [s[k]["mean"] for k in ("ssim_s1", "ssim_s2", "ssim_s2p")]
    assert len({round(v, 4) for v in values}) == 3


def test_identical_frames_score_perfectly_and_psnr_is_capped():
    _, gt = _videos(2)
    s = M.summarize(M.frame_scores(gt, gt))
    for k in ("ssim_s1", "ssim_s2", "ssim_s2p", "pixcorr"):
        assert s[k]["mean"] == pytest.approx(1.0)
    assert s["psnr"]["mean"] == M.PSNR_CAP_DB


def test_summary_is_per_frame_then_over_frames_and_std_across_clips():
    scores = {"x": np.array([[1.0, 2.0], [3.0, 6.0]])}
    s = M.summarize(scores)["x"]
    assert s["per_frame"] == [2.0, 4.0]
    assert s["mean"] == 3.0
    assert s["std"] == pytest.approx(np.std([1.5, 4.5]))


def test_constant_prediction_has_nan_pixcorr_left_out_of_the_mean():
    pred, gt = _videos(3)
    pred[0, 0] = 128
    s = M.frame_scores(pred, gt, metrics=("pixcorr",))["pixcorr"]
    assert np.isnan(s[0, 0]) and np.isfinite(M.summarize({"p": s})["p"]["mean"])


def _moving_square(speeds, f=6, size=32):
    """Clips of a white square moving right at ``speeds`` px/frame over black: (N, F, size, size, 3) uint8."""
    out = np.zeros((len(speeds), f, size, size, 3), np.uint8)
    for i, v in enumerate(speeds):
        for t in range(f):
            x = int(2 + v * t)
            out[i, t, 12:20, x:x + 6] = 255
    return out


def test_motion_agreement_positive_for_a_prediction_that_moves_like_the_stimulus():
    speeds = [0, 1, 2, 3, 4]
    gt = _moving_square(speeds)
    blurred = (gt.astype(np.float32) * 0.5 + 40).astype(np.uint8)      # weaker, offset, same motion
    still = np.repeat(gt[:, :1], gt.shape[1], axis=1)                   # first frame held: no motion at all
    backwards = _moving_square(speeds[::-1])                            # moves most when the stimulus moves least
    assert M.motion_agreement(blurred, gt)["spearman"] == pytest.approx(1.0)
    assert M.motion_agreement(backwards, gt)["spearman"] == pytest.approx(-1.0)
    m = M.motion_agreement(still, gt)
    assert np.isnan(m["spearman"]) and m["energy_pred"] == 0.0


def test_frame_difference_energy_shape_and_value():
    v = np.zeros((1, 3, 4, 4, 3), np.uint8)
    v[0, 1] = 255
    e = M.frame_difference_energy(v)
    assert e.shape == (1, 2)
    assert e[0, 0] == pytest.approx(1.0, abs=1e-6) and e[0, 1] == pytest.approx(1.0, abs=1e-6)


def test_bad_inputs_get_clear_errors():
    pred, gt = _videos()
    with pytest.raises(ValueError, match="uint8 videos"):
        M.frame_scores(pred.astype(np.float32), gt)
    with pytest.raises(ValueError, match="differ in shape"):
        M.frame_scores(pred[:, :2], gt)
    with pytest.raises(ValueError, match="unknown"):
        M.frame_scores(pred, gt, metrics=("lpips",))
