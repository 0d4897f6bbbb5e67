"""Chapter 05's core: multi-fMRI fusion, longer videos from neighbouring fMRI (paper §3.4).

    from neuroclips_core.fusion_run import fuse

    result = fuse(cfg, subject=1)               # needs chapter 04's full run of the subject
    result.summary["judge"]["accuracy"]         # the same-class MLP on held-out neighbouring pairs
    result.summary["continuity"]                # CLIP similarity of the frames that meet, fused vs unfused
    result.videos                               # uint8 (N, 16, H, W, 3): chains' later clips regenerated

**The judges.** Each decides, for every pair of neighbouring test clips, whether they show the same class.

- ``keyframe`` (the paper's): a shallow MLP (:class:`SameClassMLP`) reads the CLIP image embeddings of the two
  clips' reconstructed keyframes; pair features are symmetric, ``[e_i * e_j, |e_i - e_j|]`` on unit embeddings
  (D each).  The paper does not say which pairs train it, and reconstructed keyframes exist for the test clips
  only, so it is scored by blocked cross-validation over the test segment: 5 contiguous folds of neighbouring
  pairs, the pairs that share a clip with a held-out pair left out of training, and every pair's decision comes
  from the model that did not see it.  (Trained instead on the training runs' ground-truth keyframes, it does no
  better on reconstructed ones: 0.59 on seed 12, subject 1, against 0.91 on the true test keyframes.)
- ``fmri_class`` (not in the paper): the same MLP on what a linear class decoder reads from the fMRI around the
  boundary.  A closed-form ridge (:class:`~neuroclips_core.models.ridge.RidgeRegression`, penalty chosen on held-out
  training runs) maps each clip's response to scores over the classes (one-hot targets); the features are
  the cosines among those scores for the 4 clips ``i - 1 .. i + 2`` (:func:`context_features`; each run's scores
  centred on its own mean).  A shot change is a change point in a slow signal, so the clips on either side of the
  pair, and how alike those before and after it are, say more than the pair alone.  It needs no reconstruction,
  so it is trained on every neighbouring pair of the training runs (their repetitions averaged; their class
  scores cross-fitted: each run's from a decoder that did not see it) and scored on all test pairs; the features
  are standardised within each split, since the test responses average 10 repetitions and the training ones 2.

Labels: on sim the simulation's class per clip; on real data the frame classifier's top class of each clip's
ground-truth keyframe (stored frame ``KEYFRAME_INDEX``), the labelling the issue suggests, since cc2017 has none.

**The fusion.** Clips are walked in order and grouped into chains of up to :data:`MAX_CHAIN` (3 clips: 6 s) while
the judge says "same"; a chain's first clip keeps chapter 04's full video and each later clip is generated again
with the previous clip's (fused) last frame as its SparseCtrl keyframe instead of its own keyframe; its blurry
video, caption and seed stay its own, so fused and unfused differ by the keyframe alone.  Continuity is the cosine
of the CLIP image embeddings of the two frames that meet at a boundary (last of clip i, first of clip i + 1).

Written to ``runs/<profile>/subjNN/fusion/<judge>/``: ``videos_fused.npy``, ``summary.json`` (last; reused when its
parameters match) and ``gifs/chain_NNNN.gif`` (unfused above fused, the chain's clips end to end).
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .artifacts import json_clean, profile_role, step_dir, store_with_frames
from .config import RunConfig
from .metrics_semantic import _unit, clip_video_embeddings, frame_class_probabilities
from .perception_run import load_perception_result
from .pipelines.blurry import interpolate_frames, save_npy_atomic
from .pipelines.keyframes import KEYFRAMES_FILE
from .semantics_run import load_semantics_result, semantics_dir
from .semantics_targets import KEYFRAME_INDEX
from .train import write_json_atomic
from .video_run import (VARIANTS, clip_seeds, generation_config, n_test_clips, prompts_for, reconstruct_videos,
                        video_pipeline)

MAX_CHAIN = 3               # clips per fused video: 6 s, as the paper's longest
N_FOLDS = 5
JUDGES = {"keyframe": "the paper's: CLIP embeddings of the two reconstructed keyframes (cross-validated on the "
                      "test pairs)",
          "fmri_class": "a ridge class decoder's scores from the fMRI of the 4 clips around the boundary (trained on "
                        "the training runs' pairs)"}
CONTEXT = 1                 # clips on each side of a pair that fmri_class also reads: the window is i - 1 .. i + 2
DECODER_FOLDS = 3           # groups of training runs the class scores are cross-fitted over
FUSED_FILE, SUMMARY_FILE = "videos_fused.npy", "summary.json"


# ============================================================================================ the judge
def pair_features(embeddings: np.ndarray) -> np.ndarray:
    """float32 (N - 1, 2 D): ``[e_i * e_j, |e_i - e_j|]`` of neighbours (i, i + 1) of unit-normalised (N, D)."""
    e = _unit(np.asarray(embeddings, np.float32))
    if e.ndim != 2 or len(e) < 2:
        raise ValueError(f"pair_features: expected embeddings (N >= 2, D), found shape {e.shape}")
    return np.concatenate([e[:-1] * e[1:], np.abs(e[:-1] - e[1:])], axis=1)


def context_features(fmri: np.ndarray, context: int = CONTEXT) -> np.ndarray:
    """float32 (N - 1, K (K - 1) / 2), K = 2 ``context`` + 2: for each neighbouring pair (i, i + 1) of one run's
    responses ``fmri`` (N, ...) in time order, the cosines among the clips ``i - context .. i + 1 + context``
    (indices clamped to the run), each response centred on the run's mean response first.

    The first column pair is (window start, window start + 1); the cosine of the pair itself is column
    ``pair_column(context)``.
    """
    x = np.asarray(fmri, np.float32).reshape(len(fmri), -1)
    if len(x) < 2 or not np.isfinite(x).all():
        raise ValueError(f"context_features: expected finite responses of at least 2 clips, found shape "
                         f"{np.shape(fmri)}{'' if np.isfinite(x).all() else ' with non-finite values'}")
    x = _unit(x - x.mean(axis=0))
    starts = np.arange(len(x) - 1)
    window = np.clip(starts[:, None] + np.arange(-context, context + 2)[None], 0, len(x) - 1)   # (N - 1, K)
    rows, cols = np.triu_indices(window.shape[1], 1)
    return np.stack([(x[window[:, r]] * x[window[:, c]]).sum(axis=1) for r, c in zip(rows, cols)],
                    axis=1).astype(np.float32)


def pair_column(context: int = CONTEXT) -> int:
    """The column of :func:`context_features` that holds the cosine of the pair (i, i + 1) itself."""
    rows, cols = np.triu_indices(2 * context + 2, 1)
    return int(np.flatnonzero((rows == context) & (cols == context + 1))[0])


def standardised(x: np.ndarray) -> np.ndarray:
    """Columns of (P, F) to zero mean and unit standard deviation (a constant column stays 0)."""
    x = np.asarray(x, np.float32)
    return (x - x.mean(axis=0)) / np.maximum(x.std(axis=0), 1e-6)


class SameClassMLP(nn.Module):
    """Pair features (B, F) -> the logit of "same class": Linear(F, hidden) GELU Dropout Linear(hidden, 1), inputs
    standardised with the training pairs' mean and std (kept as buffers)."""

    def __init__(self, n_features: int, hidden: int = 32, dropout: float = 0.2):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_features, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, 1))
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std).squeeze(-1)

    def fit(self, x: np.ndarray, y: np.ndarray, *, epochs: int = 300, lr: float = 3e-3, weight_decay: float = 1e-2,
            seed: int = 0) -> "SameClassMLP":
        """Full-batch AdamW on the binary cross-entropy, classes weighted to balance; returns self (eval mode)."""
        x_t, y_t = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32)
        if len(np.unique(y)) < 2:
            raise ValueError("SameClassMLP.fit: the training pairs hold one class only; there is nothing to learn")
        self.mean.copy_(x_t.mean(0))
        self.std.copy_(x_t.std(0).clamp_min(1e-6))
        torch.manual_seed(seed)
        for layer in self.net:
            if isinstance(layer, nn.Linear):
                layer.reset_parameters()
        pos = y_t.mean()
        loss_fn = nn.BCEWithLogitsLoss(pos_weight=(1 - pos) / pos)
        opt = torch.optim.AdamW(self.parameters(), lr=lr, weight_decay=weight_decay)
        self.train()
        for _ in range(epochs):
            opt.zero_grad()
            loss_fn(self(x_t), y_t).backward()
            opt.step()
        return self.eval()

    @torch.no_grad()
    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return torch.sigmoid(self(torch.as_tensor(x, dtype=torch.float32))).numpy()


