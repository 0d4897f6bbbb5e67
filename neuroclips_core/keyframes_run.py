"""Chapter 03's core, drawing side: a subject's keyframes (beta guidance), their captions (gamma), and their scores.

    from neuroclips_core.keyframes_run import reconstruct_semantics

    result = reconstruct_semantics(cfg, subject=2)                  # needs chapter 02's PR and the SR of train_semantics
    result.scores["n_way"]["50"]["mean"], result.captions[:3]
    noise = reconstruct_semantics(cfg, subject=2, config=KeyframeConfig.sim(start="noise"), variant="start_noise")

What it reads and writes (DESIGN.md §7)::

    runs/<profile>/subjNN/perception/blurry_test.npy     the PR's blurry videos (chapter 02): unCLIP's start
    runs/<profile>/subjNN/semantics/prior_tokens_test.npy the prior's tokens (train_semantics): unCLIP's condition
    runs/<profile>/subjNN/semantics[/<variant>]/
        keyframes_test.npy       uint8 (N_test, H, W, 3), and keyframes_params.json
        captions_test.json       N_test strings (the captioner on each keyframe), and captions_params.json
        keyframes.json           the parameters that made them and their scores (below)

**Scores** (``keyframes.json["scores"]``), each against the stored ground-truth keyframe (frame
``keyframe_index`` of the test clip, the frame the SR was trained to predict):

- ``ssim_s2``, ``pixcorr``, ``psnr``: :mod:`neuroclips_core.metrics`'s recipes on the one frame;
- ``n_way``: frame-level 2- and 50-way top-1 with the field's top-3 rule (the frame classifier's top 3 classes on
  the ground truth; :func:`~neuroclips_core.metrics_semantic.n_way_accuracy`, chance printed beside);
- ``identification``: CLIP image embedding of each reconstructed keyframe against those of the true keyframes,
  top-1 in pools of 300 (the SR's own keyframe and fMRI retrieval, Table 4, is in ``retrieval.json``);
- ``captions``: the share of captions naming the clip's true class (sim only: the store has labels), beside the
  share that captions of random training keyframes would get (:func:`~neuroclips_core.pipelines.captions.
  random_caption_baseline`; the issue asks for at least twice that).

A run is reused when ``keyframes.json`` records the same parameters (keyframe config, seed, the PR's and SR's run
parameters, the unCLIP, VAE and captioner weights); anything else redraws.  Files are written through temp files
and renames, so an interrupted run leaves the previous files whole.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .artifacts import json_clean, module_fingerprint, profile_role, store_with_frames
from .config import RunConfig
from .data.store import Store
from .metrics import frame_scores, summarize
from .metrics_semantic import clip_video_embeddings, frame_class_probabilities, n_way_accuracy, retrieval_top1
from .perception_run import load_perception_result
from .pipelines.captions import (CAPTIONS_FILE, caption_class_hits, caption_images, random_caption_baseline,
                                 write_captions)
from .pipelines.keyframes import KEYFRAMES_FILE, KeyframeConfig, blurry_start_frames, reconstruct_keyframes, \
    write_keyframes
from .semantics_run import load_semantics_result, semantics_dir
from .train import write_json_atomic

SUMMARY_FILE = "keyframes.json"
N_WAYS = (2, 50)
SCORED_METRICS = ("ssim_s2", "pixcorr", "psnr")


@dataclass
class KeyframeResult:
    """What :func:`reconstruct_semantics` made: ``folder``, the ``summary`` (keyframes.json) and whether a finished
    run was ``reused``."""

    folder: Path
    summary: dict
    reused: bool

    @property
    def scores(self) -> dict:
        return self.summary["scores"]

    @property
    def keyframes(self) -> np.ndarray:
        """uint8 (N_test, H, W, 3), memory-mapped."""
        return np.load(self.folder / KEYFRAMES_FILE, mmap_mode="r")

    @property
    def captions(self) -> list[str]:
        return json.loads((self.folder / CAPTIONS_FILE).read_text())


def keyframes_dir(cfg: RunConfig, subject: int | None = None, variant: str = "") -> Path:
    """``semantics/`` (the default keyframes) or ``semantics/<variant>/`` (e.g. ``start_noise``)."""
    if variant and (not variant.replace("_", "").isalnum() or variant != variant.lower()):
        raise ValueError(f"keyframe variant: expected a lower-case name of letters, digits and '_' (e.g. "
                         f"'start_noise'), found {variant!r}")
    folder = semantics_dir(cfg, subject)
    return folder / variant if variant else folder


def ground_truth_keyframes(store: Store, keyframe_index: int) -> np.ndarray:
    """uint8 (N_test, H, W, 3): stored frame ``keyframe_index`` of every test clip, the SR's target frame."""
    return np.array(store.frames_test[:, keyframe_index])          # a copy: torch wants writable memory


