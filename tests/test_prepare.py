"""neuroclips_core.data.prepare: trimming, delay, detrending, reproducibility, selection, layout checks, and
``prepare_subject`` end to end on a minimal raw dataset (tests/conftest.py::mini_cc2017)."""
from __future__ import annotations

import json
import shutil
import zlib

import numpy as np
import pytest
from scipy import stats

from neuroclips_core.data import layout, prepare
from neuroclips_core.data.cifti import CiftiError, write_dtseries
from neuroclips_core.data.prepare import (DataLayoutError, PrepareError, clip_features, delay_profile,
                                          detrend_zscore, discover_segments, fisher_z, paired_window,
                                          pearson_columns, preprocess_run, prepare_subject, select_voxels)
from neuroclips_core.data.store import Store, StoreError


# ---------------------------------------------------------------------------------------- trim and delay
@pytest.mark.parametrize("n_vol,trim_start", [(245, 1), (246, 2)])
@pytest.mark.parametrize("delay", [0, 1, 2, 3, 4])
def test_paired_window_gives_each_clip_raw_volume_start_plus_k_plus_delay(n_vol, trim_start, delay):
    data = np.arange(n_vol)[:, None] * np.ones((1, 3))       # data[t] = t: the value says which volume it is
    a, b = paired_window(n_vol, delay)
    clips = data[a:b]
    assert clips.shape == (240, 3)
    np.testing.assert_array_equal(clips[:, 0], trim_start + np.arange(240) + delay)
    assert clips[-1, 0] <= n_vol - 1 - (4 - delay)            # never reads past the trailing volumes


def test_paired_window_rejects_impossible_delays_and_run_lengths():
    with pytest.raises(PrepareError, match="between 0 and 4.*got 5"):
        paired_window(245, 5)
    with pytest.raises(PrepareError, match="got -1"):
        paired_window(246, -1)
    with pytest.raises(PrepareError, match=r"one of \[245, 246\] volumes.*found 240"):
        paired_window(240, 2)


# ---------------------------------------------------------------------------------------- detrend, z-score
def test_detrend_removes_quartic_exactly_and_zscores():
    rng = np.random.default_rng(0)
    t = np.linspace(-1, 1, 240)[:, None]
    quartic = 500 + 3 * t - 7 * t ** 2 + 2 * t ** 3 + 9 * t ** 4
    noise = rng.standard_normal((240, 50))
    out = detrend_zscore(quartic * rng.uniform(0.5, 2, 50) + noise)
    np.testing.assert_allclose(out, detrend_zscore(noise), atol=1e-5)   # the trend contributes nothing
    np.testing.assert_allclose(out.mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(out.std(0, ddof=1), 1, atol=1e-5)
    assert out.dtype == np.float32


def test_detrend_zero_variance_gives_zero_and_keeps_higher_orders():
    t = np.linspace(-1, 1, 240)
    x = np.stack([np.full(240, 7.0), 5 + t ** 4, np.zeros(240), t ** 5, t], axis=1)
    out = detrend_zscore(x)
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out[:, :3], 0)        # constant, pure quartic, all-zero -> 0, not NaN
    assert out[:, 3].std(ddof=1) == pytest.approx(1, abs=1e-5)   # a 5th-order term is not a "trend"
    np.testing.assert_array_equal(out[:, 4], 0)


# ---------------------------------------------------------------------------------- reproducibility, t-test
def test_pearson_columns_and_fisher_z():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((240, 4)), rng.standard_normal((240, 4))
    b[:, 0] = a[:, 0] * 2 + 1
    b[:, 1] = -a[:, 1]
    b[:, 3] = 5.0                                        # constant: r defined as 0
    r = pearson_columns(a, b)
    assert r[0] == pytest.approx(1) and r[1] == pytest.approx(-1)
    assert r[2] == pytest.approx(np.corrcoef(a[:, 2], b[:, 2])[0, 1]) and r[3] == 0
    z = fisher_z(np.array([0.5, 1.0, -1.0, 0.0]))
    assert z[0] == pytest.approx(0.5 * np.log(3)) and z[3] == 0
    assert z[1] == pytest.approx(np.arctanh(0.999999)) and z[2] == -z[1] and np.isfinite(z).all()


