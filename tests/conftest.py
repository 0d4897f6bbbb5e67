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
