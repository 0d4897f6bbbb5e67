"""Raw cc2017 layout (real or cc2017-sim) -> processed store, in Python, one run at a time.

This is the official MATLAB preprocessing (``movie_fmri_data_processing.m``, ``movie_fmri_reproducibility.m``)
plus the steps the official code leaves out (the t-test, Bonferroni selection and the 4 s delay):

1. **Trim and pair with the delay.**  A run of 245 volumes drops the first 1 and the last 4, a run of 246 the
   first 2 and the last 4, leaving the 240 volumes acquired while the movie played (``layout.TRIM_RULES``).
   BOLD lags the stimulus by ~4 s, so clip ``k`` is paired with raw volume ``trim_start + k + delay_trs``
   (``delay_trs=2``).  Every run has 4 volumes after the movie, so all 240 clips keep a measured response for
   any delay up to 4: the paired window is ``raw[trim_start + delay : trim_start + delay + 240]``.
2. **Detrend and z-score** each vertex over that window: a 4th-order polynomial (Legendre regressors on
   time scaled to [-1, 1]) is removed by least squares, then mean 0 / std 1 (``ddof=1`` like MATLAB's
   ``zscore``).  A vertex with no variance left becomes 0, not NaN.
3. **Reproducibility.**  Per training segment, Pearson r between repetitions 1 and 2 of each vertex, Fisher
   z = arctanh(r) -> ``Zmat`` (59412, n_train_segments).
4. **Selection.**  One-sample t-test of ``Zmat`` across segments, one-sided (mean z > 0: a negative
   test-retest correlation carries no stimulus-driven meaning), Bonferroni over all 59412 vertices at
   alpha = 0.05.
5. **Store.**  Selected vertices of every run, the 3 FPS frames of every clip, captions and (sim) labels.

Memory: runs are read one at a time (a raw run is ~58 MB as float32; the next one is read in a background
thread while the current one is processed) and the store is written block by block, so one subject of the
full 18 x 2 + 5 x 10-run dataset peaks at ~1.1 GB.  Time: parsing a CIFTI file dominates, so pass 1 keeps its
preprocessed windows in a temporary on-disk cache and pass 2 reads those instead of the CIFTI files.
"""
from __future__ import annotations

import json
import math
import re
import tempfile
import time
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from . import layout
from .cifti import read_cortex
from .layout import CLIPS_PER_RUN, FRAME_OFFSETS, N_CORTEX, TEST_REPETITIONS, TRAIN_REPETITIONS, TRIM_RULES
from .store import STORE_FORMAT, STORE_VERSION, StoreWriter, check_replaceable, clip_ranges

DETREND_ORDER = 4
ZSCORE_DDOF = 1
FISHER_CLIP = 0.999999
_DETREND_CHUNK = 4096  # columns per float64 block: ~8 MB per (240, 4096) array, cache friendly
CAPTIONS_PENDING = "pending, produced by the captioner role (chapter 03)"


class PrepareError(ValueError):
    """The raw data cannot be turned into a store (the message says why and what to do)."""


class DataLayoutError(PrepareError):
    """The raw dataset does not follow the cc2017 folder layout."""


# ================================================================================== trimming and the delay
def trim_for(n_volumes: int, path: str | Path | None = None) -> tuple[int, int]:
    """``(dropped at start, dropped at end)`` for a run of ``n_volumes`` (cc2017: 245 -> (1, 4), 246 -> (2, 4))."""
    if n_volumes not in TRIM_RULES:
        where = f"{path}: " if path is not None else ""
        raise PrepareError(f"{where}a run must have one of {sorted(TRIM_RULES)} volumes (cc2017 trimming rules); "
                           f"found {n_volumes}")
    return TRIM_RULES[n_volumes]


def paired_window(n_volumes: int, delay_trs: int, path: str | Path | None = None) -> tuple[int, int]:
    """Raw volume range ``[start, stop)`` paired with clips 0..239 of a run of ``n_volumes``.

    Clip ``k`` gets raw volume ``trim_start + k + delay_trs``.  The delay may use at most the trailing
    volumes the run has after the movie (4 in cc2017); a longer one would leave the last clips without data.
    """
    start, end = trim_for(n_volumes, path)
    if not 0 <= delay_trs <= end:
        raise PrepareError(f"delay_trs must be between 0 and {end} (the volumes a {n_volumes}-volume run has after "
                           f"the movie); got {delay_trs}")
    a = start + delay_trs
    return a, a + (n_volumes - start - end)


