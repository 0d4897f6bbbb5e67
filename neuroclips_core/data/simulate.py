"""cc2017-sim: write a simulated cc2017 in the real dataset's layout, with its ground truth beside it.

``python -m neuroclips_core simulate --preset {tiny,default,full} --seed S --out DATA`` writes::

    DATA/video_fmri_dataset/stimuli/{segK,testK}.mp4                      30 FPS (not for the fMRI-only 'full')
    DATA/video_fmri_dataset/subjectN/fmri/{seg}/cifti/{seg}_{r}_Atlas.dtseries.nii
    DATA/ground_truth/sim.json, classes.json
    DATA/ground_truth/stimuli/{seg}.json                                  shots; per clip: label, caption, velocity
    DATA/ground_truth/subjectN/responsive.npy  bool (59412,)              vertices the simulation drives
    DATA/ground_truth/subjectN/roles.npy, reliability.npy, prf.npy, noise_free/{seg}.npy

Everything is a deterministic function of (preset, seed): each stimulus segment, each subject and each run
draws from its own seed stream, so an interrupted simulation resumes where it stopped (every file is written
atomically and skipped when present) and adding a subject later gives the same files as simulating all three
at once.  No decoder ever reads ``ground_truth/``; tests, evaluation and the flat-map chapter do.
"""
from __future__ import annotations

import functools
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import layout, sim_brain, sim_stimuli
from .layout import CLIPS_PER_RUN, FRAME_OFFSETS, RAW_FRAMES_PER_CLIP, STIMULUS_FPS, TRIM_RULES

SIMULATOR_VERSION = "1.3.0"
FEATURE_SIZE = 64          # resolution at which the brain model looks at frames


def _single_blas_thread(fn):
    """Run ``fn`` with BLAS/LAPACK on one thread.  OpenBLAS's results (the subject model's SVD, the responses'
    matrix products) change in the last bits with the thread count, so without this a run re-made after a
    resume, or a dataset simulated under another ``OMP_NUM_THREADS``, would differ from the same seed's files."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            return fn(*args, **kwargs)
    return wrapper


@dataclass(frozen=True)
class Preset:
    n_train: int                       # training segments seg1..segN, 2 repetitions each
    n_test: int                        # test segments test1..testK, 10 repetitions each
    stimulus_size: int | None          # mp4 side in pixels; None = fMRI only (no mp4 written)
    reliability_beta: tuple | None     # override of the subjects' reliability distribution
    description: str


PRESETS = {
    "tiny": Preset(6, 1, 64, (12.0, 5.0),
                   "tests and CI: 6 training + 1 test segment, high SNR so 6 segments still pass Bonferroni"),
    "default": Preset(18, 1, 128, None,
                      "the book: cc2017's 18 training segments, 1 test segment (240 test clips), real-like SNR"),
    "full": Preset(18, 5, None, None, "benchmarks: cc2017-sized fMRI (18x2 + 5x10 runs per subject), no mp4s"),
}


class SimulationError(RuntimeError):
    """The output folder holds a different simulation, or a simulation step failed."""


def segments(preset: Preset) -> tuple[list[str], list[str]]:
    return [f"seg{k}" for k in range(1, preset.n_train + 1)], [f"test{k}" for k in range(1, preset.n_test + 1)]


def _segment_code(segment: str) -> int:
    kind, k = layout.parse_segment(segment)
    return (0 if kind == "seg" else 1000) + k


def _atomic_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def _atomic_npy(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, arr)
    os.replace(tmp, path)


def segment_shots(seed: int, segment: str) -> list[sim_stimuli.Shot]:
    """The shots of one stimulus segment (identical for every subject)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0, _segment_code(segment)]))
    return sim_stimuli.sample_shots(rng, CLIPS_PER_RUN * RAW_FRAMES_PER_CLIP, STIMULUS_FPS)