def score_keyframes(keyframes: np.ndarray, truth: np.ndarray, *, classifier, clip, captions: list[str] | None = None,
                    store: Store | None = None, seed: int = 0) -> dict:
    """The scores of the module docstring for keyframes uint8 (N, H, W, 3) against ``truth`` (same shape).

    ``classifier`` is the frame classifier, ``clip`` the CLIP bundle; ``captions`` (N strings) are scored against
    ``store.labels_test`` when the store has labels, beside the random-training-caption baseline."""
    pred, gt = keyframes[:, None], truth[:, None]                         # one-frame videos, as the metrics take
    scores = {m: v["mean"] for m, v in summarize(frame_scores(pred, gt, SCORED_METRICS)).items()}
    pred_probs, gt_probs = frame_class_probabilities(classifier, pred), frame_class_probabilities(classifier, gt)
    scores["n_way"] = {str(n): {k: v for k, v in n_way_accuracy(pred_probs, gt_probs, n, seed=seed).as_dict().items()
                                if k != "per_item"} for n in N_WAYS}
    scores["classifier_top1"] = float((pred_probs.argmax(-1) == gt_probs.argmax(-1)).mean())
    embed = [clip_video_embeddings(clip, x)[:, 0] for x in (pred, gt)]
    scores["identification"] = retrieval_top1(*embed, seed=seed).as_dict()
    if captions is not None and store is not None and store.labels_test is not None:
        hits = caption_class_hits(captions, np.asarray(store.labels_test))
        baseline = random_caption_baseline(store.captions_train, np.asarray(store.labels_test), seed)
        scores["captions"] = {"class_named": float(hits.mean()), "random_training_caption": baseline.rate,
                              "random_training_caption_se": baseline.se, "ratio": float(hits.mean() / baseline.rate)
                              if baseline.rate > 0 else None}
    return json_clean(scores)


def reconstruct_semantics(cfg: RunConfig, subject: int | None = None, config: KeyframeConfig | None = None, *,
                          variant: str = "", store: Store | None = None, retrain: bool = False,
                          progress: bool = True) -> KeyframeResult:
    """Draw (or reuse) one subject's test keyframes and captions and score them (module docstring).

    Args:
        cfg: the run config (profile, seed, paths, device).
        subject: default ``cfg.subject``.
        config: how keyframes are drawn; default :meth:`KeyframeConfig.for_config` (the profile's, seeded by
            ``cfg.seed``, shorter in quick mode).
        variant: a subfolder of ``semantics/`` for a non-default config ("" = the default keyframes of §7).
        store: the subject's store (default :func:`~neuroclips_core.data.ensure.ensure_store`).
        retrain: draw again even when a finished run with the same parameters is there.

    Raises:
        FileNotFoundError: chapter 02's PR or the SR (:func:`~neuroclips_core.semantics_run.train_semantics`) has
            not run for this subject; the message names what to run.
    """
    subject = int(subject or cfg.subject)
    config = config or KeyframeConfig.for_config(cfg)
    out = keyframes_dir(cfg, subject, variant)
    perception, semantics = load_perception_result(cfg, subject), load_semantics_result(cfg, subject)
    device = cfg.torch_device()
    store = store_with_frames(cfg, subject, store, "keyframes are scored against the test clips' frames", progress)
    unclip, vae, captioner = (profile_role(cfg, role, device) for role in ("unclip", "vae", "captioner"))
    params = json.loads(json.dumps({
        "config": config.to_dict(), "variant": variant, "subject": subject,
        "perception": perception.summary["params"], "semantics": semantics.summary["params"],
        "weights": {"unclip": module_fingerprint(unclip.unet), "vae": module_fingerprint(vae),
                    "captioner": module_fingerprint(captioner.model)}}))
    summary_path = out / SUMMARY_FILE
    if not retrain and summary_path.is_file() and (out / KEYFRAMES_FILE).is_file() and (out / CAPTIONS_FILE).is_file():
        summary = json.loads(summary_path.read_text())
        if summary.get("params") == params:
            return KeyframeResult(out, summary, True)

    tokens = semantics.prior_tokens()
    blurry = blurry_start_frames(perception.blurry(), config)
    if len(tokens) != len(blurry) or len(tokens) != store.n_test:
        raise ValueError(f"subject {subject}: the SR's prior tokens ({len(tokens)} clips), the PR's blurry videos "
                         f"({len(blurry)}) and the store's test set ({store.n_test}) must be the same clips; rerun "
                         "chapters 02 and 03 on this store (their runs are from another one)")
    out.mkdir(parents=True, exist_ok=True)
    timings = {}
    t0 = time.monotonic()
    keyframes = reconstruct_keyframes(unclip, vae, np.asarray(tokens, np.float32), blurry, config,
                                      config.clip_seeds(len(tokens)), output_size=tuple(store.frames_test.shape[2:4]),
                                      progress=progress)
    timings["keyframes_s"] = round(time.monotonic() - t0, 1)
    write_keyframes(out, keyframes, {"config": config.to_dict(), "subject": subject})
    t0 = time.monotonic()
    captions = caption_images(captioner, keyframes)
    timings["captions_s"] = round(time.monotonic() - t0, 1)
    write_captions(out, captions, {"subject": subject, "source": "keyframes"})

    keyframe_index = int(semantics.summary["keyframe_index"])
    t0 = time.monotonic()
    scores = score_keyframes(keyframes, ground_truth_keyframes(store, keyframe_index),
                             classifier=profile_role(cfg, "frame_classifier", device),
                             clip=profile_role(cfg, "clip", device), captions=captions, store=store, seed=cfg.seed)
    timings["score_s"] = round(time.monotonic() - t0, 1)
    summary = {"subject": subject, "params": params, "keyframe_index": keyframe_index, "n_test": int(len(keyframes)),
               "scores": scores, "timings": timings}
    write_json_atomic(summary_path, summary)          # last: its presence means the run finished
    return KeyframeResult(out, summary, False)