# ========================================================================================= detrend, z-score
@lru_cache(maxsize=8)
def legendre_basis(n_time: int, order: int = DETREND_ORDER) -> np.ndarray:
    """Orthonormal basis (n_time, order+1) of polynomials up to ``order`` on time scaled to [-1, 1].

    Legendre polynomials are well conditioned on [-1, 1]; a QR makes the columns exactly orthonormal so the
    least-squares fit is a single projection ``Q Q^T``.
    """
    t = np.linspace(-1.0, 1.0, n_time)
    q, _ = np.linalg.qr(np.polynomial.legendre.legvander(t, order))
    q.setflags(write=False)
    return q


def detrend_zscore(x: np.ndarray, order: int = DETREND_ORDER, ddof: int = ZSCORE_DDOF) -> np.ndarray:
    """Remove a polynomial trend from each column of ``x`` (T, V), then z-score each column over time.

    The trend is removed by the projection ``I - Q Q^T`` (``Q`` = :func:`legendre_basis`), applied as
    ``x - Q (Q^T x)`` so it costs O(T V order) instead of O(T^2 V).  The constant is in the basis, so the
    residual has mean 0 and only needs dividing by its std.  Columns with no variance left (constant or
    purely polynomial) become 0.  Works in float64 on column chunks (precision of the fit, bounded memory).
    Returns float32 (T, V).
    """
    x = np.asarray(x)
    n_time, n_col = x.shape
    q = legendre_basis(n_time, order)
    out = np.empty((n_time, n_col), np.float32)
    for a in range(0, n_col, _DETREND_CHUNK):
        xc = x[:, a:a + _DETREND_CHUNK].astype(np.float64)
        resid = xc - q @ (q.T @ xc)
        sd = np.sqrt(np.einsum("tv,tv->v", resid, resid) / (n_time - ddof))
        rms = np.sqrt(np.einsum("tv,tv->v", xc, xc) / n_time)
        sd[sd <= 1e-6 * rms] = np.inf  # what is left is rounding error of the fit, not signal: -> 0
        np.divide(resid, sd, out=out[:, a:a + _DETREND_CHUNK], casting="same_kind")
    return out


def preprocess_run(path: str | Path, segment: str, delay_trs: int = 2,
                   columns: np.ndarray | None = None) -> np.ndarray:
    """Read one run, keep ``columns`` of the 59412 cortical vertices (all if None), cut the delay-paired
    window and detrend/z-score it: float32 (240, V)."""
    raw = read_cortex(path, layout.expected_volumes(segment))
    if columns is not None:
        raw = raw[:, columns]
    a, b = paired_window(raw.shape[0], delay_trs, path)
    return detrend_zscore(raw[a:b])


