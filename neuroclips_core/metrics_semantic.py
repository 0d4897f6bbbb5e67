"""Semantic and temporal metrics: N-way top-k classification, CLIP-pcc, retrieval, and the 8 -> 3 FPS alignment.

Every metric works on arrays (probabilities, embeddings), so it is independent of any model; thin wrappers turn
uint8 videos (N, F, H, W, 3) into those arrays with the zoo's classifiers and CLIP.  Recipes as in circulation
(field-and-evaluation.md §2; paper §4.3 and App. C.6):

=====================  ==================================================================  =====================
metric                 recipe                                                              source
=====================  ==================================================================  =====================
frame / video N-way    the classifier's top-3 classes on the ground truth are the "GT      MinD-Video, NEURONS
                       classes"; a trial draws N-1 distractors from the other classes and  (§2.2-2.3)
                       succeeds if any GT class outranks all N-1 in the prediction's
                       probabilities; 100 trials per item; ``±`` = mean binomial SE
CLIP-pcc               mean cosine of CLIP image embeddings of adjacent frames (paper);    paper §4.3 (A w/o
                       all ordered pairs i != j (NEURONS) as the second variant            gate), NEURONS (B)
retrieval              top-1 among the pool by cosine, forward (brain -> image: the        paper App. C.6
                       paper's keyframe retrieval) and backward (image -> brain: its fMRI  (Table 4)
                       retrieval), in 4 random parts of 300, chance 1 / pool
=====================  ==================================================================  =====================

Mind-Animator's gated CLIP-pcc (recipe A: a clip scores 0 when its ViFi-CLIP similarity to the ground truth is
<= 0.6) is not implemented: it needs a ViFi-CLIP video encoder the zoo does not have.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .data.layout import CLIP_SECONDS

N_TRIALS = 100           # trials per item in MinD-Video's run_metrics.py, Mind-Animator's 2-way-I.py and NEURONS
GT_TOP = 3               # ground-truth classes per item in the same harnesses
ALIGNMENT_RULES = ("anchors", "timestamps", "neurons")


# ------------------------------------------------------------------------------ 8 FPS -> 3 FPS alignment
def aligned_frame_indices(n_generated: int = 16, n_ground_truth: int = 6, rule: str = "anchors") -> np.ndarray:
    """Which generated frames (indices into ``n_generated``) stand beside the ``n_ground_truth`` stored frames.

    The store keeps, of each 2-s clip at 30 FPS, frames 5, 15, ..., 55: the centre of each of 6 equal bins, i.e.
    ground-truth frame j was shown at ``(j + 1/2) * 2 s / 6`` (data/layout.py ``FRAME_OFFSETS``).  Rules:

    ``anchors`` (default)
        ``round(j * (n_generated - 1) / (n_ground_truth - 1))``: 0, 3, 6, 9, 12, 15 for 16 and 6.  The video
        model is guided by the blurry video, whose 16 frames :func:`~neuroclips_core.pipelines.blurry.
        interpolate_frames` builds with the Perception Reconstructor's frame j at output 3 j (as the official
        ``cccat`` does), so generated frame 3 j is the frame whose content tracks ground-truth frame j.
    ``timestamps``
        The nominal clock: generated frame i is shown at ``i * 2 s / n_generated`` (8 FPS over the clip's 2 s),
        and each ground-truth frame takes the generated frame nearest its own time (the earlier on a tie):
        1, 4, 7, 9, 12, 15 for 16 and 6.  Right only if the generated video ran on the stimulus' clock; ours runs
        on the blurry video's (``anchors``), which spreads 1.67 s of samples over the 16 slots.
    ``neurons``
        NEURONS' ``downsample_video`` (field-and-evaluation.md §2.6): drop the first ``n_generated - 2 *
        n_ground_truth`` frames, then every second one: 4, 6, 8, 10, 12, 14 for 16 and 6.

    Returns int64 (n_ground_truth,), increasing, every index in [0, n_generated).
    """
    if n_ground_truth < 2 or n_generated < n_ground_truth:
        raise ValueError(f"alignment: need 2 <= n_ground_truth <= n_generated, found {n_ground_truth} ground-truth "
                         f"and {n_generated} generated frames")
    j = np.arange(n_ground_truth)
    if rule == "anchors":
        return np.rint(j * (n_generated - 1) / (n_ground_truth - 1)).astype(np.int64)
    if rule == "timestamps":
        gt_seconds = (j + 0.5) * CLIP_SECONDS / n_ground_truth
        # nearest generated frame, ties to the earlier one: ceil(x - 1/2)
        return np.clip(np.ceil(gt_seconds * n_generated / CLIP_SECONDS - 0.5), 0, n_generated - 1).astype(np.int64)
    if rule == "neurons":
        if n_generated < 2 * n_ground_truth:
            raise ValueError(f"alignment 'neurons' takes every second frame: needs n_generated >= "
                             f"{2 * n_ground_truth}, found {n_generated}")
        return (n_generated - 2 * n_ground_truth + 2 * j).astype(np.int64)
    raise ValueError(f"alignment: unknown rule {rule!r}; known: {', '.join(ALIGNMENT_RULES)}")


def align_to_ground_truth(videos: np.ndarray, n_ground_truth: int = 6, rule: str = "anchors") -> np.ndarray:
    """Generated videos (N, F, ...) -> the frames scored against the ground truth (N, n_ground_truth, ...)."""
    return np.asarray(videos)[:, aligned_frame_indices(np.shape(videos)[1], n_ground_truth, rule)]


# ------------------------------------------------------------------------------------------ N-way top-k
def n_way_chance(n_way: int, gt_top: int = GT_TOP) -> float:
    """Success rate of a predictor that knows nothing, under the N-way rule with ``gt_top`` GT classes.

    Why ``gt_top / (n_way - 1 + gt_top)``: for a predictor independent of the ground truth, the predicted
    probabilities of the ``gt_top`` GT classes and the ``n_way - 1`` distractors (drawn apart from them) are
    exchangeable, so the largest of these ``n_way - 1 + gt_top`` values falls on a GT class with probability
    ``gt_top / (n_way - 1 + gt_top)``, and a trial succeeds exactly then.  Top-3: 0.75 at 2-way, 3/52 = 0.0577 at
    50-way (field-and-evaluation.md §2.2); top-1: 1 / N.
    """
    if n_way < 2 or gt_top < 1:
        raise ValueError(f"n_way_chance: need n_way >= 2 and gt_top >= 1, found {n_way} and {gt_top}")
    return gt_top / (n_way - 1 + gt_top)


def binomial_se(p, trials: int = N_TRIALS):
    """Binomial standard error ``sqrt(p (1 - p) / trials)`` of a success rate p measured in ``trials`` trials."""
    p = np.asarray(p, dtype=np.float64)
    return np.sqrt(p * (1 - p) / trials)


@dataclass(frozen=True)
class NWayResult:
    """One N-way test.  ``mean``: success rate over items; ``se``: the field's ``±``, the mean over items of
    each item's binomial SE; ``sem``: the standard error of ``mean`` across items (items of one clip are
    correlated, so a lower bound); ``expected``: the mean each item would have with infinitely many trials;
    ``chance``: :func:`n_way_chance`; ``per_item``: success rate per item, in the shape of the items."""

    mean: float
    se: float
    sem: float
    expected: float
    chance: float
    n_way: int
    gt_top: int
    trials: int
    seed: int
    per_item: np.ndarray = field(repr=False)

    def as_dict(self) -> dict:
        """JSON-ready summary (``per_item`` replaced by its mean per frame index when items are (N, F))."""
        out = {k: v for k, v in asdict(self).items() if k != "per_item"}
        out["n_items"] = int(self.per_item.size)
        if self.per_item.ndim == 2:
            out["per_frame"] = [float(x) for x in self.per_item.mean(0)]
        return out


def _check_probabilities(pred_probs: np.ndarray, gt_probs: np.ndarray, n_way: int, gt_top: int) -> None:
    if pred_probs.shape != gt_probs.shape or pred_probs.ndim < 2:
        raise ValueError(f"n-way: expected prediction and ground-truth probabilities of one shape (..., classes), "
                         f"found {pred_probs.shape} and {gt_probs.shape}")
    n_classes = pred_probs.shape[-1]
    if not 1 <= gt_top < n_classes or not 2 <= n_way <= n_classes - gt_top + 1:
        raise ValueError(f"n-way: {n_way}-way with {gt_top} GT classes needs {n_way - 1} distractors outside the GT "
                         f"classes, but the classifier has {n_classes} classes; lower n_way or gt_top")


def _blockers(pred_probs: np.ndarray, gt_probs: np.ndarray, gt_top: int) -> np.ndarray:
    """Per item, the number of non-GT classes whose predicted probability reaches that of the best GT class."""
    gt_classes = np.argpartition(-gt_probs, gt_top - 1, axis=-1)[..., :gt_top]            # the GT's top-k
    best_gt = np.take_along_axis(pred_probs, gt_classes, -1).max(-1, keepdims=True)
    at_or_above = pred_probs >= best_gt
    return at_or_above.sum(-1) - np.take_along_axis(at_or_above, gt_classes, -1).sum(-1)


def n_way_accuracy(pred_probs: np.ndarray, gt_probs: np.ndarray, n_way: int, gt_top: int = GT_TOP,
                   trials: int = N_TRIALS, seed: int = 0) -> NWayResult:
    """N-way top-1 classification with ``gt_top`` ground-truth classes (field-and-evaluation.md §2.2).

    Args:
        pred_probs, gt_probs: the classifier's probabilities (..., classes) on predicted and ground-truth items
            (frames: (N, F, classes); videos: (N, classes)); only their order per item matters.
        n_way: classes per trial (2 or 50 in Table 1).
        gt_top: the GT classes are the classifier's top ``gt_top`` on the ground truth (3 in the field; 1 is
            the textbook test with chance 1 / N).
        trials, seed: trials per item, and the seed of all of them (same seed, same numbers).

    The recipe, per item: distractors are drawn without replacement from the classes outside the GT classes;
    a trial succeeds if one of the GT classes has a higher predicted probability than every distractor (the
    field's "any of the three ranks first"; a tie counts as a failure).  A trial's outcome depends on its
    distractors only through whether it drew a *blocker*, a non-GT class predicted at least as high as the
    best GT class: with m blockers among the P = classes - gt_top candidates, the number drawn is
    hypergeometric (m, P - m, N - 1), and the trial succeeds when it is 0.  Drawing that count is the same random
    experiment as drawing the N - 1 classes (tests check it against the explicit draw) and costs one number a
    trial instead of a permutation of the classes; ``expected`` is its exact mean, C(P - m, N - 1) / C(P, N - 1).
    """
    from scipy.stats import hypergeom

    pred_probs, gt_probs = np.asarray(pred_probs, np.float64), np.asarray(gt_probs, np.float64)
    _check_probabilities(pred_probs, gt_probs, n_way, gt_top)
    candidates = pred_probs.shape[-1] - gt_top
    blockers = _blockers(pred_probs, gt_probs, gt_top)
    rng = np.random.default_rng(seed)
    drawn = rng.hypergeometric(blockers[..., None], candidates - blockers[..., None], n_way - 1,
                               size=blockers.shape + (trials,))
    per_item = (drawn == 0).mean(-1)
    expected = hypergeom.pmf(0, candidates, blockers, n_way - 1)
    return NWayResult(mean=float(per_item.mean()), se=float(binomial_se(per_item, trials).mean()),
                      sem=float(per_item.std() / np.sqrt(per_item.size)), expected=float(expected.mean()),
                      chance=n_way_chance(n_way, gt_top), n_way=n_way, gt_top=gt_top, trials=trials, seed=seed,
                      per_item=per_item)


def frame_class_probabilities(classifier, videos: np.ndarray, batch: int = 256) -> np.ndarray:
    """The frame classifier's probabilities (N, F, classes) float32 of uint8 videos (N, F, H, W, 3), frame by
    frame, through its own processor (a :class:`~neuroclips_core.zoo.loaders.Classifier`: ViT-B/16 IN-1k in
    the paper profile, the stand-in ViT in sim)."""
    from .zoo.train.classifiers import frame_probabilities

    videos = _uint8_videos(videos)
    probs = frame_probabilities(classifier, videos.reshape(-1, *videos.shape[2:]), batch)
    return probs.numpy().reshape(*videos.shape[:2], -1)


def video_class_probabilities(classifier, videos: np.ndarray, batch: int = 32) -> np.ndarray:
    """The video classifier's probabilities (N, classes) float32 of uint8 videos (N, F, H, W, 3).

    The VideoMAE is rebuilt for F frames when it was made for another count, as the field's harness loads
    it with ``num_frames=6`` (:func:`~neuroclips_core.zoo.train.classifiers.videomae_for_num_frames`)."""
    from .zoo.train.classifiers import clip_probabilities, videomae_for_num_frames

    videos = _uint8_videos(videos)
    return clip_probabilities(videomae_for_num_frames(classifier, videos.shape[1]), videos, batch).numpy()


def _uint8_videos(videos: np.ndarray) -> np.ndarray:
    videos = np.asarray(videos)
    if videos.dtype != np.uint8 or videos.ndim != 5 or videos.shape[-1] != 3:
        raise ValueError(f"expected uint8 videos (N, F, H, W, 3), found {videos.dtype} {videos.shape}; convert with "
                         "(x * 255).round().astype(np.uint8) and stack clips")
    return videos


# ------------------------------------------------------------------------------------------------ CLIP-pcc
def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _unit_frames(embeddings: np.ndarray) -> np.ndarray:
    """Frame embeddings (N videos, T >= 2 frames, D), each scaled to unit length; anything else is refused."""
    e = _unit(embeddings)
    if e.ndim != 3 or e.shape[1] < 2:
        raise ValueError(f"CLIP-pcc: expected frame embeddings (N videos, T >= 2 frames, D), found {e.shape}")
    return e


def adjacent_cosines(embeddings: np.ndarray) -> np.ndarray:
    """(N, T - 1): the cosine of frames t and t + 1 of each video, from frame embeddings (N, T, D); CLIP-pcc is
    their mean over t, and their mean over videos per t shows where along the video it drops."""
    e = _unit_frames(embeddings)
    return (e[:, 1:] * e[:, :-1]).sum(-1)


def clip_pcc(embeddings: np.ndarray, pairs: str = "adjacent") -> np.ndarray:
    """Per-video CLIP-pcc (N,) of frame embeddings (N, T, D).

    ``pairs="adjacent"``: mean cosine similarity of frames t and t + 1 over the T - 1 pairs (the paper's
    recipe, §4.3; Mind-Animator's without its ViFi-CLIP gate).  ``pairs="all"``: mean over all ordered pairs
    i != j (NEURONS' ``clip_score_frame``), which by symmetry is the mean over unordered pairs.
    """
    if pairs == "adjacent":
        return adjacent_cosines(embeddings).mean(-1)
    if pairs == "all":
        e = _unit_frames(embeddings)
        t = e.shape[1]
        gram = e @ e.transpose(0, 2, 1)                                    # (N, T, T), ones on the diagonal
        return (gram.sum((1, 2)) - np.trace(gram, axis1=1, axis2=2)) / (t * (t - 1))
    raise ValueError(f"clip_pcc: unknown pairs {pairs!r}; use 'adjacent' or 'all'")


def clip_pcc_scores(embeddings: np.ndarray) -> dict[str, dict]:
    """{"clip_pcc_adjacent", "clip_pcc_all_pairs": {"mean", "std" (across videos)}} of embeddings (N, T, D)."""
    out = {}
    for key, pairs in (("clip_pcc_adjacent", "adjacent"), ("clip_pcc_all_pairs", "all")):
        per_video = clip_pcc(embeddings, pairs)
        out[key] = {"mean": float(per_video.mean()), "std": float(per_video.std())}
    return out


def clip_video_embeddings(clip, videos: np.ndarray, batch: int = 256) -> np.ndarray:
    """CLIP image embeddings (N, T, embed_dim) float32 of every frame of uint8 videos (N, T, H, W, 3), with the
    zoo's ``clip`` role (an :class:`~neuroclips_core.zoo.loaders.OpenClip`) as unCLIP's tokens are taken."""
    import torch

    from .zoo.unclip_sampling import image_embeddings

    videos = _uint8_videos(videos)
    if not videos.flags.writeable:          # a memory-mapped or read-only array: torch wants its own copy
        videos = videos.copy()
    frames = torch.from_numpy(videos.reshape(-1, *videos.shape[2:])).permute(0, 3, 1, 2).float().div_(255.0)
    return image_embeddings(clip, frames, batch).numpy().reshape(*videos.shape[:2], -1)


# ----------------------------------------------------------------------------------------------- retrieval
@dataclass(frozen=True)
class RetrievalResult:
    """Top-1 retrieval.  ``forward``: brain -> image (the paper's keyframe retrieval), ``backward``: image ->
    brain (its fMRI retrieval), each the mean over parts; ``pool_size``: candidates per query (the whole set
    when it is smaller than asked); ``chance``: 1 / pool_size."""

    forward: float
    backward: float
    forward_per_part: list
    backward_per_part: list
    pool_size: int
    n_parts: int
    chance: float
    seed: int

    def as_dict(self) -> dict:
        return asdict(self)


def retrieval_parts(n: int, pool_size: int = 300, n_parts: int = 4, seed: int = 0) -> list[np.ndarray]:
    """Index sets of the random parts retrieval is scored in (each of ``min(pool_size, n)`` items).

    Paper App. C.6: the 1200 test pairs are divided at random into 4 parts of 300.  So: one seeded permutation
    cut into ``n_parts`` disjoint parts when they fit (n >= n_parts * pool_size; items beyond are left out);
    ``n_parts`` independent random subsets when only one part fits; the whole set, once, when n < pool_size.
    """
    if n < 2 or pool_size < 2 or n_parts < 1:
        raise ValueError(f"retrieval: need n >= 2 pairs, pool_size >= 2 and n_parts >= 1; found {n}, {pool_size}, "
                         f"{n_parts}")
    rng = np.random.default_rng(seed)
    if n <= pool_size:
        return [np.arange(n)]
    if n >= n_parts * pool_size:
        order = rng.permutation(n)
        return [order[k * pool_size:(k + 1) * pool_size] for k in range(n_parts)]
    return [rng.choice(n, pool_size, replace=False) for _ in range(n_parts)]


def _top1_both_ways(brain: np.ndarray, image: np.ndarray) -> tuple[float, float]:
    """Fractions of brain rows whose own image is the most similar image, and of image rows likewise."""
    similarity = _unit(brain) @ _unit(image).T
    truth = np.arange(len(brain))
    return float((similarity.argmax(1) == truth).mean()), float((similarity.argmax(0) == truth).mean())


def retrieval_top1(brain: np.ndarray, image: np.ndarray, pool_size: int = 300, n_parts: int = 4,
                   seed: int = 0) -> RetrievalResult:
    """Top-1 retrieval by cosine between paired embeddings (N, ...) (flattened per item, e.g. CLIP tokens).

    Row i of ``brain`` (the fMRI embedding) and of ``image`` (the keyframe's CLIP embedding) belong together;
    within each part of :func:`retrieval_parts`, forward succeeds for brain i when image i is its most similar
    image, backward for image i when brain i is its most similar brain embedding.
    """
    brain = np.asarray(brain).reshape(len(brain), -1)
    image = np.asarray(image).reshape(len(image), -1)
    if brain.shape != image.shape:
        raise ValueError(f"retrieval: brain {brain.shape} and image {image.shape} embeddings must pair row by row "
                         "and have one size")
    parts = retrieval_parts(len(brain), pool_size, n_parts, seed)
    scores = [_top1_both_ways(brain[p], image[p]) for p in parts]
    forward, backward = (list(s) for s in zip(*scores))
    pool = len(parts[0])
    return RetrievalResult(forward=float(np.mean(forward)), backward=float(np.mean(backward)),
                           forward_per_part=forward, backward_per_part=backward, pool_size=pool,
                           n_parts=len(parts), chance=1 / pool, seed=seed)
