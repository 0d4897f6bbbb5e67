"""Build-or-reuse of the processed store, and the chapter-00 checks of cc2017-sim, on the tiny preset."""
from __future__ import annotations

import numpy as np

from neuroclips_core.config import make_config
from neuroclips_core.data import sim_checks
from neuroclips_core.data.ensure import ensure_store
from neuroclips_core.data.simulate import load_ground_truth


def test_ensure_store_builds_once_then_reuses_and_rebuilds_on_new_settings(tiny_root, tmp_path):
    cfg = make_config(quick=True, subject=1, seed=0, run_root=tmp_path)
    store = ensure_store(cfg, progress=False)
    meta_file = store.path / "meta.json"
    first = meta_file.stat().st_mtime_ns
    assert store.meta["dataset"] == "sim" and store.has_labels and store.n_train == 6 * 240
    truth = load_ground_truth(tiny_root, 1)["responsive"]
    assert truth[store.voxel_indices].all()                      # Bonferroni: no false positives here
    again = ensure_store(cfg, progress=False)
    assert again.path == store.path and meta_file.stat().st_mtime_ns == first   # reused, not rebuilt
    other = ensure_store(cfg, progress=False, delay_trs=3)
    assert other.meta["delay_trs"] == 3 and meta_file.stat().st_mtime_ns != first


def test_test_retest_separates_responsive_from_silent_vertices(tiny_root):
    r = sim_checks.test_retest_correlations(tiny_root, 1, "test1", max_pairs=6)
    truth = load_ground_truth(tiny_root, 1)["responsive"]
    assert r.shape == (59412,)
    assert np.median(r[truth]) > 0.5 and abs(np.median(r[~truth])) < 0.05


def test_blur_uses_sigma_of_a_sixteenth_of_the_width():
    frames = np.zeros((1, 64, 64, 3), np.float32)
    frames[0, 32, 32] = 1.0
    out = sim_checks.blur(frames)[0, :, :, 0]
    # a blurred impulse is a Gaussian: its horizontal second moment is sigma^2 = (64 / 16)^2
    xs = np.arange(64) - 32
    var = (out.sum(0) * xs ** 2).sum() / out.sum()
    assert abs(np.sqrt(var) - 4.0) < 0.05


def test_probe_frames_carry_the_shot_labels():
    x, y = sim_checks.probe_frames(0, ["seg1"], size=32)
    assert x.shape == (240 * 6, 32, 32, 3) and y.shape == (240 * 6,)
    assert 0 <= y.min() and y.max() < 64 and len(np.unique(y)) > 20