def held_out_probabilities(x: np.ndarray, y: np.ndarray, n_folds: int = N_FOLDS, seed: int = 0) -> np.ndarray:
    """float (P,): each neighbouring pair's "same" probability from an MLP trained on the other folds.

    Folds are contiguous blocks of pairs; pair k is (clip k, clip k + 1), so the pairs just outside a held-out
    block share a clip with it and are left out of its training set too.
    """
    x, y = np.asarray(x, np.float32), np.asarray(y).astype(int)
    if len(x) != len(y) or len(y) < 2 * n_folds:
        raise ValueError(f"held_out_probabilities: need as many labels as pairs and at least {2 * n_folds} pairs "
                         f"for {n_folds} folds; found {len(x)} pairs and {len(y)} labels")
    out = np.empty(len(y))
    for fold, held in enumerate(np.array_split(np.arange(len(y)), n_folds)):
        guard = np.arange(max(held[0] - 1, 0), min(held[-1] + 2, len(y)))
        train = np.setdiff1d(np.arange(len(y)), guard)
        model = SameClassMLP(x.shape[1]).fit(x[train], y[train], seed=seed + fold)
        out[held] = model.predict_proba(x[held])
    return out


def judge_scores(y: np.ndarray, same: np.ndarray) -> dict:
    """Accuracy, balanced accuracy and the majority-class rate of decisions ``same`` (bool) against ``y``."""
    y, same = np.asarray(y).astype(bool), np.asarray(same).astype(bool)
    recall = [float((same[y == c] == c).mean()) if (y == c).any() else float("nan") for c in (True, False)]
    return {"accuracy": float((same == y).mean()), "balanced_accuracy": float(np.nanmean(recall)),
            "majority_rate": float(max(y.mean(), 1 - y.mean())), "same_rate_true": float(y.mean()),
            "same_rate_judged": float(same.mean()), "n_pairs": int(len(y))}