def _synthetic_zmat(n_seg=18):
    rng = np.random.default_rng(2)
    z = rng.normal(0, 0.065, (59412, n_seg))             # sampling sd of Fisher z for 240 volumes
    z[:100] += 0.3                                        # reproducible vertices
    z[100:200] -= 0.3                                     # anti-reproducible: no stimulus meaning
    return z


def test_select_voxels_one_sided_bonferroni():
    z = _synthetic_zmat()
    sel = select_voxels(z)
    assert sel["threshold_p"] == pytest.approx(0.05 / 59412) and sel["df"] == 17
    np.testing.assert_array_equal(np.flatnonzero(sel["mask"]), np.arange(100))   # positives in, rest out
    ref = stats.ttest_1samp(z[:300], 0, axis=1, alternative="greater")
    np.testing.assert_allclose(sel["t"][:300], ref.statistic, rtol=1e-10)
    np.testing.assert_allclose(sel["p"][:300], ref.pvalue, rtol=1e-6)


def test_select_voxels_two_sided_keeps_negative_reproducibility():
    z = _synthetic_zmat()
    sel = select_voxels(z, one_sided=False)
    np.testing.assert_array_equal(np.flatnonzero(sel["mask"]), np.arange(200))
    np.testing.assert_allclose(sel["p"][:300], stats.ttest_1samp(z[:300], 0, axis=1).pvalue, rtol=1e-6)


def test_select_voxels_alpha_and_degenerate_input():
    z = _synthetic_zmat(n_seg=3)
    assert select_voxels(z)["n_selected"] < select_voxels(z, alpha=0.05 * 59412 * 0.01)["n_selected"]
    with pytest.raises(PrepareError, match="at least 2 segments"):
        select_voxels(z[:, :1])
    flat = np.zeros((10, 4))
    flat[0] = 0.2                                        # identical positive z in every segment
    sel = select_voxels(flat)
    assert sel["mask"][0] and not sel["mask"][1:].any() and np.isfinite(sel["p"]).all()


# ------------------------------------------------------------------------------------------------ layout
def _touch_layout(root, n_train=3, n_test=2, stimuli=True, subject=1):
    """cc2017 folder structure with empty files (enough for discover_segments, which reads names only)."""
    for seg in [f"seg{i}" for i in range(1, n_train + 1)] + [f"test{i}" for i in range(1, n_test + 1)]:
        for r in range(1, layout.repetitions(seg) + 1):
            p = layout.run_path(root, subject, seg, r)
            p.parent.mkdir(parents=True, exist_ok=True)
            p.touch()
        if stimuli:
            s = layout.stimulus_path(root, seg)
            s.parent.mkdir(parents=True, exist_ok=True)
            s.touch()
    return root


def test_discover_segments_sorts_numerically(tmp_path):
    _touch_layout(tmp_path, n_train=11, n_test=2)
    train, test = discover_segments(tmp_path, 1)
    assert train == [f"seg{i}" for i in range(1, 12)] and test == ["test1", "test2"]


def test_missing_segment_folder_with_stimulus(tmp_path):
    _touch_layout(tmp_path, n_train=3)
    layout.stimulus_path(tmp_path, "seg4").touch()       # a stimulus whose fMRI folder is absent
    with pytest.raises(DataLayoutError, match=r"fmri/seg4: segment folder missing, although .*seg4\.mp4 exists"):
        discover_segments(tmp_path, 1)


def test_gap_in_segment_folders(tmp_path):
    _touch_layout(tmp_path, n_train=3, stimuli=False)
    shutil.rmtree(layout.subject_dir(tmp_path, 1) / "fmri" / "seg2")
    with pytest.raises(DataLayoutError, match=r"fmri/seg2: segment folder missing \(cc2017 numbers segments from 1"):
        discover_segments(tmp_path, 1)


def test_stimulus_missing_for_segment(tmp_path):
    _touch_layout(tmp_path)
    layout.stimulus_path(tmp_path, "test2").unlink()
    with pytest.raises(DataLayoutError, match=r"stimuli/test2\.mp4: stimulus missing for segment test2"):
        discover_segments(tmp_path, 1)


