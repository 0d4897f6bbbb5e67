"""Shared pytest fixtures."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest


# --------------------------------------------------------------------------------------------------------
# mini_cc2017: a minimal raw dataset in the exact cc2017 layout (used by tests/test_prepare.py)
# --------------------------------------------------------------------------------------------------------
@dataclass
class MiniDataset:
    root: Path
    subject: int
    train: list
    test: list
    signal: np.ndarray          # int (n_signal,): cortical vertices driven by the stimulus
    delay_trs: int              # true delay (in TRs) of the simulated response
    labels: dict                # segment -> int (240,)
    colours: dict               # segment -> uint8 (240, 3): the flat colour of each clip


MINI_N_TRAIN = 6        # 6 segments: df = 5, enough for a Bonferroni-corrected t-test to pass real signal
MINI_N_SIGNAL = 300
MINI_DELAY = 2
MINI_SIZE = 32


def _clip_colours(rng) -> np.ndarray:
    """(240, 3) uint8: one flat colour per clip, so clip luminance is a known, independent stimulus feature."""
    return rng.integers(30, 226, size=(240, 3)).astype(np.uint8)


def _write_stimulus(path: Path, colours: np.ndarray) -> None:
    from neuroclips_core.data.video import VideoWriter

    with VideoWriter(path, fps=30, size=MINI_SIZE, crf=18, preset="ultrafast") as w:
        for c in colours:
            w.write(np.broadcast_to(c, (60, MINI_SIZE, MINI_SIZE, 3)))


def _run_data(rng, n_vol: int, trim_start: int, drive: np.ndarray, signal: np.ndarray, gains: np.ndarray):
    """(n_vol, 91282) float32: noise + slow drift everywhere; ``drive`` (240,) at raw volume
    trim_start + k + MINI_DELAY in the signal vertices."""
    from neuroclips_core.data.layout import N_GRAYORDINATES

    data = rng.standard_normal((n_vol, N_GRAYORDINATES), dtype=np.float32)
    t = np.linspace(-1, 1, n_vol, dtype=np.float32)[:, None]
    data += 100.0 + 0.8 * t + 0.5 * t ** 2       # baseline and drift the detrending must remove
    a = trim_start + MINI_DELAY
    data[a:a + 240, signal] += 3.0 * drive[:, None] * gains[None, :]
    return data


@pytest.fixture(scope="session")
def mini_cc2017(tmp_path_factory) -> MiniDataset:
    """6 training segments x 2 runs + test1 x 10 runs (245 volumes, 91282 grayordinates, int16 CIFTI) and
    32 x 32 px, 30 FPS stimuli of 240 two-second clips, marked as cc2017-sim with per-clip labels/captions.

    300 cortical vertices respond, 2 TRs late, to the luminance of a flat colour that changes every clip;
    the other vertices are noise.  Test runs 3..10 are hard links to runs 1..2 (writing is the slow part and
    test runs never enter the selection).  Builds in ~35 s.
    """
    from neuroclips_core.data import layout
    from neuroclips_core.data.cifti import write_dtseries

    root = tmp_path_factory.mktemp("mini_cc2017")
    rng = np.random.default_rng(0)
    signal = np.sort(rng.choice(layout.N_CORTEX, MINI_N_SIGNAL, replace=False))
    gains = rng.uniform(0.8, 1.2, MINI_N_SIGNAL).astype(np.float32)
    train = [f"seg{i}" for i in range(1, MINI_N_TRAIN + 1)]
    test = ["test1"]
    gt = layout.ground_truth_dir(root)
    (gt / "stimuli").mkdir(parents=True)
    (gt / "sim.json").write_text(json.dumps({"simulator_version": "test", "preset": "mini", "seed": 0,
                                             "train_segments": train, "test_segments": test}))
    labels, colour_of = {}, {}
    for seg in train + test:
        colours = colour_of[seg] = _clip_colours(rng)
        _write_stimulus(layout.stimulus_path(root, seg), colours)
        luma = colours.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        drive = (luma - luma.mean()) / luma.std()
        labels[seg] = rng.integers(0, 7, 240)
        (gt / "stimuli" / f"{seg}.json").write_text(json.dumps({
            "segment": seg, "labels": labels[seg].tolist(), "captions": [f"{seg} clip {k}" for k in range(240)],
            "straddles_cut": [False] * 240, "shots": []}))
        n_vol = layout.expected_volumes(seg)
        trim_start = layout.TRIM_RULES[n_vol][0]
        n_distinct = 2
        for r in range(1, layout.repetitions(seg) + 1):
            path = layout.run_path(root, 1, seg, r)
            if r <= n_distinct:
                write_dtseries(path, _run_data(rng, n_vol, trim_start, drive, signal, gains))
            else:
                os.link(layout.run_path(root, 1, seg, (r - 1) % n_distinct + 1), path)   # same data, no disk
    return MiniDataset(root, 1, train, test, signal, MINI_DELAY, labels, colour_of)


@pytest.fixture(scope="session")
def mini_store(mini_cc2017, tmp_path_factory) -> Path:
    """``prepare_subject`` of :func:`mini_cc2017` (16 px frames), ~25 s."""
    from neuroclips_core.data.prepare import prepare_subject

    out = tmp_path_factory.mktemp("mini_store") / "store"
    return prepare_subject(mini_cc2017.root, mini_cc2017.subject, out, frame_size=16)


@pytest.fixture(scope="session")
def tiny_root():
    """cc2017-sim's tiny preset (seed 0, subject 1) at the path quick-mode chapters use, so it is simulated once
    per machine and shared by the simulator tests, the ensure_store tests and the quick chapter runs."""
    from neuroclips_core.config import make_config
    from neuroclips_core.data.simulate import ensure_sim_dataset

    return ensure_sim_dataset(make_config(quick=True, subject=1, seed=0), progress=False)


# --------------------------------------------------------------------------------------------------------
# a small synthetic processed store (used by tests/test_perception.py and tests/test_semantics_run.py)
# --------------------------------------------------------------------------------------------------------
SYNTHETIC_SIZE, SYNTHETIC_CLIPS_PER_SEG = 32, 24


def _moving_square_clips(rng, n):
    """Frames (n, 6, 32, 32, 3) of a coloured square moving over grey, and the clip parameters the fMRI encodes
    (n, 6): x0 / 10, y0 / 10, vx, r, g, b."""
    size = SYNTHETIC_SIZE
    x0, y0 = rng.uniform(4, 20, n), rng.uniform(4, 20, n)
    vx = rng.uniform(-1.2, 1.2, n)
    colour = rng.uniform(0.2, 1.0, (n, 3))
    frames = np.full((n, 6, size, size, 3), 110, np.uint8)
    for i in range(n):
        for t in range(6):
            x = int(round(x0[i] + vx[i] * t))
            frames[i, t, int(y0[i]):int(y0[i]) + 8, max(x, 0):max(x + 8, 0)] = (colour[i] * 255).astype(np.uint8)
    return frames, np.stack([x0 / 10, y0 / 10, vx, *colour.T], 1)


def _square_caption(p) -> str:
    """A caption of one clip's parameters: colour (dominant channel), vertical place, direction of motion."""
    colour = ("red", "green", "blue")[int(np.argmax(p[3:6]))]
    shade = "light" if p[3:6].mean() > 0.6 else "dark"
    return (f"a {shade} {colour} square in the {'upper' if p[1] < 1.2 else 'lower'} half moving "
            f"{'right' if p[2] > 0 else 'left'}")