# ================================================================================== reproducibility, t-test
def pearson_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r between matching columns of ``a`` and ``b`` (T, V) -> (V,); 0 where either is constant.

    Computed in float64 on column chunks, so two (240, 59412) runs need only a few MB of scratch memory.
    """
    n_col = a.shape[1]
    r = np.zeros(n_col)
    for s in range(0, n_col, _DETREND_CHUNK):
        ac = np.asarray(a[:, s:s + _DETREND_CHUNK], dtype=np.float64)
        bc = np.asarray(b[:, s:s + _DETREND_CHUNK], dtype=np.float64)
        ac = ac - ac.mean(axis=0)
        bc = bc - bc.mean(axis=0)
        num = np.einsum("tv,tv->v", ac, bc)
        den = np.sqrt(np.einsum("tv,tv->v", ac, ac) * np.einsum("tv,tv->v", bc, bc))
        np.divide(num, den, out=r[s:s + _DETREND_CHUNK], where=den > 0)
    return r


def fisher_z(r: np.ndarray) -> np.ndarray:
    """Fisher r-to-z, ``arctanh(r)``, with r clipped to +-0.999999 so identical series stay finite."""
    return np.arctanh(np.clip(r, -FISHER_CLIP, FISHER_CLIP))


def select_voxels(zmat: np.ndarray, alpha: float = 0.05, one_sided: bool = True) -> dict:
    """One-sample t-test of each row of ``zmat`` (n_vertices, n_segments) against 0, Bonferroni-corrected.

    ``t = mean / (std(ddof=1) / sqrt(n))`` with ``n - 1`` degrees of freedom.  ``one_sided`` tests mean > 0
    (the default: negative test-retest correlation is not a stimulus-driven response); otherwise ``|t|``
    two-sided.  A vertex is kept when ``p < alpha / n_vertices``.

    Returns ``dict(mask=bool (n_vertices,), t=float (n_vertices,), p=float (n_vertices,), threshold_p=float,
    df=int, alpha=float, one_sided=bool, n_tests=int, n_selected=int)``.
    """
    from scipy import stats

    zmat = np.asarray(zmat, dtype=np.float64)
    if zmat.ndim != 2 or zmat.shape[1] < 2:
        raise PrepareError(f"the t-test needs a (n_vertices, n_segments) matrix with at least 2 segments; "
                           f"got shape {zmat.shape}. Use at least 2 training segments")
    if not np.isfinite(zmat).all():
        raise PrepareError("Zmat holds NaN or infinite values; expected finite Fisher z (check the runs)")
    n = zmat.shape[1]
    mean = zmat.mean(axis=1)
    sem = zmat.std(axis=1, ddof=1) / math.sqrt(n)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(sem > 0, mean / np.where(sem > 0, sem, 1.0), np.sign(mean) * np.inf)
    t = np.nan_to_num(t, nan=0.0)
    p = stats.t.sf(t, n - 1) if one_sided else 2.0 * stats.t.sf(np.abs(t), n - 1)
    threshold = alpha / zmat.shape[0]
    mask = p < threshold
    return {"mask": mask, "t": t, "p": p, "threshold_p": threshold, "df": n - 1, "alpha": float(alpha),
            "one_sided": bool(one_sided), "n_tests": int(zmat.shape[0]), "n_selected": int(mask.sum())}


# ============================================================================================== discovery
def _segment_sets(names: Iterable[str]) -> set[str]:
    out = set()
    for name in names:
        try:
            layout.parse_segment(name)
        except ValueError:
            continue  # unrelated entries (.DS_Store, README, ...) are not segments
        out.add(name)
    return out


def discover_segments(data_root: str | Path, subject: int, require_stimuli: bool = False
                      ) -> tuple[list[str], list[str]]:
    """Find and validate the segments of one subject: ``(train_segments, test_segments)``, sorted.

    Checks that ``video_fmri_dataset/subject{N}/fmri/`` exists, that segments are numbered 1..n without gaps,
    that each has ``cifti/`` with exactly its repetition files (2 for segK, 10 for testK), and, when
    ``stimuli/`` holds mp4s (or ``require_stimuli``), that the stimuli and fMRI segment sets agree.
    Raises :class:`DataLayoutError` naming the missing folder or file and what to do.
    """
    root = Path(data_root)
    ds = layout.dataset_dir(root)
    if not ds.is_dir():
        raise DataLayoutError(f"{ds}: folder not found; expected the cc2017 layout {layout.DATASET_DIR}/stimuli/*.mp4 "
                              f"and {layout.DATASET_DIR}/subjectN/fmri/... under data_root. Point data_root at the "
                              "folder that contains it (or create one with `python -m neuroclips_core simulate`)")
    fmri_dir = layout.subject_dir(root, subject) / "fmri"
    if not fmri_dir.is_dir():
        present = sorted(p.name for p in ds.iterdir() if p.name.startswith("subject"))
        raise DataLayoutError(f"{fmri_dir}: folder not found; expected subject {subject}'s runs there "
                              f"(fmri/segK/cifti/..., fmri/testK/cifti/...); subjects present: {present or 'none'}. "
                              "Unpack that subject's archive into the dataset folder")
    fmri = _segment_sets(p.name for p in fmri_dir.iterdir() if p.is_dir())
    stim_dir = ds / "stimuli"
    stim = _segment_sets(p.stem for p in stim_dir.glob("*.mp4")) if stim_dir.is_dir() else set()
    if require_stimuli and not stim:
        raise DataLayoutError(f"{stim_dir}: no stimulus videos (expected segK.mp4 and testK.mp4) but frames were "
                              "requested; add the cc2017 stimuli/ folder, or prepare fMRI only (--no-frames)")
    if stim:
        for s in sorted(stim - fmri, key=layout.segment_sort_key):
            raise DataLayoutError(f"{fmri_dir / s}: segment folder missing, although {stim_dir / (s + '.mp4')} "
                                  f"exists; expected {fmri_dir / s}/cifti/{s}_1_Atlas.dtseries.nii etc. Restore it "
                                  "from the subject's archive (or remove the stray stimulus)")
        for s in sorted(fmri - stim, key=layout.segment_sort_key):
            raise DataLayoutError(f"{stim_dir / (s + '.mp4')}: stimulus missing for segment {s}, whose fMRI folder "
                                  f"{fmri_dir / s} exists; restore the video from the stimuli archive")
    train = sorted((s for s in fmri if s.startswith("seg")), key=layout.segment_sort_key)
    test = sorted((s for s in fmri if s.startswith("test")), key=layout.segment_sort_key)
    for kind, segs in (("seg", train), ("test", test)):
        if not segs:
            raise DataLayoutError(f"{fmri_dir}: no {kind}K folders found; expected {kind}1, {kind}2, ... "
                                  f"(found {sorted(fmri) or 'no segment folders'})")
        numbers = {layout.parse_segment(s)[1] for s in segs}
        gaps = sorted(set(range(1, max(numbers) + 1)) - numbers)
        if gaps:
            raise DataLayoutError(f"{fmri_dir / f'{kind}{gaps[0]}'}: segment folder missing (cc2017 numbers "
                                  f"segments from 1 without gaps; found {segs}). Restore it from the subject's "
                                  "archive")
    for seg in train + test:
        _check_runs(fmri_dir / seg, seg)
    return train, test


def _check_runs(seg_dir: Path, segment: str) -> None:
    reps = layout.repetitions(segment)
    cdir = seg_dir / "cifti"
    expected = f"{segment}_1_Atlas.dtseries.nii ... {segment}_{reps}_Atlas.dtseries.nii"
    if not cdir.is_dir():
        raise DataLayoutError(f"{cdir}: folder missing; expected the {reps} runs {expected} there. Restore the "
                              "segment from the subject's archive")
    pattern = re.compile(rf"^{segment}_(\d+)_Atlas\.dtseries\.nii$")
    found = sorted(int(m.group(1)) for f in cdir.iterdir() if (m := pattern.match(f.name)))
    want = list(range(1, reps + 1))
    if found != want:
        missing = sorted(set(want) - set(found))
        extra = sorted(set(found) - set(want))
        raise DataLayoutError(f"{cdir}: expected exactly {reps} runs ({expected}), found repetitions {found} "
                              f"(missing {missing}, unexpected {extra}). Restore the missing runs or move extra "
                              "ones out of the folder")


# ========================================================================================= delay profile
def clip_features(frames: np.ndarray) -> np.ndarray:
    """Simple per-clip stimulus features from 3 FPS frames (N, 6, H, W, 3) uint8 -> float64 (N, 68).

    64 = an 8 x 8 grayscale downsample (area average) of the clip's mean frame, 3 = per-channel means,
    1 = frame-difference energy (mean squared change between consecutive frames): luminance layout, colour
    and motion, enough for early visual cortex to be predictable.
    """
    frames = np.asarray(frames)
    n, _, h, w, _ = frames.shape
    if h < 8 or w < 8:
        raise ValueError(f"frames must be at least 8 x 8 pixels for the 8 x 8 downsample; got {h} x {w}")
    rgb = frames.astype(np.float32) / 255.0
    gray = rgb @ np.array([0.299, 0.587, 0.114], np.float32)                  # (N, 6, H, W)
    mean_frame = gray.mean(axis=1)                                              # (N, H, W)
    ys, xs = np.linspace(0, h, 9).astype(int), np.linspace(0, w, 9).astype(int)
    pooled = np.add.reduceat(np.add.reduceat(mean_frame, ys[:-1], axis=1), xs[:-1], axis=2)
    pooled /= np.outer(np.diff(ys), np.diff(xs))
    channels = rgb.mean(axis=(1, 2, 3))                                         # (N, 3)
    motion = (np.diff(gray, axis=1) ** 2).mean(axis=(1, 2, 3))                 # (N,)
    return np.concatenate([pooled.reshape(n, 64), channels, motion[:, None]], axis=1).astype(np.float64)


def ridge_loso(features: Sequence[np.ndarray], responses: Sequence[np.ndarray], alpha: float = 100.0
               ) -> np.ndarray:
    """Leave-one-segment-out ridge encoding: per held-out segment, the mean over voxels of the correlation
    between predicted and measured responses.

    Args: ``features[i]`` (n_i, F) and ``responses[i]`` (n_i, V) of segment i.  Returns (n_segments,).
    Features are standardised with the training folds' statistics only.
    """
    out = np.empty(len(features))
    for j in range(len(features)):
        xtr = np.concatenate([f for i, f in enumerate(features) if i != j])
        ytr = np.concatenate([r for i, r in enumerate(responses) if i != j]).astype(np.float64)
        mu, sd = xtr.mean(0), xtr.std(0)
        sd[sd == 0] = 1.0
        xs = (xtr - mu) / sd
        ymu = ytr.mean(0)
        w = np.linalg.solve(xs.T @ xs + alpha * np.eye(xs.shape[1]), xs.T @ (ytr - ymu))
        pred = ((features[j] - mu) / sd) @ w + ymu
        out[j] = pearson_columns(pred, responses[j]).mean()
    return out


def delay_profile(data_root: str | Path, subject: int, voxel_indices: np.ndarray, shifts: Iterable[int] = range(0, 5),
                  frames: Mapping[str, np.ndarray] | np.ndarray | None = None, segments: Sequence[str] | None = None,
                  ridge_alpha: float = 100.0, max_voxels: int | None = 2000, feature_size: int = 32,
                  progress: bool = False) -> dict:
    """Check the hemodynamic delay: how well stimulus features predict the selected voxels at each shift.

    For each shift ``s``, clip ``k`` is paired with raw volume ``trim_start + k + s``, the window is detrended
    and z-scored (selected voxels only) per repetition, the repetitions are averaged, and a ridge model from
    :func:`clip_features` to the voxels is cross-validated leave-one-training-segment-out.  On well-formed
    data the held-out correlation peaks at the true delay (2 TRs = 4 s in cc2017).

    Args:
        voxel_indices: vertices to model (indices into the 59412).  At most ``max_voxels`` of them, evenly
            spaced, are used (the check needs a sample, not all; ``None`` uses all).
        frames: precomputed frames to avoid decoding again: ``{segment: (240, 6, H, W, 3)}`` or an array
            ``(240 * n_segments, 6, H, W, 3)`` in training-segment order (e.g. ``Store.frames_train``);
            ``None`` decodes each segment's mp4 at ``feature_size`` pixels.
        segments: training segments to use (default: all, from :func:`discover_segments`).

    Returns ``dict(shifts=int array (S,), mean_r=float array (S,), fold_r=float array (S, n_segments),
    best_shift=int, n_voxels=int, segments=list)``.
    """
    from tqdm.auto import tqdm

    shifts = [int(s) for s in shifts]
    if segments is None:
        segments = discover_segments(data_root, subject, require_stimuli=frames is None)[0]
    segments = list(segments)
    if len(segments) < 2:
        raise PrepareError(f"the delay check cross-validates across training segments and needs at least 2; "
                           f"got {segments}")
    vox = np.asarray(voxel_indices, dtype=np.int64)
    if max_voxels is not None and len(vox) > max_voxels:
        vox = vox[np.linspace(0, len(vox) - 1, max_voxels).round().astype(int)]
    if len(vox) == 0:
        raise PrepareError("delay_profile needs at least one voxel; got an empty voxel_indices")
    for seg in segments:          # reject impossible shifts before reading anything
        for s in shifts:
            paired_window(layout.expected_volumes(seg), s)
    if frames is not None and not isinstance(frames, Mapping) and len(frames) < CLIPS_PER_RUN * len(segments):
        raise PrepareError(f"frames has {len(frames)} clips; expected at least {CLIPS_PER_RUN * len(segments)} "
                           f"(240 per training segment, in the order {segments})")

    feats = []
    for i, seg in enumerate(segments):
        if frames is None:
            f = _read_frames(data_root, seg, feature_size)
        elif isinstance(frames, Mapping):
            f = frames[seg]
        else:
            f = frames[i * CLIPS_PER_RUN:(i + 1) * CLIPS_PER_RUN]
        feats.append(clip_features(np.asarray(f)))

    # raw selected columns of every run, read once and re-windowed for every shift
    raw = {}
    bar = tqdm(total=len(segments) * TRAIN_REPETITIONS, desc="delay check: runs", disable=not progress)
    for seg in segments:
        for r in range(1, TRAIN_REPETITIONS + 1):
            raw[seg, r] = read_cortex(layout.run_path(data_root, subject, seg, r), layout.expected_volumes(seg))[:, vox]
            bar.update()
    bar.close()
    fold_r = np.empty((len(shifts), len(segments)))
    for si, s in enumerate(shifts):
        responses = []
        for seg in segments:
            reps = []
            for r in range(1, TRAIN_REPETITIONS + 1):
                a, b = paired_window(raw[seg, r].shape[0], s)
                reps.append(detrend_zscore(raw[seg, r][a:b]))
            responses.append(np.mean(reps, axis=0))
        fold_r[si] = ridge_loso(feats, responses, ridge_alpha)
    mean_r = fold_r.mean(axis=1)
    return {"shifts": np.array(shifts), "mean_r": mean_r, "fold_r": fold_r,
            "best_shift": int(shifts[int(np.argmax(mean_r))]), "n_voxels": int(len(vox)), "segments": segments}


def _read_frames(data_root, segment: str, size: int | None) -> np.ndarray:
    from .video import read_clip_frames

    return read_clip_frames(layout.stimulus_path(data_root, segment), n_clips=CLIPS_PER_RUN,
                            offsets=FRAME_OFFSETS, size=size)


# ========================================================================================= prepare_subject
def is_sim(data_root: str | Path) -> bool:
    """A dataset is cc2017-sim iff ``ground_truth/sim.json`` exists beside ``video_fmri_dataset/``."""
    return (layout.ground_truth_dir(data_root) / "sim.json").is_file()


def _sim_annotations(data_root: Path, segments: list[str]) -> tuple[list, np.ndarray | None]:
    """Ground-truth captions and labels of cc2017-sim, concatenated over ``segments`` in order.

    Returns ``(captions (240 * n,), labels int64 (240 * n,))``, or ``([None] * 240n, None)`` when the
    simulation wrote no per-segment ground truth at all.
    """
    gt = layout.ground_truth_dir(data_root) / "stimuli"
    files = [gt / f"{s}.json" for s in segments]
    present = [f.is_file() for f in files]
    if not any(present):
        return [None] * (CLIPS_PER_RUN * len(segments)), None
    if not all(present):
        missing = files[present.index(False)]
        raise DataLayoutError(f"{missing}: missing, while other segments have their ground-truth json; "
                              "the simulation is incomplete; re-run `python -m neuroclips_core simulate`")
    captions, labels = [], []
    for f in files:
        d = json.loads(f.read_text())
        for key in ("labels", "captions"):
            if len(d.get(key, [])) != CLIPS_PER_RUN:
                raise DataLayoutError(f"{f}: expected {CLIPS_PER_RUN} {key}, found {len(d.get(key, []))}; "
                                      "re-run the simulation")
        captions += list(d["captions"])
        labels += list(d["labels"])
    return captions, np.asarray(labels, dtype=np.int64)


class _Stages:
    """Wall time (and peak RSS so far, where the platform reports it) at the end of each stage."""

    def __init__(self):
        self.report: dict[str, dict] = {}

    @contextmanager
    def __call__(self, name: str):
        t0 = time.perf_counter()
        yield
        entry = {"seconds": round(time.perf_counter() - t0, 3)}
        try:
            import resource

            entry["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        except ImportError:  # not on POSIX
            pass
        self.report[name] = entry


def prepare_subject(data_root: str | Path, subject: int, out: str | Path, frame_size: int | None = None,
                    with_frames: bool = True, delay_trs: int = 2, alpha: float = 0.05, one_sided: bool = True,
                    cache_runs: bool = True, progress: bool = False) -> Path:
    """Raw cc2017 layout (real or sim) -> processed store at ``out``; returns ``out``.

    Pass 1 reads every training run once, one segment at a time, to compute ``Zmat`` (59412, n_train);
    :func:`select_voxels` picks V vertices; pass 2 takes those vertices from every training run
    (``fmri_train`` (240 n_train, 2, V)), then the test runs are read (``fmri_test`` (240 n_test, 10, V)).
    Clips are ordered by segment, then clip index.  With ``with_frames``, each segment's mp4 gives
    ``frames_*`` (N, 6, frame_size, frame_size, 3) uint8 (``frame_size`` default: 64 for cc2017-sim, 224 for
    real data).  Everything is written into a temp folder beside ``out`` and renamed into place when complete.

    ``cache_runs`` keeps pass 1's preprocessed windows on disk beside ``out`` (57 MB per run, ~2 GB for 18
    segments; deleted at the end) so pass 2 reads them back instead of parsing every CIFTI file again, which
    is where most of the time goes; ``False`` re-reads the runs and needs no extra disk.
    """
    from tqdm.auto import tqdm

    from .. import __version__

    data_root, out = Path(data_root), Path(out).absolute()
    check_replaceable(out)  # fail now, not after minutes of work, if --out is an unrelated folder
    sim = is_sim(data_root)
    train, test = discover_segments(data_root, subject, require_stimuli=with_frames)
    if len(train) < 2:
        raise PrepareError(f"voxel selection needs at least 2 training segments (a t-test across segments); found "
                           f"{train} under {layout.subject_dir(data_root, subject) / 'fmri'}")
    if with_frames and frame_size is None:
        frame_size = 64 if sim else 224
    captions_train, labels_train = _sim_annotations(data_root, train) if sim else ([None] * 240 * len(train), None)
    captions_test, labels_test = _sim_annotations(data_root, test) if sim else ([None] * 240 * len(test), None)
    has_labels = labels_train is not None and labels_test is not None
    n_train, n_test = CLIPS_PER_RUN * len(train), CLIPS_PER_RUN * len(test)
    stage = _Stages()
    bar = tqdm(total=len(train) * TRAIN_REPETITIONS * 2 + len(test) * TEST_REPETITIONS
               + (len(train) + len(test) if with_frames else 0), desc=f"prepare subject {subject}", unit="file",
               disable=not progress)

    def run(seg, r):
        return layout.run_path(data_root, subject, seg, r)

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.runcache-") as cache_dir:
        cache = Path(cache_dir) if cache_runs else None
        with stage("pass1_reproducibility"):
            bar.set_description("pass 1: reproducibility")
            zmat = _reproducibility(run, train, delay_trs, cache, bar)
            sel = select_voxels(zmat, alpha=alpha, one_sided=one_sided)
        idx = np.flatnonzero(sel["mask"])
        if len(idx) == 0:
            raise PrepareError(f"no vertex passed the {'one' if one_sided else 'two'}-sided t-test across "
                               f"{len(train)} training segments at Bonferroni p < {sel['threshold_p']:.3g} (max t = "
                               f"{np.max(sel['t']):.3g}); expected stimulus-driven vertices. Check the data (are the "
                               "repetitions of a segment the same movie?), use more segments, or raise alpha")
        v = len(idx)

        with StoreWriter(out) as w:
            w.save_array("voxel_indices.npy", idx.astype(np.int64))
            w.save_array("zmat.npy", zmat)
            w.save_array("tstat.npy", sel["t"].astype(np.float32))
            w.save_array("pvalue.npy", sel["p"].astype(np.float64))  # float32 would underflow the tiny p-values
            with stage("pass2_train"):
                bar.set_description("pass 2: training runs")
                fmri_train = w.create_array("fmri_train.npy", (n_train, TRAIN_REPETITIONS, v), np.float32)
                _write_segments(fmri_train, run, train, delay_trs, idx, cache, bar)
            with stage("test"):
                bar.set_description("test runs")
                fmri_test = w.create_array("fmri_test.npy", (n_test, TEST_REPETITIONS, v), np.float32)
                _write_segments(fmri_test, run, test, delay_trs, idx, None, bar)
            if with_frames:
                with stage("frames"):
                    bar.set_description("frames")
                    for split, segs in (("train", train), ("test", test)):
                        arr = w.create_array(f"frames_{split}.npy", (CLIPS_PER_RUN * len(segs), len(FRAME_OFFSETS),
                                                                     frame_size, frame_size, 3), np.uint8)
                        for i, seg in enumerate(segs):
                            arr.write(i * CLIPS_PER_RUN, _read_frames(data_root, seg, frame_size))
                            bar.update()
            w.write_json("captions_train.json", captions_train)
            w.write_json("captions_test.json", captions_test)
            if has_labels:
                w.save_array("labels_train.npy", labels_train)
                w.save_array("labels_test.npy", labels_test)
            w.write_json("meta.json", _meta(data_root, subject, sim, train, test, delay_trs, with_frames, frame_size,
                                            sel, v, has_labels, stage.report, __version__))
    bar.close()
    return out


def _prefetched(fn, items: list):
    """Yield ``fn(item)`` for each item, in order, while the next one is computed in a background thread.

    Reading a run is partly file I/O and numpy work that releases the GIL, so reading run i+1 overlaps with
    processing run i on the second core.  At most one result waits in memory.
    """
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(fn, items[0]) if items else None
        for i in range(len(items)):
            result = pending.result()
            pending = pool.submit(fn, items[i + 1]) if i + 1 < len(items) else None
            yield result


def _reproducibility(run, train: list[str], delay_trs: int, cache: Path | None, bar) -> np.ndarray:
    """Pass 1: Fisher z of the repetition-1 vs repetition-2 correlation -> float32 (59412, n_train).

    Holds at most the two preprocessed runs of one segment (plus one being read); with ``cache``, each
    preprocessed window is also saved there for pass 2.
    """
    def load(item):
        seg, r = item
        x = preprocess_run(run(seg, r), seg, delay_trs)
        if cache is not None:
            np.save(cache / f"{seg}_{r}.npy", x)
        return x

    items = [(seg, r) for seg in train for r in (1, 2)]
    zmat = np.empty((N_CORTEX, len(train)), np.float32)
    runs = _prefetched(load, items)
    for i, _ in enumerate(train):
        rep1 = next(runs)
        bar.update()
        rep2 = next(runs)
        bar.update()
        zmat[:, i] = fisher_z(pearson_columns(rep1, rep2))
        del rep1, rep2
    return zmat


def _write_segments(dst, run, segments: list[str], delay_trs: int, idx: np.ndarray, cache: Path | None, bar) -> None:
    """Selected vertices of every repetition of ``segments`` -> ``dst`` rows, one (240, n_reps, V) block per
    segment.  Runs come from pass 1's ``cache`` when given, else are read and preprocessed again."""
    def load(item):
        seg, r = item
        if cache is not None:
            return np.load(cache / f"{seg}_{r}.npy", mmap_mode="r")[:, idx]
        return preprocess_run(run(seg, r), seg, delay_trs, columns=idx)

    items = [(seg, r) for seg in segments for r in range(1, layout.repetitions(seg) + 1)]
    runs = _prefetched(load, items)
    for i, seg in enumerate(segments):
        block = np.empty((CLIPS_PER_RUN, layout.repetitions(seg), len(idx)), np.float32)
        for r in range(block.shape[1]):
            block[:, r] = next(runs)
            bar.update()
        dst.write(i * CLIPS_PER_RUN, block)