def test_missing_and_extra_runs(tmp_path):
    _touch_layout(tmp_path)
    layout.run_path(tmp_path, 1, "test1", 7).unlink()
    with pytest.raises(DataLayoutError, match=r"test1/cifti: expected exactly 10 runs .*missing \[7\]"):
        discover_segments(tmp_path, 1)
    layout.run_path(tmp_path, 1, "test1", 7).touch()
    layout.run_path(tmp_path, 1, "seg2", 3).touch()
    with pytest.raises(DataLayoutError, match=r"seg2/cifti: expected exactly 2 runs .*unexpected \[3\]"):
        discover_segments(tmp_path, 1)


def test_missing_dataset_subject_and_stimuli(tmp_path):
    with pytest.raises(DataLayoutError, match=r"video_fmri_dataset: folder not found"):
        discover_segments(tmp_path, 1)
    _touch_layout(tmp_path, stimuli=False)
    with pytest.raises(DataLayoutError, match=r"subject2/fmri: folder not found.*subjects present: \['subject1'\]"):
        discover_segments(tmp_path, 2)
    assert discover_segments(tmp_path, 1)[0] == ["seg1", "seg2", "seg3"]      # fMRI-only is fine...
    with pytest.raises(DataLayoutError, match=r"stimuli: no stimulus videos.*--no-frames"):
        discover_segments(tmp_path, 1, require_stimuli=True)                  # ...unless frames are wanted


# --------------------------------------------------------------------------------------------- bad runs
def test_run_with_unexpected_number_of_volumes(tmp_path):
    path = tmp_path / "seg1_1_Atlas.dtseries.nii"
    write_dtseries(path, np.zeros((12, layout.N_GRAYORDINATES), np.float32))
    with pytest.raises(CiftiError, match=r"seg1_1_Atlas\.dtseries\.nii: expected 245 volumes.*found 12"):
        preprocess_run(path, "seg1")


def test_run_that_is_not_cifti(tmp_path):
    path = tmp_path / "test3_4_Atlas.dtseries.nii"
    path.write_bytes(np.random.default_rng(0).bytes(100_000))
    with pytest.raises(CiftiError, match=r"test3_4_Atlas\.dtseries\.nii: not a readable CIFTI-2 file"):
        preprocess_run(path, "test3")


def test_run_with_nans(tmp_path):
    data = np.zeros((245, layout.N_GRAYORDINATES), np.float32)
    data[17, 1234] = np.nan
    path = tmp_path / "seg1_2_Atlas.dtseries.nii"
    write_dtseries(path, data, dtype=np.float32)
    with pytest.raises(CiftiError, match=r"seg1_2_Atlas\.dtseries\.nii: 1 NaN/inf values \(first at volume 17, "
                                         r"grayordinate 1234\); expected finite"):
        preprocess_run(path, "seg1")


# ------------------------------------------------------------------------------------------------ features
def test_clip_features():
    frames = np.zeros((2, 6, 16, 16, 3), np.uint8)
    frames[0] = (255, 0, 0)
    frames[1, ::2, :, :8] = 255                        # flicker in the left half of clip 1
    f = clip_features(frames)
    assert f.shape == (2, 68)
    np.testing.assert_allclose(f[0, :64], 0.299, atol=1e-6)
    np.testing.assert_allclose(f[0, 64:67], [1, 0, 0]) and f[0, 67] == 0
    assert f[1, 0] == pytest.approx(0.5, abs=1e-6) and f[1, 7] == 0 and f[1, 67] > 0.4


# ----------------------------------------------------------------------------------- orchestration (fast)
def _fake_preprocess(n_signal=50, fail_on=None):
    """Stand-in for preprocess_run on a touched layout, a deterministic function of the run's file name:
    columns < n_signal repeat across the repetitions of a segment, the rest is noise."""
    calls = []

    def fake(path, segment, delay_trs=2, columns=None):
        calls.append(path.name)
        if fail_on and path.name == fail_on:
            raise RuntimeError("simulated crash while reading " + path.name)
        shared = np.random.default_rng(layout.segment_sort_key(segment)).standard_normal((240, n_signal))
        rng = np.random.default_rng(zlib.crc32(path.name.encode()))
        x = rng.random((240, layout.N_CORTEX), dtype=np.float32) - 0.5          # uniform noise: cheaper
        x[:, :n_signal] = shared + 0.6 * x[:, :n_signal]
        return x if columns is None else x[:, columns]

    return fake, calls