def sampled_frames(shots, size: int = FEATURE_SIZE):
    """Render the 6 frames per clip that the 3 FPS store keeps: images (240, 6, S, S, 3), masks, velocity."""
    idx = (np.arange(CLIPS_PER_RUN)[:, None] * RAW_FRAMES_PER_CLIP + np.asarray(FRAME_OFFSETS)[None]).ravel()
    images, masks, vel = sim_stimuli.render_frames(shots, idx, size, STIMULUS_FPS, with_masks=True)
    shape = (CLIPS_PER_RUN, len(FRAME_OFFSETS))
    return images.reshape(*shape, size, size, 3), masks.reshape(*shape, size, size), vel.reshape(*shape, 2), idx


@_single_blas_thread
def _simulate_segment(root: str, seed: int, segment: str, stimulus_size: int | None) -> str:
    """Worker: ground-truth json, stimulus features and (unless fMRI-only) the 30 FPS mp4 of one segment."""
    root = Path(root)
    gt = layout.ground_truth_dir(root) / "stimuli"
    shots = segment_shots(seed, segment)
    if not (gt / f"{segment}_features.npz").is_file():
        images, masks, vel, idx = sampled_frames(shots)
        which = sim_stimuli.shot_index_of_frames(shots, idx).reshape(CLIPS_PER_RUN, -1)
        labels = np.array([s.label for s in shots])[which]
        import colorsys

        hues = np.array([colorsys.rgb_to_hsv(*s.color)[0] for s in shots])[which]
        feats = sim_brain.clip_features(images, masks, vel, labels, hues)
        tmp = gt / f"{segment}_features.tmp.npz"
        gt.mkdir(parents=True, exist_ok=True)
        np.savez(tmp, **feats)
        os.replace(tmp, gt / f"{segment}_features.npz")
    if not (gt / f"{segment}.json").is_file():
        ann = sim_stimuli.clip_annotations(shots, CLIPS_PER_RUN, RAW_FRAMES_PER_CLIP)
        _atomic_json(gt / f"{segment}.json", {"segment": segment, **ann, "shots": [s.to_json() for s in shots]})
    mp4 = layout.stimulus_path(root, segment)
    if stimulus_size and not mp4.is_file():
        from .video import VideoWriter

        with VideoWriter(mp4, fps=STIMULUS_FPS, size=(stimulus_size, stimulus_size), crf=18, preset="veryfast") as writer:
            for k in range(CLIPS_PER_RUN):
                frames = np.arange(k * RAW_FRAMES_PER_CLIP, (k + 1) * RAW_FRAMES_PER_CLIP)
                writer.write(sim_stimuli.to_uint8(sim_stimuli.render_frames(shots, frames, stimulus_size)))
    return segment


def load_features(root: Path, segment: str) -> dict:
    with np.load(layout.ground_truth_dir(root) / "stimuli" / f"{segment}_features.npz") as z:
        return {k: z[k] for k in z.files}


@dataclass
class RunNoiseModel:
    """Per-grayordinate noise and scanner parameters of one subject (shared by all its runs)."""

    phi: np.ndarray
    drift_amp: np.ndarray
    global_load: np.ndarray
    baseline: np.ndarray
    amplitude: np.ndarray       # (n_responsive,) signal amplitude in noise units
    responsive_idx: np.ndarray


@_single_blas_thread
def _write_run(path: str, seed: int, subject: int, segment: str, rep: int, n_volumes: int,
               signal: np.ndarray, noise: RunNoiseModel) -> str:
    """Worker: one CIFTI run = baseline * (1 + 0.6% * (noise + amplitude * noise-free signal))."""
    from .cifti import write_dtseries

    rng = np.random.default_rng(np.random.SeedSequence([seed, subject, _segment_code(segment), rep]))
    y = sim_brain.noise_run(rng, n_volumes, noise.phi, noise.drift_amp, noise.global_load)
    y[:, noise.responsive_idx] += signal * noise.amplitude[None]
    write_dtseries(path, noise.baseline[None] * (1 + 0.006 * y))
    return path


def _subject_noise(seed: int, model: sim_brain.SubjectModel) -> RunNoiseModel:
    rng = np.random.default_rng(np.random.SeedSequence([seed, model.subject, 2]))
    n = layout.N_GRAYORDINATES
    r = model.reliability[model.responsive_idx].astype(np.float64)
    return RunNoiseModel(
        phi=rng.uniform(0.2, 0.5, n).astype(np.float32),
        drift_amp=rng.uniform(0.2, 0.8, n).astype(np.float32),
        global_load=rng.normal(0.4, 0.3, n).astype(np.float32),
        baseline=rng.uniform(700, 1300, n).astype(np.float32),
        amplitude=np.sqrt(r / (1 - r)).astype(np.float32),
        responsive_idx=model.responsive_idx,
    )