# ============================================================================================ the chains
def chains_from(same: np.ndarray, max_len: int = MAX_CHAIN) -> list[list[int]]:
    """Clip indices grouped in order: clip i + 1 joins clip i's chain when ``same[i]`` and the chain is shorter
    than ``max_len``.  ``same``: bool (N - 1,) over neighbouring pairs; every clip is in exactly one chain."""
    if max_len < 1:
        raise ValueError(f"chains_from: max_len must be at least 1, found {max_len}")
    chains = [[0]]
    for i, s in enumerate(np.asarray(same, bool)):
        if s and len(chains[-1]) < max_len:
            chains[-1].append(i + 1)
        else:
            chains.append([i + 1])
    return chains


def fuse_videos(generate, unfused: np.ndarray, chains: list[list[int]]) -> np.ndarray:
    """uint8 (N, F, H, W, 3): ``unfused`` with every chain's later clips generated again, position by position.

    ``generate(clips, keyframes)`` makes the videos of clip indices ``clips`` with SparseCtrl keyframes
    ``keyframes`` (B, H, W, 3) uint8; the clips of one position across all chains go in one call, so a chain of
    3 costs two calls whatever the number of chains.
    """
    fused = np.array(unfused)
    for position in range(1, max((len(c) for c in chains), default=1)):
        clips = [c[position] for c in chains if len(c) > position]
        previous = [c[position - 1] for c in chains if len(c) > position]
        fused[clips] = generate(np.asarray(clips), fused[previous, -1])
    return fused