@pytest.mark.parametrize("cache_runs,n_calls", [(True, 12 + 4), (False, 12 + 12 + 4)])
def test_prepare_subject_crash_leaves_no_store_and_no_temp(tmp_path, monkeypatch, cache_runs, n_calls):
    root = _touch_layout(tmp_path / "data", n_train=6, n_test=1, stimuli=False)
    fake, calls = _fake_preprocess(fail_on="test1_4_Atlas.dtseries.nii")
    monkeypatch.setattr(prepare, "preprocess_run", fake)
    with pytest.raises(RuntimeError, match="simulated crash"):
        prepare_subject(root, 1, tmp_path / "runs" / "store", with_frames=False, cache_runs=cache_runs)
    # pass 1 reads the 12 training runs; pass 2 reads them again only without the cache; the 4th test run fails
    assert len(calls) == n_calls
    assert list((tmp_path / "runs").iterdir()) == []          # no store, no temp store, no run cache


def test_prepare_subject_orchestration_real_data_without_frames(tmp_path, monkeypatch):
    root = _touch_layout(tmp_path / "data", n_train=6, n_test=2, stimuli=False)
    fake, _ = _fake_preprocess()
    monkeypatch.setattr(prepare, "preprocess_run", fake)
    s = Store.open(prepare_subject(root, 1, tmp_path / "store", with_frames=False))
    np.testing.assert_array_equal(s.voxel_indices, np.arange(50))
    assert s.fmri_train.shape == (1440, 2, 50) and s.fmri_test.shape == (480, 10, 50) and not s.has_frames
    assert s.meta["dataset"] == "real" and s.captions_train == [None] * 1440 and "pending" in s.meta["captions"]
    assert s.meta["frame_size"] is None and s.meta["runs"]["test2"]["trim"] == [2, 4]
    assert s.meta["runs"]["test2"]["paired_raw_volumes"] == [4, 244]
    # the run cache changes where pass 2 reads from, not what it stores
    fake, _ = _fake_preprocess()
    monkeypatch.setattr(prepare, "preprocess_run", fake)
    s2 = Store.open(prepare_subject(root, 1, tmp_path / "store2", with_frames=False, cache_runs=False))
    np.testing.assert_array_equal(s2.fmri_train, s.fmri_train)
    np.testing.assert_array_equal(s2.fmri_test, s.fmri_test)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "store", "store2"]


def test_prepare_subject_nothing_selected(tmp_path, monkeypatch):
    root = _touch_layout(tmp_path / "data", n_train=3, n_test=1, stimuli=False)
    fake, _ = _fake_preprocess(n_signal=1)
    monkeypatch.setattr(prepare, "preprocess_run", fake)
    with pytest.raises(PrepareError, match=r"no vertex passed the one-sided t-test across 3 training segments"):
        prepare_subject(root, 1, tmp_path / "store", with_frames=False)
    assert not (tmp_path / "store").exists()


