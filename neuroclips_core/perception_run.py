"""Chapter 02's core: train (or resume, or reuse) one subject's Perception Reconstructor and write its artifacts.

    from neuroclips_core.config import make_config
    from neuroclips_core.perception_run import train_perception

    result = train_perception(make_config(subject=2))      # store, VAE targets, ridge, training, test videos
    result.metrics["pr"]["ssim_s2"]["mean"], result.metrics["verdict"]
    result.blurry()                                         # uint8 (N_test, 6, H, W, 3)
    result.baseline("ridge"), result.history["epochs"], result.load_model(n_voxels=...)

``train_perception(cfg)`` does every step, each one skipped when its result is already there::

    runs/<profile>/subjNN/perception/
        checkpoint.pt        the selected PR with its refiner (config, weights, voxel count; load_perception reads it)
        history.json         training curves (per-epoch train/validation means, training loss every few steps)
        blurry_test.npy      uint8 (N_test, 6, H, W, 3): decoded predictions for the test clips
        metrics.json         PR and baselines: SSIM S1/S2/S2', PSNR, pixel correlation, motion agreement
        baselines/mean_frame_test.npy, baselines/ridge_test.npy    the baselines' videos, same shape
        train/               last.pt, best.pt, history.json: the resumable training state (stage 1)
        refine/              the same for stage 2, the refiner (sim recipe)
    runs/<profile>/cache/vae_latents/<vae>-<frames>.npy   VAE latents of the training frames (the stimuli are
                                                           the same for every subject, so they are encoded once)

Training uses the training split of the store's training clips; the kept epoch is the one with the lowest
validation MAE on whole held-out training segments (:meth:`~neuroclips_core.data.store.Store.train_val_split`);
the test set is only predicted, once, at the end.  Test inputs are the mean of the 10 test repetitions (as the
official code); training draws one of the 2 repetitions per clip and epoch (the official code alternates them).

Baselines (same data, same frames, same metrics): the **mean training frame** (every test frame predicted as the
per-pixel mean of the training split's frames) and **ridge** regression from the fMRI (mean of repetitions) to the
same VAE latents, its penalty chosen on the validation split (:class:`~neuroclips_core.models.ridge.RidgeRegression`),
decoded by the same VAE.

Recipes (:class:`PerceptionRunConfig`): ``paper()`` is the official one (paper sizes, Eq. 1, random
initialisation, batch 40, lr 3e-4, 150 epochs, for a GPU).  ``sim()``, the default on cc2017-sim, fits a few CPU
minutes and departs from it on purpose, each switchable: the sim model sizes, lr 1e-3 over 10 epochs, the
Inception Extension's first layer started in the ridge baseline's predictive subspace (``init_from_ridge``),
:data:`SIM_LOSS` (Eq. 1's MAE without its contrastive term), a frozen ridge skip path under the network
(``ridge_skip``: the model starts at ridge's prediction and its own path opens through a gate started at 0), a
stage 2 that trains a latent refiner through the frozen VAE decoder on out-of-fold skip latents (``refine_epochs``;
:mod:`~neuroclips_core.perception_refine`) and a Gaussian low-pass of the decoded frames whose width is chosen on
the validation clips for SSIM S2 (``smoothing``; each baseline gets its own width the same way).

Why, measured.  On cc2017-sim default (subject 1, an early VAE stand-in, 10 epochs): from random weights the PR
stayed below ridge on latent error after as many epochs; with Eq. 1's term at full weight the predictions lost the
content (pixel correlation 0.07) while moving the most; without any within-clip term they did not move at all
(identical frames).  On an unseen seed (default seed 11, subject 1, the shipped VAE stand-in, 10 epochs), without
the skip and the low-pass: the PR scored pixel correlation 0.40 and PSNR 19.6 dB against ridge's 0.48 and 20.8 dB,
and SSIM S2 0.709 against the texture-free mean training frame's 0.769; low-passing at sigma 3 px lifted ridge to
0.773 SSIM S2 and 0.554 pixel correlation, the PR to 0.762 and 0.461.  With skip, low-pass and the MAE alone: PR
0.777 SSIM S2 / 0.553 pixel correlation, ridge 0.777 / 0.559: level with ridge on SSIM, still just below it on
pixel correlation, above the mean frame (see :data:`SIM_LOSS` for the loss).  What was left lies in decoding: ridge
fitted to pixels instead of latents scored 0.784 / 0.579 on subject 1's validation clips against 0.774 / 0.521,
which is what the refiner recovers in part (numbers in :mod:`~neuroclips_core.perception_refine`).  After the
low-pass the PR's frames no longer moved (motion Spearman 0.005 on seed 12): the motion path
(:mod:`~neuroclips_core.motion_path`, ``motion_path``) moves them along a displacement decoded from the fMRI; the
scores without it are kept as ``pr_static``.

``quick()`` trains the sim recipe on at most 480 clips for 2 epochs.

A run is reused when ``metrics.json`` records the same parameters (run config, seed, store and VAE
fingerprints); an interrupted run resumes from ``train/last.pt``; changed parameters retrain from scratch.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .artifacts import (StepRecipe, StepResult, cached_rows, json_clean, module_fingerprint, profile_role,
                        read_finished_run, start_run_dir, step_dir, store_fingerprint, store_with_frames,
                        train_val_rows)
from .config import ConfigError, RunConfig
from .data.store import ClipDataset, Store
from .metrics import video_metrics
from .models.losses import LossConfig, PerceptionLoss
from .models.perception import PerceptionConfig, PerceptionReconstructor, count_parameters, load_perception
from .models.ridge import RidgeRegression
from .motion_path import MotionReadout, apply_displacement, clip_displacement
from .pipelines.blurry import (SMOOTHING_SIGMAS, decode_latents, encode_frames, predict_latents, save_npy_atomic,
                               select_smoothing, smooth_videos)
from .train import FitSettings, fit, write_json_atomic


# ================================================================================================== config
#: The sim recipe's loss: Eq. 1's MAE alone (its within-clip contrastive term at weight 0).  At full weight that
#: term swamps the MAE on cc2017-sim (a clip's six frames 1/3 s apart are near copies, so telling them apart pushes
#: the prediction off the latents: pixel correlation 0.07); without the ridge skip a weaker mix (0.25, plus a
#: CLIP-style term across the batch) was needed for the frames to move at all.  With the skip, ridge's per-frame
#: prediction carries the motion, and any contrastive weight only costs fidelity: seed 11, subject 1, validation
#: MAE 0.4216 (best at epoch 1, rising after) with that mix against 0.4165 (epoch 7) with the MAE alone.
SIM_LOSS = LossConfig(kind="paper", contrastive_weight=0.0)

#: :class:`PerceptionRunConfig` fields that only the scoring after training reads: changing them re-scores a
#: finished run (new low-pass choice, baselines, test videos) without training it again.
EVALUATION_SETTINGS = ("smoothing", "motion_path", "baselines", "batch_size_eval")


@dataclass(frozen=True)
class PerceptionRunConfig(StepRecipe):
    """How the PR is trained for a subject (everything here is recorded and checked on reuse/resume).

    Attributes:
        size: ``"sim"`` or ``"paper"`` model sizes (:class:`PerceptionConfig`); ``model`` overrides fields.
        loss: :class:`LossConfig` (``kind="paper"``: Eq. 1; ``"official"``: L1 + soft token distillation).
        epochs, batch_size, lr, weight_decay, pct_start, grad_clip: optimisation (AdamW + OneCycle).
        repetition: training fMRI per clip: ``"random"`` (one of the 2 per epoch) or ``"mean"``.
        val_fraction: share of training segments held out for model selection.
        max_train_clips, max_val_clips: use only the first this many clips of the training / validation split
            (quick mode; only those clips' frames are encoded).
        init_from_ridge: start the Inception Extension's first layer from the ridge baseline's predictive
            subspace (:meth:`PerceptionReconstructor.init_from_ridge`; the official code starts at random).
        ridge_skip: add the ridge solution as a frozen linear path under the network
            (:attr:`PerceptionConfig.linear_skip`); not in the paper or the official code.
        smoothing: Gaussian widths (px) to choose the blurry video's low-pass from, on the validation clips
            (:func:`~neuroclips_core.pipelines.blurry.select_smoothing`); ``(0.0,)``: none (the paper recipe).
        refine_epochs: > 0 adds stage 2, a :class:`~neuroclips_core.models.perception.LatentRefiner` of
            ``refiner_channels`` trained this many epochs at ``refine_lr`` through the frozen VAE decoder on
            out-of-fold skip latents (``refine_folds``), by a pixel MSE low-passed at ``refine_blur`` px
            (:mod:`neuroclips_core.perception_refine`; needs ``ridge_skip``); 0: none (the paper recipe).
        motion_path: translate the blurry video's frames along a displacement decoded from the fMRI
            (:mod:`neuroclips_core.motion_path`; not in the paper or the official code); False: the PR's frames as
            decoded (the paper recipe).
        baselines: also score the mean-frame and ridge baselines.
        batch_size_eval: batch size of prediction, VAE encoding and decoding.
    """

    size: str = "sim"
    model: dict = field(default_factory=dict)
    loss: LossConfig = field(default_factory=lambda: SIM_LOSS)
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    pct_start: float | None = None
    grad_clip: float | None = None
    repetition: str = "random"
    val_fraction: float = 0.1
    max_train_clips: int | None = None
    max_val_clips: int | None = None
    init_from_ridge: bool = True
    ridge_skip: bool = True
    smoothing: tuple = SMOOTHING_SIGMAS
    refine_epochs: int = 3
    refiner_channels: int = 64
    refine_lr: float = 1e-3
    refine_blur: float = 2.0
    refine_folds: int = 5
    motion_path: bool = True
    baselines: bool = True
    batch_size_eval: int = 64

    def __post_init__(self):
        self.check_choices()
        if self.refine_epochs and not self.ridge_skip:
            raise ConfigError("PerceptionRunConfig: refine_epochs > 0 needs ridge_skip=True (the refiner learns on "
                              "out-of-fold ridge-skip latents); set refine_epochs=0 or ridge_skip=True")
        if self.refine_epochs and self.refiner_channels < 1:
            raise ConfigError(f"PerceptionRunConfig: refine_epochs > 0 needs refiner_channels >= 1, found "
                              f"{self.refiner_channels}")

    @classmethod
    def quick(cls, **overrides) -> "PerceptionRunConfig":
        """Quick mode (tests, CI): the sim recipe on 240 training and 120 validation clips for 2 epochs (and 1
        of the refiner, 16 channels wide)."""
        return cls(**{"epochs": 2, "max_train_clips": 240, "max_val_clips": 120, "refine_epochs": 1,
                      "refiner_channels": 16, **overrides})

    @classmethod
    def paper(cls, **overrides) -> "PerceptionRunConfig":
        """The official recipe on a GPU: paper sizes, batch 40, lr 3e-4, 150 epochs (App. A; the README's 80)."""
        return cls(**{"size": "paper", "epochs": 150, "batch_size": 40, "lr": 3e-4, "init_from_ridge": False,
                      "ridge_skip": False, "smoothing": (0.0,), "refine_epochs": 0, "motion_path": False,
                      "loss": LossConfig(),
                      **overrides})

    def model_config(self, n_voxels: int, latent_shape: tuple[int, int, int], token_dim: int = 0) -> PerceptionConfig:
        """The PR's sizes for a subject's voxel count and the VAE's latent shape; ``token_dim``: the official
        loss's teacher token width (0 for Eq. 1)."""
        extra = {"token_dim": int(token_dim), "linear_skip": bool(self.ridge_skip),
                 "refiner_channels": int(self.refiner_channels) if self.refine_epochs else 0, **self.model}
        if self.size == "paper":
            base = PerceptionConfig.paper(n_voxels, **extra)
            if base.latent_shape != tuple(latent_shape):
                raise ConfigError(f"the paper-size PR predicts latents {base.latent_shape} but the VAE gives "
                                  f"{tuple(latent_shape)}; use 224 px frames with the SD VAE, or size='sim'")
            return base
        return PerceptionConfig.sim(n_voxels, latent_shape, **extra)

    def fit_settings(self, seed: int) -> FitSettings:
        return FitSettings(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, weight_decay=self.weight_decay,
                           pct_start=self.pct_start, grad_clip=self.grad_clip, select="mae", mode="min", seed=seed)

    def refine_settings(self, seed: int) -> FitSettings:
        """Stage 2's optimisation: AdamW + OneCycle at ``refine_lr`` (warm-up 30 %), kept by validation pixel MSE."""
        return FitSettings(epochs=self.refine_epochs, batch_size=self.batch_size, lr=self.refine_lr,
                           weight_decay=self.weight_decay, pct_start=0.3, select="pixel_mse", mode="min", seed=seed)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["loss"] = self.loss.to_dict()
        return d


# ================================================================================================ datasets
class LatentClips(torch.utils.data.Dataset):
    """A :class:`~neuroclips_core.data.store.ClipDataset` split plus each clip's target latents.

    Items: ``{"fmri": (V,), "latents": (F, C, h, w)}`` (+ ``"frames"`` (F, 3, H, W) in [0, 1] with frames).
    ``latents`` is indexed by the store's clip row (``item["index"]``); ``subset`` keeps the first rows of the split.
    """

    def __init__(self, clips: ClipDataset, latents: np.ndarray, subset: int | None = None):
        self.clips, self.latents = clips, latents
        self.n = len(clips) if subset is None else min(len(clips), int(subset))

    def set_epoch(self, epoch: int) -> None:
        self.clips.set_epoch(epoch)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        item = self.clips[i]
        out = {"fmri": item["fmri"], "latents": torch.from_numpy(np.ascontiguousarray(self.latents[item["index"]]))}
        if "frames" in item:
            out["frames"] = item["frames"]
        return out


# ============================================================================================== targets
def cached_latents(vae, frames: np.ndarray, cache_dir: str | os.PathLike, rows: np.ndarray | None = None,
                   batch_size: int = 64, progress: bool = True) -> np.ndarray:
    """VAE latents (N, F, C, h, w) of ``frames`` (N, F, H, W, 3) at ``rows`` (default all; other rows are NaN).

    Read from ``cache_dir`` when this VAE already encoded these rows of the same frames (the key holds the VAE's,
    the frames' and the rows' fingerprints), else encoded and saved there (atomically): :func:`~.artifacts.cached_rows`.
    The stimuli are the same for every subject, so the subjects of one dataset share the cache.
    """
    encoded, rows = cached_rows(lambda view: encode_frames(vae, view, batch_size=batch_size, progress=progress),
                                frames, cache_dir, module_fingerprint(vae)[:16], rows)
    out = np.full((len(frames), *encoded.shape[1:]), np.nan, np.float32)
    out[rows] = encoded
    return out


# ================================================================================================ models
def default_vae(cfg: RunConfig, device=None):
    """The VAE of ``cfg``'s profile: the shipped stand-in (sim) or ``weights.yml``'s ``vae`` (paper; the file is
    ``cfg.extra["weights"]`` or ``$NEUROCLIPS_WEIGHTS``)."""
    return profile_role(cfg, "vae", device)


def default_teacher(cfg: RunConfig):
    """The official loss's token teacher: the frame-classifier stand-in's ViT tokens (sim).  The paper's
    ConvNeXt-XL teacher is not a zoo role; pass ``teacher=`` to :func:`train_perception` for the paper profile."""
    if cfg.profile != "sim":
        raise ConfigError("the official PR loss needs a teacher network (the official code: MindEye2's ConvNeXt-XL, "
                          "not a zoo role): pass teacher=<module: frames (N, 3, H, W) in [0, 1] -> tokens (N, T, D)> "
                          "to train_perception, or use the paper's Eq. 1 (LossConfig(kind='paper'))")
    from .models.losses import ViTTokenTeacher
    from .zoo import load_standin

    return ViTTokenTeacher(load_standin("frame_classifier"))


# ================================================================================================ results
class PerceptionResult(StepResult):
    """What :func:`train_perception` made: ``metrics`` is metrics.json, ``history`` history.json, ``checkpoint``
    the PR."""

    @property
    def metrics(self) -> dict:
        return self.summary

    def blurry(self) -> np.ndarray:
        """uint8 (N_test, 6, H, W, 3), memory-mapped."""
        return self.array("blurry_test.npy")

    def baseline(self, name: str) -> np.ndarray:
        """``"mean_frame"`` or ``"ridge"`` test videos, uint8 like :meth:`blurry`."""
        return self.array(f"baselines/{name}_test.npy")

    def load_model(self, n_voxels: int | None = None, device="cpu") -> PerceptionReconstructor:
        return load_perception(self.checkpoint, n_voxels=n_voxels, device=device, subject=self.subject)[0]


def perception_dir(cfg: RunConfig, subject: int | None = None) -> Path:
    return step_dir(cfg, subject, "perception")


def load_perception_result(cfg: RunConfig, subject: int | None = None) -> PerceptionResult:
    """The artifacts of a finished run (no training); FileNotFoundError naming the command if there are none."""
    subject = subject or cfg.subject
    folder = perception_dir(cfg, subject)
    metrics, history = read_finished_run(folder, "metrics.json", f"Perception Reconstructor run for subject {subject}",
                                         "train_perception(cfg) (or chapter 02)")
    return PerceptionResult(folder, subject, metrics, history, True)


# ================================================================================================ training
def train_perception(cfg: RunConfig, subject: int | None = None, run: PerceptionRunConfig | None = None, *,
                     store: Store | None = None, vae=None, teacher=None, retrain: bool = False,
                     progress: bool = True, stop_after_epochs: int | None = None) -> PerceptionResult:
    """Train (or resume, or reuse) the PR of ``subject`` and write its artifacts (module docstring).

    Args:
        cfg: the run config (profile, seed, paths, device).
        subject: default ``cfg.subject``.
        run: the recipe; default :meth:`PerceptionRunConfig.for_config` (quick / sim / paper).
        store: the subject's processed store (default: :func:`~neuroclips_core.data.ensure.ensure_store`).
        vae: the VAE whose latents the PR predicts (default :func:`default_vae`).
        teacher: the official loss's token teacher (default :func:`default_teacher`; unused by Eq. 1).
        retrain: train from scratch even if a finished or interrupted run is there.
        progress: progress bars and per-epoch lines.
        stop_after_epochs: stop training after this many epochs, counted over stage 1 and the refiner's stage 2
            (a deliberate interruption); the returned result then has ``metrics == {}`` and the next call resumes.

    Returns:
        :class:`PerceptionResult` (``reused`` tells whether a finished run was found).
    """
    subject = int(subject or cfg.subject)
    run = run or PerceptionRunConfig.for_config(cfg)
    device = cfg.torch_device()
    store = store_with_frames(cfg, subject, store, "the PR learns from the clips' frames", progress)
    vae = vae if vae is not None else default_vae(cfg, device)
    out = perception_dir(cfg, subject)
    # what training depends on (a change retrains) and what only the evaluation after it reads (a change re-scores)
    recipe = run.to_dict()
    evaluation = json.loads(json.dumps({k: recipe.pop(k) for k in EVALUATION_SETTINGS}))
    params = {"run": recipe, "seed": cfg.seed, "subject": subject, "store": store_fingerprint(store),
              "vae": module_fingerprint(vae), "n_voxels": store.n_voxels}
    params = json.loads(json.dumps(params))
    if start_run_dir(out, params, "metrics.json", ("checkpoint.pt", "blurry_test.npy"), retrain, evaluation):
        return load_perception_result(cfg, subject)
    timings = {}

    t0 = time.monotonic()
    i_tr, i_va = train_val_rows(store, run.val_fraction, run.max_train_clips, run.max_val_clips)
    latents = cached_latents(vae, store.frames_train, cfg.run_root / cfg.profile / "cache" / "vae_latents",
                             np.concatenate([i_tr, i_va]), run.batch_size_eval, progress)
    timings["encode_targets_s"] = round(time.monotonic() - t0, 1)
    ridge, ridge_x = None, None
    if run.baselines or run.init_from_ridge or run.ridge_skip:   # fitted first: the baseline, the PR's start
        t0 = time.monotonic()
        ridge, ridge_x = _fit_ridge(store, latents, run)
        timings["ridge_s"] = round(time.monotonic() - t0, 1)
    official = run.loss.kind == "official"
    train_set = LatentClips(ClipDataset(store, "train", repetition=run.repetition, with_frames=official, seed=cfg.seed,
                                        val_fraction=run.val_fraction), latents, run.max_train_clips)
    val_set = LatentClips(ClipDataset(store, "val", repetition="mean", with_frames=official,
                                      val_fraction=run.val_fraction), latents, run.max_val_clips)
    if official:
        teacher = teacher if teacher is not None else default_teacher(cfg)
        with torch.no_grad():                            # the student's tokens must be as wide as the teacher's
            token_dim = teacher(val_set[0]["frames"][:1]).shape[-1]
    model_cfg = run.model_config(store.n_voxels, latents.shape[2:], token_dim if official else 0)
    cfg.seed_everything()                                # the model's initial weights
    model = PerceptionReconstructor(model_cfg)
    if run.init_from_ridge:
        model.init_from_ridge(ridge.coef_, torch.from_numpy(ridge_x))
    if run.ridge_skip:
        model.init_skip_from_ridge(ridge.coef_, ridge.intercept_, ridge.x_mean_)
    if model.refiner is not None:
        model.refiner.requires_grad_(False)              # stage 2's; the identity during stage 1
    loss = PerceptionLoss(run.loss, teacher=teacher if official else None)

    def loss_fn(m, batch, generator):
        return loss(m(batch["fmri"], return_tokens=official), batch, generator)

    t0 = time.monotonic()
    result = fit(model, loss_fn, train_set, val_set, run.fit_settings(cfg.seed), out / "train",
                 identity={"params": params, "model": model_cfg.to_dict()}, device=device, progress=progress,
                 stop_after_epochs=stop_after_epochs)
    timings["train_s"] = round(time.monotonic() - t0, 1)
    if not result.finished:
        return PerceptionResult(out, subject, {}, result.history, False)
    model = result.model.to(device)
    val = _Validation(store, i_va, vae, run, progress)
    test_fmri = np.asarray(store.fmri_test, dtype=np.float32).mean(axis=1)      # (N_test, V): the 10 repetitions
    history, stage1, refined = result.history, None, None
    if model.refiner is not None:
        # stage 1's predictions, kept to score what the refiner adds (it is still the identity here)
        stage1 = {"val": predict_latents(model, val.fmri, run.batch_size_eval),
                  "test": predict_latents(model, test_fmri, run.batch_size_eval)}
        t0 = time.monotonic()
        stop = None if stop_after_epochs is None else stop_after_epochs - run.epochs   # counted over both stages
        refined = _refine(model, vae, store, latents, ridge, run, cfg.seed, out, params, device, progress, stop)
        timings["refine_s"] = round(time.monotonic() - t0, 1)
        if not refined.finished:
            return PerceptionResult(out, subject, {}, {**result.history, "refine": refined.history}, False)
        history = {**result.history, "refine": refined.history}
    model.save(out / "checkpoint.pt", subject=subject, best_epoch=result.best_epoch, val_mae=result.best_score,
               params=params)
    write_json_atomic(out / "history.json", history)

    t0 = time.monotonic()
    sigma, val_scores = val.smoothing(lambda x: predict_latents(model, x, run.batch_size_eval))
    decoded = decode_latents(vae, predict_latents(model, test_fmri, run.batch_size_eval),
                             run.batch_size_eval, progress)
    blurry = smooth_videos(decoded, sigma)
    motion = None
    if run.motion_path:
        t_motion = time.monotonic()
        static = blurry
        readout, motion = _motion_readout(store, val, ridge_x, run)
        blurry = apply_displacement(static, readout.predict(test_fmri))
        timings["motion_path_s"] = round(time.monotonic() - t_motion, 1)
    save_npy_atomic(out / "blurry_test.npy", blurry)
    timings["predict_decode_s"] = round(time.monotonic() - t0, 1)
    gt = np.asarray(store.frames_test)
    metrics = {"subject": subject, "params": params, "evaluation": evaluation, "n_parameters": count_parameters(model),
               "n_train": len(train_set), "n_val": len(val_set), "n_test": int(len(gt)),
               "best_epoch": result.best_epoch, "val_mae": result.best_score,
               "model": model_cfg.to_dict(), "pr": video_metrics(blurry, gt),
               "pr_unsmoothed": video_metrics(decoded, gt),
               "smoothing": {"pr": {"sigma": sigma, "val_ssim_s2": val_scores}}}
    if motion is not None:
        metrics["pr_static"] = video_metrics(static, gt)
        metrics["motion_path"] = motion
    if run.ridge_skip:
        metrics["decoder_gate"] = float(model.decoder_gate.detach())
    if stage1 is not None:
        s1_sigma, s1_scores = val.smoothing(lambda x: stage1["val"])
        s1_videos = smooth_videos(decode_latents(vae, stage1["test"], run.batch_size_eval, progress), s1_sigma)
        metrics["pr_stage1"] = video_metrics(s1_videos, gt)
        metrics["smoothing"]["pr_stage1"] = {"sigma": s1_sigma, "val_ssim_s2": s1_scores}
        metrics["refine"] = {"best_epoch": refined.best_epoch, "val_pixel_mse": refined.best_score,
                             "n_parameters": count_parameters(model.refiner)}
    if run.baselines:
        t0 = time.monotonic()
        metrics["baselines"] = _baselines(store, vae, ridge, latents.shape[1:], test_fmri, gt, out, run, val,
                                          metrics["smoothing"], progress)
        metrics["ridge"] = {"lambda": float(ridge.lambda_), "form": ridge.form_,
                            "val_mse": {f"{k:.4g}": v for k, v in ridge.val_mse_.items()}}
        timings["baselines_s"] = round(time.monotonic() - t0, 1)
        metrics["verdict"] = verdict(metrics)
    metrics["timings"] = timings
    metrics = json_clean(metrics)
    write_json_atomic(out / "metrics.json", metrics)
    return PerceptionResult(out, subject, metrics, history, False)


def _refine(model: PerceptionReconstructor, vae, store: Store, latents: np.ndarray, ridge: RidgeRegression,
            run: PerceptionRunConfig, seed: int, out: Path, params: dict, device, progress: bool,
            stop_after_epochs: int | None = None):
    """Stage 2 (:mod:`~neuroclips_core.perception_refine`): the refiner, trained on out-of-fold skip latents of
    the training clips, kept by validation pixel MSE.  Updates ``model`` in place; returns fit's result."""
    from .perception_refine import RefineClips, out_of_fold_skip, train_refiner
    from .train import FitResult

    if stop_after_epochs is not None and stop_after_epochs <= 0:       # stopped before stage 2: nothing to build
        return FitResult(model.refiner, {"epochs": []}, 0, float("nan"), False, 0)
    i_tr, i_va = train_val_rows(store, run.val_fraction, run.max_train_clips, run.max_val_clips)
    fmri_tr = np.asarray(store.fmri_train[i_tr], np.float32)
    oof = out_of_fold_skip(fmri_tr, latents[i_tr].reshape(len(i_tr), -1), float(ridge.lambda_), run.refine_folds,
                           seed)
    train_set = RefineClips(fmri_tr, store.frames_train[i_tr], oof, latents.shape[1:], seed)
    val_set = RefineClips(np.asarray(store.fmri_train[i_va], np.float32), store.frames_train[i_va])
    vae = vae.to(device)
    return train_refiner(model, vae, train_set, val_set, run.refine_settings(seed), out / "refine",
                         identity={"params": params, "model": model.config.to_dict()}, blur_sigma=run.refine_blur,
                         device=device, progress=progress, stop_after_epochs=stop_after_epochs)


def _fit_ridge(store: Store, latents: np.ndarray, run: PerceptionRunConfig) -> tuple[RidgeRegression, np.ndarray]:
    """Ridge fMRI (mean of the 2 repetitions) -> flattened latents on the training split, penalty chosen on the
    validation split.  Returns (the fit, its training inputs (n, V))."""
    i_tr, i_va = train_val_rows(store, run.val_fraction, run.max_train_clips, run.max_val_clips)
    x_tr = np.asarray(store.fmri_train[i_tr], np.float32).mean(axis=1)
    x_va = np.asarray(store.fmri_train[i_va], np.float32).mean(axis=1)
    flat = latents.reshape(len(latents), -1)
    return RidgeRegression().fit(x_tr, flat[i_tr], x_va, flat[i_va]), x_tr


def _motion_readout(store: Store, val: "_Validation", x_tr: np.ndarray | None, run: PerceptionRunConfig):
    """The motion path's readout (:class:`~neuroclips_core.motion_path.MotionReadout`), fitted on the training
    clips' displacements (measured on their frames), penalties chosen on the validation clips.  Returns (readout,
    its summary for metrics.json)."""
    i_tr, _ = train_val_rows(store, run.val_fraction, run.max_train_clips, run.max_val_clips)
    if x_tr is None:
        x_tr = np.asarray(store.fmri_train[i_tr], np.float32).mean(axis=1)
    readout = MotionReadout().fit(x_tr, clip_displacement(store.frames_train, rows=i_tr), val.fmri,
                                  clip_displacement(val.frames))
    summary = {"val_r": readout.val_r, "lambda_velocity": float(readout.velocity.lambda_),
               "lambda_speed": float(readout.speed.lambda_)}
    return readout, summary


class _Validation:
    """The validation clips' frames and mean fMRI, to choose each method's low-pass width on (never the test set)."""

    def __init__(self, store: Store, rows: np.ndarray, vae, run: PerceptionRunConfig, progress: bool):
        self.fmri = np.asarray(store.fmri_train[rows], np.float32).mean(axis=1)       # (n_val, V)
        self.frames = np.asarray(store.frames_train[rows])                             # (n_val, F, H, W, 3)
        self.vae, self.run, self.progress = vae, run, progress

    def smoothing(self, predict) -> tuple[float, dict]:
        """``predict``: fMRI (n, V) -> latents (n, F, C, s, s).  Returns (sigma, {sigma: validation SSIM S2})."""
        if len(self.run.smoothing) == 1:                  # nothing to choose (the paper recipe: no low-pass)
            return float(self.run.smoothing[0]), {}
        decoded = decode_latents(self.vae, predict(self.fmri), self.run.batch_size_eval, self.progress)
        return select_smoothing(decoded, self.frames, self.run.smoothing)


def _baselines(store: Store, vae, ridge: RidgeRegression, latent_shape: tuple, test_fmri: np.ndarray,
               gt: np.ndarray, out: Path, run: PerceptionRunConfig, val: _Validation, smoothing: dict,
               progress: bool) -> dict:
    """Mean training frame and ridge fMRI -> latents, decoded and low-passed at ridge's own validation-chosen width:
    writes their videos, returns their metrics (and ridge's width into ``smoothing``)."""
    i_tr, _ = train_val_rows(store, run.val_fraction, run.max_train_clips, run.max_val_clips)
    total = np.zeros(gt.shape[2:], np.float64)
    for a in range(0, len(i_tr), 256):                                # chunked: frames may not fit in memory
        total += np.asarray(store.frames_train[i_tr[a:a + 256]], np.float64).sum(axis=(0, 1))
    mean_frame = np.rint(total / (len(i_tr) * gt.shape[1])).astype(np.uint8)
    mean_videos = np.broadcast_to(mean_frame, gt.shape).copy()
    save_npy_atomic(out / "baselines" / "mean_frame_test.npy", mean_videos)
    def ridge_latents(x):
        return ridge.predict(x).reshape(len(x), *latent_shape)

    sigma, val_scores = val.smoothing(ridge_latents)
    smoothing["ridge"] = {"sigma": sigma, "val_ssim_s2": val_scores}
    decoded = decode_latents(vae, ridge_latents(test_fmri), run.batch_size_eval, progress)
    ridge_videos = smooth_videos(decoded, sigma)
    save_npy_atomic(out / "baselines" / "ridge_test.npy", ridge_videos)
    return {"mean_frame": video_metrics(mean_videos, gt), "ridge": video_metrics(ridge_videos, gt),
            "ridge_unsmoothed": video_metrics(decoded, gt)}


def verdict(metrics: dict, keys=("ssim_s2", "pixcorr")) -> dict:
    """The issue's acceptance checks from a metrics.json: PR above every baseline on ``keys``; motion Spearman
    r > 0 at one-sided p < 0.05."""
    pr = metrics["pr"]
    out = {f"{k}_beats_{b}": pr[k]["mean"] > m[k]["mean"] for k in keys for b, m in metrics["baselines"].items()
           if b in ("mean_frame", "ridge")}           # the two baselines (ridge as scored: low-passed)
    motion = pr["motion"]           # positive, and more than chance over the test clips (one-sided p < 0.05)
    out["moves_with_stimulus"] = motion["spearman"] > 0 and motion.get("spearman_p", 1.0) < 0.05
    out["all"] = all(out.values())
    return out
