"""Chapter 05's core (:mod:`neuroclips_core.fusion_run`): the judge's features and held-out training, the chains,
and the fusion's order of generation.  The whole step (a judge on reconstructed keyframes, fused videos, the
continuity scores) runs in the quick run of chapter 05 (tests/test_book.py)."""
from __future__ import annotations

import numpy as np
import pytest

from neuroclips_core.fusion_run import (SameClassMLP, chains_from, fuse_videos, held_out_probabilities,
                                        judge_features, judge_scores, neighbour_cosine, pair_features)


def test_pair_features_are_symmetric_and_unit_scaled():
    rng = np.random.default_rng(0)
    e = rng.normal(size=(5, 8)) * 10
    x, swapped = pair_features(e), pair_features(e[::-1])[::-1]
    np.testing.assert_allclose(x, swapped, atol=1e-6)               # (i, j) and (j, i) give the same features
    assert x.shape == (4, 16)
    np.testing.assert_allclose(x[:, :8].sum(1), neighbour_cosine(e), atol=1e-5)   # the product sums to the cosine
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


def test_judge_features_refuse_unknown_judges():
    with pytest.raises(ValueError, match="judge: expected one of"):
        judge_features("oracle", None, np.zeros((3, 4, 4, 3), np.uint8), None, None, None)
