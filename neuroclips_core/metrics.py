"""Evaluation metrics: pixel-level frame scores (SSIM recipes, PSNR, pixel correlation) and motion agreement;
the semantic and temporal metrics (N-way, CLIP-pcc, retrieval, 8 -> 3 FPS alignment) of :mod:`.metrics_semantic`
and the Table 1 layout of :mod:`.metrics_table`, re-exported at the end.

SSIM recipes exactly as in circulation (field-and-evaluation.md §2.5), each one scikit-image call:

======  =======================================================================  ==============================
recipe  call on one frame pair (prediction, ground truth)                        used by
======  =======================================================================  ==============================
S1      ``structural_similarity(pred, gt, data_range=255, channel_axis=-1)`` on   MinD-Video, Mind-Animator,
        uint8 RGB: 7 x 7 uniform window, sample covariance, channel mean          GLFA
S2      ``rgb2gray`` both to [0, 1], then ``structural_similarity(pred, gt,       MindEye2 (a true 2-D SSIM; the
        gaussian_weights=True, sigma=1.5, use_sample_covariance=False,            book's headline grayscale
        data_range=1.0)``                                                         recipe)
S2p     S2 plus ``channel_axis=-1`` on the 2-D grayscale frames: every column     NEURONS (S2' in the reference;
        becomes a "channel" and SSIM is 1-D along the height                      comparable only to its lineage)
======  =======================================================================  ==============================

S1 and S2 are those scikit-image calls as written; S2' is the same computation vectorised over the columns
(scikit-image loops over them, W calls per frame), equal to the call to 1e-6 (tests/test_metrics.py).

PSNR is ``peak_signal_noise_ratio(gt, pred, data_range=255)`` on uint8 RGB (NEURONS; the same formula as
Mind-Animator's), capped at 100 dB as Mind-Animator does for identical frames (skimage returns inf).  Pixel
correlation is the Pearson r of all pixel values of a frame pair (MindEye's PixCorr, at the native size instead
of after a resize to 425 px).

Videos are uint8 arrays (N, F, H, W, 3).  Scores are computed per frame, (N, F); :func:`summarize` averages
per frame index over clips and then over frame indices (MinD-Video / NEURONS order; with every clip scored the
mean is the grand mean) and gives the spread across clips of the per-clip means.

Motion: :func:`frame_difference_energy` (N, F-1) is the mean squared difference of consecutive grayscale frames;
:func:`motion_agreement` asks whether a prediction moves when the stimulus moves: the correlation, across clips,
of the mean frame-difference energy of predictions and ground truth (Spearman, robust to the huge energy of
clips that straddle a scene cut; Pearson too), and the mean within-clip correlation of the F-1 energies.
"""
from __future__ import annotations

import numpy as np

PSNR_CAP_DB = 100.0
FRAME_METRICS = ("ssim_s1", "ssim_s2", "ssim_s2p", "psnr", "pixcorr")


# ------------------------------------------------------------------------------------------ one frame pair
def ssim_s1(pred: np.ndarray, gt: np.ndarray) -> float:
    """Recipe S1: colour SSIM of uint8 RGB frames (H, W, 3), 7 x 7 uniform window."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(pred, gt, data_range=255, channel_axis=-1))


def _gray(img: np.ndarray) -> np.ndarray:
    from skimage.color import rgb2gray

    return rgb2gray(img)


def ssim_s2(pred: np.ndarray, gt: np.ndarray) -> float:
    """Recipe S2: grayscale 2-D SSIM, Gaussian window (sigma 1.5), population covariance, data range 1."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(_gray(pred), _gray(gt), gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False, data_range=1.0))


def ssim_s2p(pred: np.ndarray, gt: np.ndarray) -> float:
    """Recipe S2' (NEURONS): S2 with ``channel_axis=-1`` on the grayscale frames (1-D SSIM per column).

    Computed for all columns at once: scikit-image loops over the W columns, one 1-D SSIM call each (the
    slowest recipe by far); this is the same computation vectorised (tests check it against the loop to 1e-6):
    Gaussian-weighted moments along the height (sigma 1.5, truncate 3.5, reflect), population covariance,
    K1 0.01, K2 0.03, data range 1, the 5 rows at each end cropped, then the mean.
    """
    from scipy.ndimage import gaussian_filter1d

    x, y = _gray(pred), _gray(gt)
    if x.shape[0] < 11:
        raise ValueError(f"ssim_s2p: frames must be at least 11 pixels high (the Gaussian window), found {x.shape}")

    def blur(a):
        return gaussian_filter1d(a, 1.5, axis=0, mode="reflect", truncate=3.5)

    ux, uy = blur(x), blur(y)
    vx, vy, vxy = blur(x * x) - ux * ux, blur(y * y) - uy * uy, blur(x * y) - ux * uy
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux ** 2 + uy ** 2 + c1) * (vx + vy + c2))
    return float(s[5:-5].mean())


def psnr(pred: np.ndarray, gt: np.ndarray) -> float:
    """PSNR (dB) of uint8 frames, data range 255, capped at :data:`PSNR_CAP_DB`."""
    from skimage.metrics import peak_signal_noise_ratio

    if np.array_equal(pred, gt):
        return PSNR_CAP_DB
    return float(min(peak_signal_noise_ratio(gt, pred, data_range=255), PSNR_CAP_DB))


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r of two arrays' values (NaN when either is constant)."""
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


def pixel_correlation(pred: np.ndarray, gt: np.ndarray) -> float:
    """Pearson r of all pixel values of two frames (NaN when either is constant)."""
    return pearson(pred, gt)


