"""Chapter 05's core (:mod:`neuroclips_core.fusion_run`): the judge's features and held-out training, the chains,
and the fusion's order of generation.  The whole step (a judge on reconstructed keyframes, fused videos, the
continuity scores) runs in the quick run of chapter 05 (tests/test_book.py)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from neuroclips_core.config import make_config
from neuroclips_core.fusion_run import (CONTEXT, SameClassMLP, chains_from, context_features, decoded_class_scores,
                                        fuse_videos, held_out_probabilities, judge_probabilities, judge_scores,
                                        pair_column, pair_features, standardised, training_run_pairs)


def test_pair_features_are_symmetric_and_unit_scaled():
    rng = np.random.default_rng(0)
    e = rng.normal(size=(5, 8)) * 10
    x, swapped = pair_features(e), pair_features(e[::-1])[::-1]
    np.testing.assert_allclose(x, swapped, atol=1e-6)               # (i, j) and (j, i) give the same features
    assert x.shape == (4, 16)
    u = e / np.linalg.norm(e, axis=1, keepdims=True)
    np.testing.assert_allclose(x[:, :8].sum(1), (u[:-1] * u[1:]).sum(1), atol=1e-5)   # the product sums to the cosine
    with pytest.raises(ValueError, match="N >= 2"):
        pair_features(e[:1])


def test_chains_join_judged_pairs_up_to_three_clips():
    same = np.array([True, True, True, False, True, False])
    assert chains_from(same) == [[0, 1, 2], [3], [4, 5], [6]]
    assert chains_from(same, max_len=2) == [[0, 1], [2, 3], [4, 5], [6]]
    assert chains_from(np.zeros(3, bool)) == [[0], [1], [2], [3]]
    with pytest.raises(ValueError, match="at least 1"):
        chains_from(same, max_len=0)


def test_fuse_videos_feeds_each_clip_the_previous_fused_last_frame():
    n, f = 6, 4
    unfused = np.arange(n, dtype=np.uint8)[:, None, None, None, None] * np.ones((1, f, 2, 2, 3), np.uint8)
    calls = []

    def generate(clips, keyframes):
        calls.append((clips.tolist(), keyframes[:, 0, 0, 0].tolist()))
        return (keyframes[:, None].astype(np.int64) + 100).astype(np.uint8).repeat(f, axis=1)

    fused = fuse_videos(generate, unfused, [[0, 1, 2], [3], [4, 5]])
    assert calls == [([1, 5], [0, 4]), ([2], [100])]                # one call per position; keyframe: fused last frame
    np.testing.assert_array_equal(fused[[0, 3, 4]], unfused[[0, 3, 4]])   # chain heads stay chapter 04's videos
    assert fused[2, 0, 0, 0, 0] == 200 and fused[5, 0, 0, 0, 0] == 104


def test_held_out_judge_learns_a_separable_rule_without_seeing_the_pair():
    rng = np.random.default_rng(1)
    y = rng.random(120) < 0.6
    x = rng.normal(size=(120, 6)) + 2.5 * y[:, None]
    p = held_out_probabilities(x, y, n_folds=5)
    assert judge_scores(y, p > 0.5)["accuracy"] > 0.9
    # labels unrelated to the features: held-out accuracy stays near what guessing gives
    y_random = rng.random(120) < 0.5
    assert judge_scores(y_random, held_out_probabilities(x, y_random) > 0.5)["accuracy"] < 0.75
    with pytest.raises(ValueError, match="at least 10 pairs"):
        held_out_probabilities(x[:6], y[:6])


def test_the_mlp_refuses_one_class():
    with pytest.raises(ValueError, match="one class only"):
        SameClassMLP(3).fit(np.zeros((8, 3)), np.ones(8))


def test_judge_scores_against_the_majority():
    y = np.array([1, 1, 1, 0], bool)
    s = judge_scores(y, np.ones(4, bool))
    assert s["accuracy"] == 0.75 == s["majority_rate"] and s["balanced_accuracy"] == 0.5


def test_context_features_read_the_window_around_each_boundary():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=50), rng.normal(size=50)
    fmri = np.stack([a] * 5 + [b] * 5) + 0.05 * rng.normal(size=(10, 50))      # one change, between clips 4 and 5
    x = context_features(fmri)
    assert x.shape == (9, 6) and x.dtype == np.float32 and CONTEXT == 1
    pair = x[:, pair_column()]
    centred = fmri - fmri.mean(0)
    u = centred / np.linalg.norm(centred, axis=1, keepdims=True)
    np.testing.assert_allclose(pair, (u[:-1] * u[1:]).sum(1), atol=1e-5)       # the pair's own cosine, centred
    assert pair.argmin() == 4 and pair[4] < 0 < pair[[0, 1, 2, 3, 5, 6, 7, 8]].min()
    # the window i - 1 .. i + 2 is clamped at the run's ends: the first pair's window repeats clip 0
    np.testing.assert_allclose(x[0, 0], 1.0, atol=1e-5)
    np.testing.assert_allclose(x[-1, -1], 1.0, atol=1e-5)
    assert context_features(fmri, context=2).shape == (9, 15) and pair_column(2) == 9
    with pytest.raises(ValueError, match="non-finite"):
        context_features(np.where(np.eye(10, 50) > 0, np.nan, fmri))
    with pytest.raises(ValueError, match="at least 2 clips"):
        context_features(fmri[:1])


def test_standardised_columns():
    x = standardised(np.array([[1.0, 5.0], [3.0, 5.0]]))
    np.testing.assert_allclose(x, [[-1, 0], [1, 0]])


def _shot_store(rng, n_runs=4, clips=60, n_test=60, voxels=40, noise=0.8):
    """A store-like object whose clips come in shots of 1-5 clips, one class each, and whose fMRI is the class's
    pattern plus noise (training runs: 2 repetitions; test: 10)."""
    patterns = rng.normal(size=(8, voxels))

    def run(n, reps):
        labels = []
        while len(labels) < n:
            labels += [int(rng.integers(8))] * int(rng.integers(1, 6))
        labels = np.array(labels[:n])
        return labels, patterns[labels][:, None] + noise * rng.normal(size=(n, reps, voxels))

    train = [run(clips, 2) for _ in range(n_runs)]
    labels_test, fmri_test = run(n_test, 10)
    return SimpleNamespace(has_labels=True, labels_train=np.concatenate([t[0] for t in train]),
                           fmri_train=np.concatenate([t[1] for t in train]).astype(np.float32),
                           segment_of_train_clip=np.repeat([f"seg{k}" for k in range(n_runs)], clips),
                           train_segments=[f"seg{k}" for k in range(n_runs)], labels_test=labels_test,
                           fmri_test=fmri_test.astype(np.float32), n_test=n_test)


def test_training_run_pairs_never_straddle_two_runs():
    store = _shot_store(np.random.default_rng(3))
    x, y = training_run_pairs(store.fmri_train.mean(1), store.labels_train, store.segment_of_train_clip)
    assert x.shape == (4 * 59, 6) and y.shape == (4 * 59,)
    runs = store.labels_train.reshape(4, 60)
    expected = (runs[:, :-1] == runs[:, 1:]).ravel()
    np.testing.assert_array_equal(y, expected)


def test_decoded_class_scores_are_cross_fitted_over_runs():
    store = _shot_store(np.random.default_rng(5))
    train, test, lam = decoded_class_scores(store.fmri_train.mean(1), store.labels_train, store.segment_of_train_clip,
                                            store.fmri_test.mean(1))
    classes = np.unique(store.labels_train)
    assert train.shape == (240, len(classes)) and test.shape == (60, len(classes)) and lam > 0
    assert (classes[test.argmax(1)] == store.labels_test).mean() > 0.9            # the classes are decodable
    assert (classes[train.argmax(1)] == store.labels_train).mean() > 0.8          # out of fold, from 2 repetitions
    # out of fold: the last group's scores (run 3; the groups are runs 0-1, 2 and 3) come from a decoder that never
    # saw their labels, so relabelling that run (within the classes the others show) leaves its scores alone and
    # moves the others'
    relabelled = store.labels_train.copy()
    relabelled[180:] = np.random.default_rng(6).choice(np.unique(store.labels_train[:180]), 60)
    fixed = dict(fmri_train=store.fmri_train.mean(1), runs=store.segment_of_train_clip,
                 fmri_test=store.fmri_test.mean(1), lam=lam)
    before, _, _ = decoded_class_scores(labels_train=store.labels_train, **fixed)
    after, _, _ = decoded_class_scores(labels_train=relabelled, **fixed)
    assert np.array_equal(np.unique(relabelled), classes)                          # the same class columns
    np.testing.assert_allclose(after[180:], before[180:], atol=1e-4)
    assert not np.allclose(after[:180], before[:180], atol=1e-3)
    with pytest.raises(ValueError, match="at least 3 training runs"):
        decoded_class_scores(store.fmri_train.mean(1)[:120], store.labels_train[:120],
                             store.segment_of_train_clip[:120], store.fmri_test.mean(1))


def test_fmri_class_judge_learns_shot_changes_from_the_training_runs():
    rng = np.random.default_rng(4)
    store = _shot_store(rng)
    cfg = make_config(profile="sim", subject=1, seed=0)
    truth, prob, judged = judge_probabilities(cfg, store, "fmri_class", 60, device="cpu")
    assert truth.shape == prob.shape == (59,)
    assert judge_scores(truth, prob > 0.5)["accuracy"] > 0.9
    assert "236 neighbouring pairs of the 4 training runs" in judged["trained_on"]
    # training labels unrelated to the fMRI: the judge learns nothing that transfers
    shuffled = SimpleNamespace(**{**vars(store), "labels_train": rng.permutation(store.labels_train)})
    truth, prob, _ = judge_probabilities(cfg, shuffled, "fmri_class", 60, device="cpu")
    assert judge_scores(truth, prob > 0.5)["accuracy"] < 0.8


def test_judges_refuse_unknown_names():
    with pytest.raises(ValueError, match="judge: expected one of"):
        judge_probabilities(make_config(profile="sim", subject=1, seed=0), None, "oracle", 10)