def noise_free_signals(root: Path, model: sim_brain.SubjectModel, all_segments: list[str]) -> dict:
    """Noise-free BOLD of the responsive vertices per segment, (n_volumes, n_responsive), unit variance.

    Clip responses are standardised over all clips of the dataset, placed on each run's volume timeline
    (blank screen before and after the movie), convolved with the per-TR HRF, and scaled to unit variance
    over the movie volumes of all segments.
    """
    resp = {s: model.responses(load_features(root, s)) for s in all_segments}
    stacked = np.concatenate(list(resp.values()))
    mu, sd = stacked.mean(0), stacked.std(0) + 1e-6
    blank = (model.responses(sim_brain.blank_features())[0] - mu) / sd
    kernel = sim_brain.hrf_at_tr(layout.TR_SECONDS)
    bold = {}
    for s in all_segments:
        n_vol = layout.expected_volumes(s)
        start = TRIM_RULES[n_vol][0]
        timeline = sim_brain.neural_timeline((resp[s] - mu) / sd, blank, n_vol, start)
        bold[s] = sim_brain.convolve_hrf(timeline, kernel, blank)
    movie = np.concatenate([b[TRIM_RULES[len(b)][0]:TRIM_RULES[len(b)][0] + CLIPS_PER_RUN] for b in bold.values()])
    centre, scale = movie.mean(0), movie.std(0) + 1e-6
    return {s: ((b - centre) / scale).astype(np.float32) for s, b in bold.items()}


def _read_sim_json(root: Path) -> dict | None:
    p = layout.ground_truth_dir(root) / "sim.json"
    return json.loads(p.read_text()) if p.is_file() else None


def simulate_dataset(out: str | Path, preset: str = "default", seed: int = 0, subjects=(1, 2, 3),
                     progress: bool = False, workers: int | None = None) -> Path:
    """Simulate (or finish simulating) cc2017-sim into ``out``; returns ``out``.

    Parts already on disk are kept, so this also resumes an interrupted run and adds subjects to an
    existing dataset.  Raises :class:`SimulationError` if ``out`` holds a simulation with another preset,
    seed or simulator version.
    """
    from tqdm.auto import tqdm

    if preset not in PRESETS:
        raise SimulationError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
    bad = [s for s in subjects if s not in sim_brain.SUBJECT_PROFILES]
    if bad:
        raise SimulationError(f"subjects must be among 1, 2, 3; got {bad}")
    p = PRESETS[preset]
    root = Path(out).resolve()
    info = _read_sim_json(root)
    wanted = {"simulator_version": SIMULATOR_VERSION, "preset": preset, "seed": seed}
    if info is not None:
        clash = {k: info.get(k) for k, v in wanted.items() if info.get(k) != v}
        if clash:
            raise SimulationError(
                f"{root} already holds cc2017-sim with {clash}, but {wanted} was asked for; "
                "use another --out folder or delete this one")
    elif root.exists() and any(root.iterdir()) and not (root / ".simulating").exists():
        raise SimulationError(f"{root} is not empty and is not a cc2017-sim dataset; choose an empty --out")
    root.mkdir(parents=True, exist_ok=True)
    (root / ".simulating").touch()
    train, test = segments(p)
    info = info or {**wanted, "preset_description": p.description, "train_segments": train,
                    "test_segments": test, "stimulus_size": p.stimulus_size, "fps": STIMULUS_FPS,
                    "n_classes": sim_stimuli.N_CLASSES, "subjects_complete": []}
    _atomic_json(layout.ground_truth_dir(root) / "sim.json", info)
    _atomic_json(layout.ground_truth_dir(root) / "classes.json", sim_stimuli.class_table())
    workers = workers or min(2, os.cpu_count() or 1)
    all_segments = train + test
    with ProcessPoolExecutor(workers) as pool:
        jobs = [pool.submit(_simulate_segment, str(root), seed, s, p.stimulus_size) for s in all_segments]
        for j in tqdm(jobs, desc="stimuli", disable=not progress):
            j.result()
        for subject in subjects:
            if _subject_on_disk(root, subject, all_segments):
                continue
            _simulate_subject(root, seed, subject, p, all_segments, pool, progress)
            info["subjects_complete"] = sorted(set(info["subjects_complete"]) | {subject})
            _atomic_json(layout.ground_truth_dir(root) / "sim.json", info)
    if set(info["subjects_complete"]) == {1, 2, 3}:
        (root / ".simulating").unlink(missing_ok=True)
    return root