def _meta(data_root, subject, sim, train, test, delay_trs, with_frames, frame_size, sel, v, has_labels, timings,
          version) -> dict:
    runs = {}
    for seg in train + test:
        n_vol = layout.expected_volumes(seg)
        trim = trim_for(n_vol)
        a, b = paired_window(n_vol, delay_trs)
        runs[seg] = {"volumes": n_vol, "trim": list(trim), "paired_raw_volumes": [a, b],
                     "files": [str(layout.run_path(data_root, subject, seg, r).relative_to(data_root))
                               for r in range(1, layout.repetitions(seg) + 1)]}
    sim_info = None
    if sim:
        info = json.loads((layout.ground_truth_dir(data_root) / "sim.json").read_text())
        sim_info = {k: info.get(k) for k in ("simulator_version", "preset", "seed")}
    return {
        "format": STORE_FORMAT, "store_version": STORE_VERSION, "library_version": version, "source": "prepare",
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "subject": int(subject), "data_root": str(Path(data_root).absolute()),
        "dataset": "sim" if sim else "real", "sim": sim_info,
        "train_segments": train, "test_segments": test,
        "n_train": CLIPS_PER_RUN * len(train), "n_test": CLIPS_PER_RUN * len(test), "n_voxels": int(v),
        "train_repetitions": TRAIN_REPETITIONS, "test_repetitions": TEST_REPETITIONS,
        "train_clip_ranges": clip_ranges(train), "test_clip_ranges": clip_ranges(test),
        "trim_rules": {str(k): list(val) for k, val in TRIM_RULES.items()}, "runs": runs,
        "delay_trs": int(delay_trs), "delay_seconds": delay_trs * layout.TR_SECONDS,
        "window": "raw[start+delay : start+delay+240]",
        "detrend": {"order": DETREND_ORDER, "basis": "Legendre polynomials on time scaled to [-1, 1], least squares",
                    "zscore_ddof": ZSCORE_DDOF, "zero_variance": "set to 0"},
        "reproducibility": {"statistic": "Pearson r between repetitions 1 and 2 per training segment",
                            "fisher_z": f"arctanh(clip(r, -{FISHER_CLIP}, {FISHER_CLIP}))", "file": "zmat.npy"},
        "selection": {"test": "one-sample t-test of Fisher z across training segments",
                      "sided": "one-sided (mean z > 0)" if sel["one_sided"] else "two-sided",
                      "one_sided": sel["one_sided"], "alpha": sel["alpha"], "correction": "bonferroni",
                      "n_tests": sel["n_tests"], "threshold_p": sel["threshold_p"], "df": sel["df"],
                      "n_selected": sel["n_selected"], "files": ["tstat.npy", "pvalue.npy"]},
        "voxel_indices_known": True,
        "with_frames": bool(with_frames), "frame_size": frame_size if with_frames else None,
        "frames_per_clip": len(FRAME_OFFSETS), "frame_offsets": list(FRAME_OFFSETS),
        "frame_indices": "raw frame 60*k + offset for clip k (30 FPS source, 3 FPS kept)",
        "has_labels": bool(has_labels),
        "captions": "ground truth (cc2017-sim)" if sim and has_labels else CAPTIONS_PENDING,
        "timings": timings,
    }
