"""neuroclips_core.metrics_semantic / metrics_table: N-way top-k against its chance levels and the field's explicit
draw, the 8 -> 3 FPS alignment, CLIP-pcc, retrieval, the model wrappers on tiny models, and the Table 1 layout."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from neuroclips_core import metrics as M
from neuroclips_core.data.layout import FRAME_OFFSETS, STIMULUS_FPS
from neuroclips_core.pipelines.blurry import interpolate_frames
from neuroclips_core.zoo import tiny


def _random_probabilities(seed, n_items, n_classes=1000):
    rng = np.random.default_rng(seed)
    p = rng.random((n_items, n_classes))
    return p / p.sum(-1, keepdims=True)


# ------------------------------------------------------------------------------------------------- N-way
@pytest.mark.parametrize("n_way, target, tolerance", [(2, 0.75, 0.02), (50, 0.058, 0.01)])
def test_random_predictor_scores_the_issues_chance_levels(n_way, target, tolerance):
    pred, gt = _random_probabilities(1, 3000), _random_probabilities(2, 3000)
    result = M.n_way_accuracy(pred, gt, n_way=n_way, seed=0)
    assert abs(result.mean - target) < tolerance
    # the reported chance is the simulated random score, to a few of its standard errors (across items: each
    # item's difficulty is itself random, so the spread is wider than 300000 independent trials would have)
    assert abs(result.mean - result.chance) < 4 * result.sem
    assert abs(result.expected - result.chance) < 4 * result.sem
    assert result.chance == pytest.approx(3 / (n_way + 2))


def test_top1_rule_has_chance_one_over_n():
    pred, gt = _random_probabilities(3, 3000, 100), _random_probabilities(4, 3000, 100)
    result = M.n_way_accuracy(pred, gt, n_way=10, gt_top=1, seed=0)
    assert result.chance == pytest.approx(0.1)
    assert abs(result.mean - 0.1) < 0.005


@pytest.mark.parametrize("n_way", [2, 50])
def test_perfect_predictor_scores_one(n_way):
    gt = _random_probabilities(5, 200)
    result = M.n_way_accuracy(gt.copy(), gt, n_way=n_way)
    assert result.mean == 1.0 and result.expected == 1.0 and result.se == 0.0


def test_a_constant_prediction_ties_and_fails():
    gt = _random_probabilities(6, 50, 20)
    assert M.n_way_accuracy(np.full_like(gt, 1 / 20), gt, n_way=2).mean == 0.0


def test_fixed_seed_gives_identical_scores_and_another_seed_other_draws():
    pred, gt = _random_probabilities(7, 300, 100), _random_probabilities(8, 300, 100)
    a, b = M.n_way_accuracy(pred, gt, 50, seed=11), M.n_way_accuracy(pred, gt, 50, seed=11)
    c = M.n_way_accuracy(pred, gt, 50, seed=12)
    np.testing.assert_array_equal(a.per_item, b.per_item)
    assert a.mean == b.mean and not np.array_equal(a.per_item, c.per_item)


def test_binomial_standard_error():
    assert M.binomial_se(0.5, 100) == pytest.approx(0.05)
    assert M.binomial_se(0.75, 100) == pytest.approx(np.sqrt(0.75 * 0.25 / 100))
    pred, gt = _random_probabilities(9, 400, 60), _random_probabilities(10, 400, 60)
    result = M.n_way_accuracy(pred, gt, 2, trials=40)
    p = result.per_item
    assert result.se == pytest.approx(np.mean(np.sqrt(p * (1 - p) / 40)))
    assert result.sem == pytest.approx(p.std() / np.sqrt(p.size))


def _explicit_draw(pred, gt, n_way, trials, rng, gt_top=3):
    """The field's loop (field-and-evaluation.md §2.2), written out: draw N-1 classes from outside the GT's top-3,
    succeed if any GT class beats all of them."""
    out = []
    for p, g in zip(pred, gt):
        gt_classes = np.argsort(g)[-gt_top:]
        others = np.setdiff1d(np.arange(len(p)), gt_classes)
        wins = 0
        for _ in range(trials):
            distractors = rng.choice(others, n_way - 1, replace=False)
            wins += any(p[c] > p[distractors].max() for c in gt_classes)
        out.append(wins / trials)
    return np.array(out)


def test_hypergeometric_draw_matches_the_explicit_draw_of_distractors():
    # items with every level of difficulty: the prediction is the ground truth plus noise of growing strength
    rng = np.random.default_rng(13)
    gt = _random_probabilities(14, 24, 40)
    pred = gt + rng.random(gt.shape) * np.linspace(0, 0.1, 24)[:, None]
    fast = M.n_way_accuracy(pred, gt, n_way=10, trials=3000, seed=0)
    explicit = _explicit_draw(pred, gt, 10, 3000, np.random.default_rng(0))
    assert 0.1 < explicit.mean() < 0.9                                 # the cases are not all trivial
    np.testing.assert_allclose(fast.per_item, explicit, atol=0.04)
    assert fast.expected == pytest.approx(explicit.mean(), abs=0.01)


def test_frame_level_items_keep_their_shape():
    pred, gt = _random_probabilities(15, 12, 30).reshape(4, 3, 30), _random_probabilities(16, 12, 30).reshape(4, 3, 30)
    result = M.n_way_accuracy(pred, gt, 2)
    assert result.per_item.shape == (4, 3)
    summary = result.as_dict()
    assert summary["n_items"] == 12 and len(summary["per_frame"]) == 3 and summary["chance"] == 0.75


def test_n_way_refuses_more_distractors_than_classes():
    p = _random_probabilities(17, 5, 20)
    with pytest.raises(ValueError, match="distractors"):
        M.n_way_accuracy(p, p, n_way=50)
    with pytest.raises(ValueError, match="one shape"):
        M.n_way_accuracy(p, p[:, :10], n_way=2)


# --------------------------------------------------------------------------------------------- alignment
def test_alignment_rules_pick_the_right_frames():
    np.testing.assert_array_equal(M.aligned_frame_indices(16, 6, "anchors"), [0, 3, 6, 9, 12, 15])
    np.testing.assert_array_equal(M.aligned_frame_indices(16, 6, "timestamps"), [1, 4, 7, 9, 12, 15])
    np.testing.assert_array_equal(M.aligned_frame_indices(16, 6, "neurons"), [4, 6, 8, 10, 12, 14])
    for rule in M.ALIGNMENT_RULES:
        for n_gen in (16, 24, 32):
            idx = M.aligned_frame_indices(n_gen, 6, rule)
            assert len(idx) == 6 and idx.min() >= 0 and idx.max() < n_gen and np.all(np.diff(idx) > 0)


def test_timestamp_rule_takes_the_generated_frame_nearest_each_stored_frame():
    gt_seconds = np.array(FRAME_OFFSETS) / STIMULUS_FPS                  # frames 5, 15, ..., 55 at 30 FPS
    generated_seconds = np.arange(16) / 8                                # 16 frames at 8 FPS over 2 s
    nearest = np.abs(generated_seconds[None] - gt_seconds[:, None]).argmin(1)
    np.testing.assert_array_equal(M.aligned_frame_indices(16, 6, "timestamps"), nearest)


def test_anchor_rule_recovers_the_frames_the_blurry_interpolation_kept():
    frames = np.random.default_rng(18).integers(0, 256, (2, 6, 8, 8, 3), dtype=np.uint8)
    np.testing.assert_array_equal(M.align_to_ground_truth(interpolate_frames(frames, 16)), frames)


def test_alignment_rejects_unknown_rules_and_too_few_frames():
    with pytest.raises(ValueError, match="unknown rule"):
        M.aligned_frame_indices(16, 6, "middle")
    with pytest.raises(ValueError, match="n_generated >= 12"):
        M.aligned_frame_indices(10, 6, "neurons")


# ---------------------------------------------------------------------------------------------- CLIP-pcc
def test_clip_pcc_of_a_constant_video_is_one():
    e = np.repeat(np.random.default_rng(19).normal(size=(3, 1, 64)), 6, axis=1)
    np.testing.assert_allclose(M.clip_pcc(e, "adjacent"), 1.0)
    np.testing.assert_allclose(M.clip_pcc(e, "all"), 1.0)


def test_clip_pcc_of_independent_random_embeddings_is_near_zero():
    e = np.random.default_rng(20).normal(size=(200, 6, 512))
    scores = M.clip_pcc_scores(e)
    assert abs(scores["clip_pcc_adjacent"]["mean"]) < 0.01 and abs(scores["clip_pcc_all_pairs"]["mean"]) < 0.01


def test_adjacent_and_all_pairs_differ_as_defined():
    # a frame sequence turning by 60 degrees a step: adjacent cosines 0.5; all pairs (0.5, -0.5, 0.5) -> 1/6
    angles = np.deg2rad([0, 60, 120])
    e = np.stack([np.cos(angles), np.sin(angles)], -1)[None] * 3.0       # scale must not matter
    assert M.clip_pcc(e, "adjacent")[0] == pytest.approx(0.5)
    assert M.clip_pcc(e, "all")[0] == pytest.approx(1 / 6)


def test_adjacent_cosines_locate_a_jump_between_frames():
    e = np.stack([np.eye(4)[[0, 0, 1, 1]], np.eye(4)[[2, 2, 2, 2]]]) * 2.0        # video 0 cuts between frames 1, 2
    np.testing.assert_allclose(M.adjacent_cosines(e), [[1, 0, 1], [1, 1, 1]])
    np.testing.assert_allclose(M.clip_pcc(e, "adjacent"), [2 / 3, 1])
    with pytest.raises(ValueError, match="T >= 2"):
        M.adjacent_cosines(e[:, :1])


# --------------------------------------------------------------------------------------------- retrieval
def test_retrieval_of_identical_embeddings_is_perfect():
    e = np.random.default_rng(21).normal(size=(1200, 32))
    r = M.retrieval_top1(e, e)
    assert (r.forward, r.backward, r.pool_size, r.n_parts) == (1.0, 1.0, 300, 4)
    assert r.chance == pytest.approx(1 / 300)


def test_retrieval_of_shuffled_pairs_is_near_chance():
    rng = np.random.default_rng(22)
    e = rng.normal(size=(1200, 32))
    r = M.retrieval_top1(e, e[rng.permutation(1200)])
    assert r.forward < 0.02 and r.backward < 0.02


def test_retrieval_pool_shrinks_to_a_small_set():
    e = np.random.default_rng(23).normal(size=(100, 16))
    r = M.retrieval_top1(e, e, pool_size=300)
    assert (r.pool_size, r.n_parts, r.chance) == (100, 1, 0.01)


def test_retrieval_parts_disjoint_when_they_fit_random_otherwise():
    parts = M.retrieval_parts(1200, 300, 4, seed=0)
    assert [len(p) for p in parts] == [300] * 4 and len(np.unique(np.concatenate(parts))) == 1200
    overlapping = M.retrieval_parts(500, 300, 4, seed=0)
    assert [len(set(p)) for p in overlapping] == [300] * 4 and len(np.unique(np.concatenate(overlapping))) <= 500
    same_seed = M.retrieval_parts(1200, 300, 4, seed=3)[0], M.retrieval_parts(1200, 300, 4, seed=3)[0]
    np.testing.assert_array_equal(*same_seed)


def test_retrieval_directions_are_brain_to_image_and_back():
    brain = np.array([[1.0, 0.0], [0.8, 0.6]])
    image = np.array([[1.0, 0.0], [1.0, 0.01]])
    r = M.retrieval_top1(brain, image)
    # brain 1 finds image 1 (0.806 > 0.8), but image 1 finds brain 0 (0.99995 > 0.806)
    assert (r.forward, r.backward) == (1.0, 0.5)


# ------------------------------------------------------------------------------------------------ wrappers
def _uint8_videos(n=2, f=6, size=40, seed=24):
    return np.random.default_rng(seed).integers(0, 256, (n, f, size, size, 3), dtype=np.uint8)


def test_frame_classifier_wrapper_returns_probabilities_per_frame():
    classifier = tiny.tiny_frame_classifier()
    videos = _uint8_videos()
    probs = M.frame_class_probabilities(classifier, videos)
    assert probs.shape == (2, 6, tiny.TINY_NUM_LABELS)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    from neuroclips_core.zoo.train.classifiers import predict_frames
    frames = torch.from_numpy(videos.reshape(-1, 40, 40, 3)).permute(0, 3, 1, 2).float() / 255
    np.testing.assert_array_equal(probs.reshape(12, -1).argmax(-1), predict_frames(classifier, frames).numpy())


def test_video_classifier_wrapper_rebuilds_videomae_for_the_frame_count():
    classifier = tiny.tiny_video_classifier(num_frames=16)
    assert M.video_class_probabilities(classifier, _uint8_videos(f=6)).shape == (2, tiny.TINY_NUM_LABELS)
    videos16 = _uint8_videos(f=16)
    probs16 = M.video_class_probabilities(classifier, videos16)
    np.testing.assert_allclose(probs16.sum(-1), 1.0, rtol=1e-5)
    # the rebuilt 16-frame model is the original: same weights, same position table
    from neuroclips_core.zoo.train.classifiers import clip_probabilities, videomae_for_num_frames
    rebuilt = videomae_for_num_frames(tiny.tiny_video_classifier(num_frames=6), 16)
    np.testing.assert_allclose(clip_probabilities(rebuilt, videos16).numpy(), probs16, atol=1e-6)


def test_clip_wrapper_returns_one_embedding_per_frame():
    from neuroclips_core.zoo.unclip_sampling import image_embeddings

    clip = tiny.tiny_clip()
    videos = _uint8_videos(f=3)
    e = M.clip_video_embeddings(clip, videos)
    assert e.shape == (2, 3, tiny.TINY_CLIP_CFG["embed_dim"])
    frames = torch.from_numpy(videos[1]).permute(0, 3, 1, 2).float() / 255
    np.testing.assert_allclose(e[1], image_embeddings(clip, frames).numpy(), atol=1e-5)
    assert M.clip_pcc(e).shape == (2,)


def test_wrappers_refuse_float_videos():
    with pytest.raises(ValueError, match="uint8 videos"):
        M.clip_video_embeddings(tiny.tiny_clip(), np.zeros((1, 2, 8, 8, 3), np.float32))


# ------------------------------------------------------------------------------------------------ Table 1
def test_table1_frame_puts_ours_beside_the_paper_with_recipes():
    pred, gt = _random_probabilities(25, 50, 100), _random_probabilities(26, 50, 100)
    results = {"frame_2way": M.n_way_accuracy(pred, gt, 2), "video_50way": {"mean": 0.1234, "se": 0.011},
               "ssim_s1": {"mean": 0.2, "std": 0.05}, "ssim_s2": {"mean": 0.3, "std": 0.06}, "psnr": 9.5,
               "clip_pcc_adjacent": {"mean": 0.9, "std": 0.1}}
    table = M.table1_frame(results, M.PAPER_TABLE1["subject 1"], ssim="ssim_s1", paper_label="paper")
    assert list(table.index) == ["ours", "paper", "chance", "recipe"]
    assert table.shape == (4, 7) and table.columns.nlevels == 3
    assert table.loc["ours", ("Video-based", "Semantic-level", "50-way")] == "0.123 ± 0.01"
    assert table.loc["ours", ("Frame-based", "Pixel-level", "SSIM")] == "0.200 ± 0.05"
    assert table.loc["ours", ("Video-based", "Semantic-level", "2-way")] == "-"
    assert table.loc["paper", ("Frame-based", "Semantic-level", "50-way")] == "0.187 ± 0.01"
    assert M.PAPER_TABLE1["average"]["psnr"] == (9.211, 1.46) and M.PAPER_TABLE1["subject 3"]["clip_pcc"] == (0.735, 0.2)
    assert table.loc["chance", ("Frame-based", "Semantic-level", "2-way")] == "0.750"
    assert "S1" in table.loc["recipe", ("Frame-based", "Pixel-level", "SSIM")]
    assert "adjacent" in table.loc["recipe", ("Video-based", "ST-level", "CLIP-pcc")]
    with pytest.raises(ValueError, match="ssim must be one of"):
        M.table1_frame(results, ssim="ssim")