def _subject_on_disk(root: Path, subject: int, all_segments: list[str]) -> bool:
    """True when every run and the ground truth of ``subject`` exist (so a deleted file gets re-made)."""
    runs = [layout.run_path(root, subject, s, r) for s in all_segments for r in range(1, layout.repetitions(s) + 1)]
    gt = layout.ground_truth_dir(root) / f"subject{subject}" / "responsive.npy"
    return gt.is_file() and all(p.is_file() for p in runs)


@_single_blas_thread
def _simulate_subject(root: Path, seed: int, subject: int, p: Preset, all_segments: list[str], pool,
                      progress: bool) -> None:
    from tqdm.auto import tqdm

    rng = np.random.default_rng(np.random.SeedSequence([seed, subject, 1]))
    model = sim_brain.build_subject(subject, rng, p.reliability_beta)
    noise = _subject_noise(seed, model)
    signals = noise_free_signals(root, model, all_segments)
    gt = layout.ground_truth_dir(root) / f"subject{subject}"
    for s, sig in signals.items():
        if not (gt / "noise_free" / f"{s}.npy").is_file():
            _atomic_npy(gt / "noise_free" / f"{s}.npy", sig.astype(np.float16))
    jobs = []
    for s in all_segments:
        for rep in range(1, layout.repetitions(s) + 1):
            path = layout.run_path(root, subject, s, rep)
            if not path.is_file():
                jobs.append(pool.submit(_write_run, str(path), seed, subject, s, rep,
                                        layout.expected_volumes(s), signals[s], noise))
    for j in tqdm(jobs, desc=f"subject {subject} runs", disable=not progress):
        j.result()
    _atomic_npy(gt / "roles.npy", model.roles)
    _atomic_npy(gt / "reliability.npy", model.reliability)
    _atomic_npy(gt / "prf.npy", model.prf)
    _atomic_npy(gt / "responsive.npy", model.responsive)   # last: its presence marks the subject complete


def ensure_sim_dataset(cfg, progress: bool = True) -> Path:
    """Make sure ``cfg.data_root`` holds cc2017-sim (``cfg.sim_preset``, ``cfg.seed``) for ``cfg.subject``."""
    if cfg.profile != "sim":
        raise SimulationError(f"ensure_sim_dataset is for the sim profile; this run uses {cfg.profile!r}")
    return simulate_dataset(cfg.data_root, cfg.sim_preset, cfg.seed, subjects=[cfg.subject], progress=progress)


def load_ground_truth(data_root: str | Path, subject: int) -> dict:
    """The ground truth of one simulated subject (for tests, evaluation and figures; never for decoding)."""
    gt = layout.ground_truth_dir(data_root) / f"subject{subject}"
    if not (gt / "responsive.npy").is_file():
        raise SimulationError(f"{gt} has no complete ground truth; is {data_root} a finished cc2017-sim dataset?")
    return {k: np.load(gt / f"{k}.npy") for k in ("responsive", "roles", "reliability", "prf")}


def load_noise_free(data_root: str | Path, subject: int, segment: str) -> np.ndarray:
    """Noise-free BOLD of the responsive vertices (in ``responsive.npy`` order): float32 (n_volumes, n)."""
    return np.load(layout.ground_truth_dir(data_root) / f"subject{subject}" / "noise_free" / f"{segment}.npy").astype(np.float32)


def preset_info(preset: str) -> dict:
    return asdict(PRESETS[preset])