_FRAME_FUNCTIONS = {"ssim_s1": ssim_s1, "ssim_s2": ssim_s2, "ssim_s2p": ssim_s2p, "psnr": psnr,
                    "pixcorr": pixel_correlation}


# --------------------------------------------------------------------------------------------------- videos
def check_videos(pred: np.ndarray, gt: np.ndarray) -> None:
    """Raise ValueError unless both are uint8 (N, F, H, W, 3) of the same shape."""
    for name, v in (("prediction", pred), ("ground truth", gt)):
        if v.dtype != np.uint8 or v.ndim != 5 or v.shape[-1] != 3:
            raise ValueError(f"metrics: expected the {name} as uint8 videos (N, F, H, W, 3), found {v.dtype} "
                             f"{v.shape}; convert with (x * 255).round().astype(np.uint8) and stack clips")
    if pred.shape != gt.shape:
        raise ValueError(f"metrics: prediction {pred.shape} and ground truth {gt.shape} differ in shape; resize "
                         "the prediction to the ground truth's frames (and take the same frames per clip) first")


def frame_scores(pred: np.ndarray, gt: np.ndarray, metrics=FRAME_METRICS) -> dict[str, np.ndarray]:
    """Per-frame scores {metric: (N, F)} of predicted vs ground-truth videos (uint8 (N, F, H, W, 3))."""
    check_videos(pred, gt)
    unknown = [m for m in metrics if m not in _FRAME_FUNCTIONS]
    if unknown:
        raise ValueError(f"metrics: unknown {unknown}; known: {', '.join(_FRAME_FUNCTIONS)}")
    n, f = pred.shape[:2]
    out = {m: np.empty((n, f)) for m in metrics}
    for i in range(n):
        for j in range(f):
            for m in metrics:
                out[m][i, j] = _FRAME_FUNCTIONS[m](pred[i, j], gt[i, j])
    return out


def summarize(scores: dict[str, np.ndarray]) -> dict[str, dict]:
    """{metric: {"mean", "std" (across clips of per-clip means), "per_frame" [F]}} of :func:`frame_scores`
    output; NaNs (pixel correlation of a constant frame) are left out."""
    out = {}
    for m, s in scores.items():
        per_frame = np.nanmean(s, axis=0)
        per_clip = np.nanmean(s, axis=1)
        out[m] = {"mean": float(np.nanmean(per_frame)), "std": float(np.nanstd(per_clip)),
                  "per_frame": [float(x) for x in per_frame]}
    return out


def frame_difference_energy(videos: np.ndarray) -> np.ndarray:
    """(N, F, H, W, 3) uint8 -> (N, F - 1): mean squared difference of consecutive grayscale frames in [0, 1]."""
    gray = videos.astype(np.float64) @ np.array([0.2125, 0.7154, 0.0721]) / 255.0    # rgb2gray's weights
    return (np.diff(gray, axis=1) ** 2).mean(axis=(2, 3))


def motion_agreement(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """Does the prediction move with the stimulus?  Correlations of frame-difference energies.

    Returns ``spearman`` / ``pearson``: across clips, of the per-clip mean energy (prediction vs ground truth);
    ``spearman_p``: the one-sided p-value of the Spearman correlation being > 0 (is the agreement more than
    chance over these N clips?); ``within_clip``: mean over clips of the Pearson r of their F-1 energies (clips
    where either is constant are left out); ``energy_pred`` / ``energy_gt``: mean energies (a prediction that
    does not move has ~0).
    """
    from scipy.stats import pearsonr, spearmanr

    check_videos(pred, gt)
    ep, eg = frame_difference_energy(pred), frame_difference_energy(gt)
    mp, mg = ep.mean(1), eg.mean(1)
    ok = np.std(mp) > 0 and np.std(mg) > 0
    within = [pearson(a, b) for a, b in zip(ep, eg)]
    rho = spearmanr(mp, mg, alternative="greater") if ok else None
    return {"spearman": float(rho[0]) if ok else float("nan"),
            "spearman_p": float(rho[1]) if ok else float("nan"),
            "pearson": float(pearsonr(mp, mg)[0]) if ok else float("nan"),
            "within_clip": float(np.nanmean(within)) if not np.all(np.isnan(within)) else float("nan"),
            "energy_pred": float(mp.mean()), "energy_gt": float(mg.mean())}


def video_metrics(pred: np.ndarray, gt: np.ndarray, metrics=FRAME_METRICS) -> dict:
    """Everything the Perception Reconstructor is judged by: :func:`summarize` of :func:`frame_scores` plus
    ``motion`` (:func:`motion_agreement`) and ``n_clips``."""
    return {**summarize(frame_scores(pred, gt, metrics)), "motion": motion_agreement(pred, gt),
            "n_clips": int(len(pred))}


# The semantic and temporal metrics and the Table 1 layout live in sibling modules (this one stays about pixels);
# re-exported so that ``neuroclips_core.metrics`` is the one place to import any metric from.
from .metrics_semantic import (ALIGNMENT_RULES, GT_TOP, N_TRIALS, NWayResult, RetrievalResult,  # noqa: E402,F401
                               adjacent_cosines, align_to_ground_truth, aligned_frame_indices, binomial_se, clip_pcc,
                               clip_pcc_scores, clip_video_embeddings, frame_class_probabilities,
                               n_way_accuracy, n_way_chance, retrieval_parts, retrieval_top1,
                               video_class_probabilities)
from .metrics_table import PAPER_TABLE1, TABLE1_COLUMNS, table1_frame  # noqa: E402,F401