def write_synthetic_store(out, seed=0, n_voxels=40, n_train_segments=4, captions=False):
    """A processed store of moving-square clips whose fMRI is a linear mix of the clip parameters plus noise (SNR
    high enough to learn from ~100 clips): 24 clips per segment, ``n_train_segments`` training segments, one test
    segment, 32 px frames, no labels; captions null (as real data before captioning) unless ``captions``."""
    from neuroclips_core.data.store import STORE_FORMAT, Store, StoreWriter, clip_ranges

    rng = np.random.default_rng(seed)
    per_seg = SYNTHETIC_CLIPS_PER_SEG
    n_train, n_test = per_seg * n_train_segments, per_seg
    mixing = rng.standard_normal((6, n_voxels))
    with StoreWriter(out) as w:
        w.save_array("voxel_indices.npy", np.arange(n_voxels) * 3)
        for split, n, reps in (("train", n_train, 2), ("test", n_test, 10)):
            frames, params = _moving_square_clips(rng, n)
            w.save_array(f"frames_{split}.npy", frames)
            signal = (params - params.mean(0)) @ mixing
            w.save_array(f"fmri_{split}.npy", (signal[:, None] + 0.5 * rng.standard_normal((n, reps, n_voxels)))
                         .astype(np.float32))
            w.write_json(f"captions_{split}.json", [_square_caption(p) for p in params] if captions else [None] * n)
        segs = [f"seg{i + 1}" for i in range(n_train_segments)]
        w.write_json("meta.json", {"format": STORE_FORMAT, "n_train": n_train, "n_test": n_test,
                                   "with_frames": True, "has_labels": False,
                                   "train_clip_ranges": clip_ranges(segs, per_seg),
                                   "test_clip_ranges": clip_ranges(["test1"], per_seg)})
    return Store.open(out)


@pytest.fixture(scope="session")
def synthetic_store_writer():
    """:func:`write_synthetic_store`: ``writer(out, seed=0, n_voxels=40, n_train_segments=4, captions=False)``."""
    return write_synthetic_store