def boundary_similarity(clip, videos: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """float32 (P,): cosine of the CLIP embeddings of the last frame of clip i and the first of clip i + 1 for each
    pair start i in ``pairs``."""
    pairs = np.asarray(pairs, int)
    if not len(pairs):
        return np.zeros(0, np.float32)
    meet = np.stack([videos[pairs, -1], videos[pairs + 1, 0]], axis=1)          # (P, 2, H, W, 3)
    e = _unit(clip_video_embeddings(clip, meet))
    return (e[:, 0] * e[:, 1]).sum(-1)


# ============================================================================================== the run
@dataclass
class FusionResult:
    folder: Path
    summary: dict
    reused: bool

    @property
    def videos(self) -> np.ndarray:
        """uint8 (N, 16, H, W, 3): chapter 04's full videos with the chains' later clips fused."""
        return np.load(self.folder / FUSED_FILE, mmap_mode="r")

    @property
    def chains(self) -> list[list[int]]:
        return self.summary["chains"]

    def gifs(self) -> list[Path]:
        return sorted((self.folder / "gifs").glob("chain_*.gif"))


def clip_labels(cfg: RunConfig, store, split: str, device) -> tuple[np.ndarray, str]:
    """int (N,): the class of every clip of ``split`` ("train" or "test"), and how it was labelled."""
    if split not in ("train", "test"):
        raise ValueError(f"clip_labels: split must be 'train' or 'test', found {split!r}")
    if store.has_labels:
        return np.asarray(getattr(store, f"labels_{split}")), "the simulation's class per clip"
    frames = getattr(store, f"frames_{split}")
    probs = frame_class_probabilities(profile_role(cfg, "frame_classifier", device),
                                      np.asarray(frames[:, KEYFRAME_INDEX:KEYFRAME_INDEX + 1]))
    return (probs[:, 0].argmax(-1),
            f"the frame classifier's top class of each clip's ground-truth keyframe (stored frame {KEYFRAME_INDEX})")


def same_as_next(labels: np.ndarray) -> np.ndarray:
    """bool (N - 1,): whether clip i + 1 has clip i's label."""
    labels = np.asarray(labels)
    return labels[:-1] == labels[1:]


def decoded_class_scores(fmri_train: np.ndarray, labels_train: np.ndarray, runs: np.ndarray,
                         fmri_test: np.ndarray, folds: int = DECODER_FOLDS,
                         lam: float | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """(float32 (N_train, C) out-of-fold scores, float32 (N_test, C) scores, the penalty) of a ridge (with
    intercept) from the responses (N, V) to one-hot classes (C: the classes the training clips show).

    The training runs are split into ``folds`` groups; the penalty (unless ``lam`` is given) is chosen by validation
    error on the first group with the others as training data; then every group's scores come from a ridge fitted
    on the other groups, and the test scores from one fitted on all runs.
    """
    from .models.ridge import RidgeRegression

    runs = np.asarray(runs)
    order = list(dict.fromkeys(runs.tolist()))
    if len(order) < folds:
        raise ValueError(f"decoded_class_scores: need at least {folds} training runs to cross-fit over, found "
                         f"{len(order)}; use the keyframe judge for a store this small")
    _, classes = np.unique(np.asarray(labels_train), return_inverse=True)
    y = np.eye(classes.max() + 1, dtype=np.float32)[classes]
    groups = [np.isin(runs, group) for group in np.array_split(np.asarray(order, dtype=object), folds)]
    if lam is None:
        first = groups[0]
        lam = RidgeRegression().fit(fmri_train[~first], y[~first], fmri_train[first], y[first]).lambda_
    out_of_fold = np.empty_like(y)
    for held in groups:
        out_of_fold[held] = RidgeRegression(lambdas=(lam,)).fit(fmri_train[~held], y[~held]).predict(
            fmri_train[held])
    test = RidgeRegression(lambdas=(lam,)).fit(fmri_train, y).predict(fmri_test)
    return out_of_fold, test, float(lam)


def training_run_pairs(scores: np.ndarray, labels_train: np.ndarray, runs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(:func:`context_features` of every neighbouring pair inside each training run of ``scores`` (N, ...), their
    bool labels); pairs never straddle two runs."""
    runs = np.asarray(runs)
    x, y = [], []
    for run in dict.fromkeys(runs.tolist()):                     # the runs in store order
        clips = np.flatnonzero(runs == run)
        x.append(context_features(np.asarray(scores)[clips]))
        y.append(same_as_next(np.asarray(labels_train)[clips]))
    return np.concatenate(x), np.concatenate(y)


def judge_probabilities(cfg: RunConfig, store, judge: str, n: int, *, clip=None, subject: int | None = None,
                        device=None) -> tuple[np.ndarray, np.ndarray, dict]:
    """(bool (n - 1,) the truth, float (n - 1,) p(same) of every neighbouring pair of the first ``n`` test clips,
    {"labels", "trained_on"}) for ``judge`` (a key of :data:`JUDGES`; module docstring).

    ``keyframe`` needs chapter 03's keyframes of the subject and the CLIP role (``clip``, loaded if None);
    ``fmri_class`` needs only the store, and adds ``decoder_top1``: how often its class decoder's top class is the
    test clip's label.
    """
    if judge not in JUDGES:
        raise ValueError(f"judge: expected one of {list(JUDGES)}, found {judge!r}")
    subject = int(subject or cfg.subject)
    device = device or cfg.torch_device()
    labels, labelled = clip_labels(cfg, store, "test", device)
    same_true = same_as_next(labels[:n])
    info = {}
    if judge == "keyframe":
        load_semantics_result(cfg, subject)                            # names chapter 03 if it has not run
        keyframes = np.asarray(np.load(semantics_dir(cfg, subject) / KEYFRAMES_FILE, mmap_mode="r")[:n])
        clip = clip if clip is not None else profile_role(cfg, "clip", device)
        x = pair_features(clip_video_embeddings(clip, keyframes[:, None])[:, 0])
        prob = held_out_probabilities(x, same_true, seed=cfg.seed)
        trained = f"blocked {N_FOLDS}-fold cross-validation over the {len(same_true)} test pairs"
    else:
        labels_train = clip_labels(cfg, store, "train", device)[0]
        runs = np.asarray(store.segment_of_train_clip)
        scores_train, scores_test, lam = decoded_class_scores(
            np.asarray(store.fmri_train, np.float32).mean(axis=1), labels_train, runs,
            np.asarray(store.fmri_test[:n], np.float32).mean(axis=1))
        x_train, y_train = training_run_pairs(scores_train, labels_train, runs)
        model = SameClassMLP(x_train.shape[1]).fit(standardised(x_train), y_train, seed=cfg.seed)
        prob = model.predict_proba(standardised(context_features(scores_test)))
        trained = (f"the {len(y_train)} neighbouring pairs of the {len(set(runs.tolist()))} training runs (ridge "
                   f"penalty {lam:.3g}); scored on every test pair")
        classes = np.unique(labels_train)                                # the decoder's columns
        info["decoder_top1"] = float((classes[scores_test.argmax(axis=1)] == labels[:n]).mean())
    return same_true, prob, {"labels": labelled, "trained_on": trained, **info}


def fusion_dir(cfg: RunConfig, subject: int | None = None, judge: str = "keyframe") -> Path:
    return step_dir(cfg, subject, "fusion") / judge


def fuse(cfg: RunConfig, subject: int | None = None, judge: str = "keyframe", *, n_clips: int | None = None,
         n_gifs: int = 4, retrain: bool = False, progress: bool = True) -> FusionResult:
    """Judge every neighbouring pair of test clips, chain them, regenerate the chains' later clips from the previous
    clip's last frame, and score continuity (module docstring).  Reused when ``summary.json`` records the same
    parameters.

    Args:
        judge: a key of :data:`JUDGES` (``keyframe``: the paper's).
        n_clips: the first n test clips, as chapter 04 (default: all; the quick subset in quick mode).
        n_gifs: GIFs for the first chains of 2 or more clips.

    Raises:
        FileNotFoundError: chapters 02-04 have not run for the subject (the message names what to run).
    """
    if judge not in JUDGES:
        raise ValueError(f"judge: expected one of {list(JUDGES)}, found {judge!r}")
    subject = int(subject or cfg.subject)
    device = cfg.torch_device()
    store = store_with_frames(cfg, subject, None, "fusion is judged and scored on the test clips", progress)
    n = n_test_clips(cfg, store.n_test, n_clips)
    full = reconstruct_videos(cfg, subject, "full", store=store, n_clips=n, progress=progress)   # reused if done
    blurry6 = np.asarray(load_perception_result(cfg, subject).blurry()[:n])
    clip = profile_role(cfg, "clip", device)
    same_true, prob, judged = judge_probabilities(cfg, store, judge, n, clip=clip, subject=subject, device=device)
    same = prob > 0.5
    chains = chains_from(same)
    judge_entry = {"name": judge, "what": JUDGES[judge], **judged, **judge_scores(same_true, same)}

    config = generation_config(cfg)
    params = json.loads(json.dumps({"judge": judge, "subject": subject, "seed": cfg.seed, "n_clips": n,
                                    "full": full.summary["params"], "chains": chains,
                                    "config": dataclasses.asdict(config)}))
    out = fusion_dir(cfg, subject, judge)
    summary_path = out / SUMMARY_FILE
    if not retrain and summary_path.is_file() and (out / FUSED_FILE).is_file():
        summary = json.loads(summary_path.read_text())
        if summary.get("params") == params:
            if summary["judge"] != judge_entry:           # same decisions; the entry's wording or fields changed
                summary["judge"] = judge_entry
                write_json_atomic(summary_path, json_clean(summary))
            return FusionResult(out, summary, True)

    pipe = video_pipeline(cfg, device)
    captions = prompts_for(cfg, subject, VARIANTS["full"], None)[:n]
    seeds = clip_seeds(cfg.seed, n)
    blurry16 = interpolate_frames(blurry6, config.num_frames)

    def generate(clips: np.ndarray, frames: np.ndarray) -> np.ndarray:
        return pipe(blurry16[clips], frames, [captions[i] for i in clips], seeds=[seeds[i] for i in clips],
                    config=config, batch_size=16, progress=progress)

    t0 = time.monotonic()
    unfused = np.asarray(full.videos)
    fused = fuse_videos(generate, unfused, chains)
    seconds = time.monotonic() - t0
    out.mkdir(parents=True, exist_ok=True)
    save_npy_atomic(out / FUSED_FILE, fused)

    inside = np.array([c[k] for c in chains for k in range(len(c) - 1)], int)      # boundaries the fusion joins
    truth = np.asarray(store.frames_test[:n])
    continuity = {"fused": boundary_similarity(clip, fused, inside),
                  "unfused": boundary_similarity(clip, unfused, inside),
                  "ground_truth": boundary_similarity(clip, truth, inside),
                  "unfused_all_pairs": boundary_similarity(clip, unfused, np.arange(n - 1))}
    summary = {"subject": subject,
               "judge": judge_entry,
               "params": params, "chains": chains,
               "n_fused_clips": int(sum(len(c) - 1 for c in chains)),
               "chain_lengths": {str(k): int(sum(len(c) == k for c in chains)) for k in range(1, MAX_CHAIN + 1)},
               "continuity": {k: {"mean": float(v.mean()) if len(v) else None, "n": int(len(v))}
                              for k, v in continuity.items()},
               "per_boundary": {"start": inside.tolist(), **{k: v.tolist() for k, v in continuity.items()
                                                             if k != "unfused_all_pairs"}},
               "probabilities": prob.tolist(), "same_true": same_true.tolist(),
               "timings": {"generation_s": round(seconds, 1)}}
    _chain_gifs(out / "gifs", [c for c in chains if len(c) > 1][:n_gifs], unfused, fused)
    write_json_atomic(summary_path, json_clean(summary))                # last: its presence means the run finished
    return FusionResult(out, summary, False)


def _chain_gifs(folder: Path, chains: list[list[int]], unfused: np.ndarray, fused: np.ndarray) -> list[Path]:
    """``chain_NNNN.gif`` (N: the chain's first clip): its clips end to end, unfused above fused, at 8 FPS."""
    from .viz.frames import side_by_side_gif

    return [side_by_side_gif([np.concatenate(list(unfused[c])), np.concatenate(list(fused[c]))],
                             folder / f"chain_{c[0]:04d}.gif", fps=8, scale=2, labels=["unfused", "fused"])
            for c in chains]