# ------------------------------------------------------------------------------------ end to end (slow)
def test_prepare_subject_end_to_end(mini_cc2017, mini_store):
    ds = mini_cc2017
    s = Store.open(mini_store)
    np.testing.assert_array_equal(s.voxel_indices, ds.signal)          # exactly the driven vertices
    n_tr, n_te, v = 240 * len(ds.train), 240 * len(ds.test), len(ds.signal)
    assert s.fmri_train.shape == (n_tr, 2, v) and s.fmri_test.shape == (n_te, 10, v)
    assert s.frames_train.shape == (n_tr, 6, 16, 16, 3) and s.frames_test.shape == (n_te, 6, 16, 16, 3)
    # every stored window is z-scored per vertex, segment by segment
    seg3 = np.asarray(s.fmri_train[480:720, 1])
    np.testing.assert_allclose(seg3.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(seg3.std(0, ddof=1), 1, atol=1e-4)
    # the stored response of clip k is the (2-TR delayed) response to clip k's stimulus
    luma = ds.colours["seg3"].astype(float) @ [0.299, 0.587, 0.114]
    assert np.corrcoef(luma, seg3.mean(1))[0, 1] > 0.9
    # frames: clip k of segment i shows that clip's colour; labels and captions follow the same order
    for i, seg in enumerate(ds.train):
        mean_colour = s.frames_train[i * 240:(i + 1) * 240].mean(axis=(1, 2, 3))
        assert np.abs(mean_colour - ds.colours[seg]).max() < 8
    np.testing.assert_array_equal(s.labels_train, np.concatenate([ds.labels[x] for x in ds.train]))
    np.testing.assert_array_equal(s.labels_test, ds.labels["test1"])
    assert s.captions_train[241] == "seg2 clip 1" and s.captions_test[0] == "test1 clip 0"


def test_prepare_subject_meta_and_stats(mini_cc2017, mini_store):
    meta = json.loads((mini_store / "meta.json").read_text())
    assert meta["dataset"] == "sim" and meta["sim"]["preset"] == "mini"
    assert meta["delay_trs"] == 2 and meta["window"] == "raw[start+delay : start+delay+240]"
    assert meta["runs"]["seg1"]["trim"] == [1, 4] and meta["runs"]["seg1"]["paired_raw_volumes"] == [3, 243]
    assert meta["frame_offsets"] == [5, 15, 25, 35, 45, 55] and meta["frame_size"] == 16
    sel = meta["selection"]
    assert sel["n_selected"] == 300 and sel["one_sided"] and sel["df"] == 5 and sel["n_tests"] == 59412
    assert meta["train_clip_ranges"]["seg2"] == [240, 480] and meta["n_train"] == 1440 and meta["n_test"] == 240
    assert set(meta["timings"]) == {"pass1_reproducibility", "pass2_train", "test", "frames"}
    zmat, t, p = (np.load(mini_store / f) for f in ("zmat.npy", "tstat.npy", "pvalue.npy"))
    assert zmat.shape == (59412, 6) and t.shape == p.shape == (59412,)
    assert zmat[mini_cc2017.signal].mean() > 1.0 and abs(np.delete(zmat, mini_cc2017.signal, 0).mean()) < 0.01
    assert (p[mini_cc2017.signal] < sel["threshold_p"]).all()
    assert [x.name for x in mini_store.parent.iterdir()] == ["store"]     # no temp folder left beside it
    assert Store.open(mini_store).train_val_split(0.1)[1].tolist() == list(range(1200, 1440))


def test_delay_profile_peaks_at_true_delay(mini_cc2017, mini_store):
    s = Store.open(mini_store)
    # three segments keep it quick; frames given in the store's training order (seg1, seg2, seg3 first)
    prof = delay_profile(mini_cc2017.root, 1, s.voxel_indices, shifts=range(0, 5), frames=s.frames_train,
                         segments=mini_cc2017.train[:3], max_voxels=100)
    assert prof["best_shift"] == mini_cc2017.delay_trs == 2 and prof["n_voxels"] == 100
    assert prof["mean_r"][2] > 0.8 and np.delete(prof["mean_r"], 2).max() < 0.3
    assert prof["fold_r"].shape == (5, 3)
    with pytest.raises(PrepareError, match="between 0 and 4"):
        delay_profile(mini_cc2017.root, 1, s.voxel_indices[:5], shifts=[5], frames=s.frames_train)


def test_prepare_subject_refuses_unrelated_out_before_working(tmp_path, monkeypatch):
    root = _touch_layout(tmp_path / "data", stimuli=False)
    fake, calls = _fake_preprocess()
    monkeypatch.setattr(prepare, "preprocess_run", fake)
    with pytest.raises(StoreError, match="not a processed store"):
        prepare_subject(root, 1, root, with_frames=False)          # --out pointed at the dataset itself
    assert calls == []
