"""Chapter 03's core, training side: train (or resume, or reuse) one subject's Semantics Reconstructor and prior.

    from neuroclips_core.config import make_config
    from neuroclips_core.semantics_run import train_semantics

    result = train_semantics(make_config(subject=2))   # store, CLIP targets, Reftm, stages, test retrieval, prior
    result.retrieval["test"]["clip_voxels"]["forward"], result.retrieval["test"]["clip_voxels"]["chance"]
    result.prior_tokens()                              # float16 (N_test, T, C): what the keyframe step draws from
    sr, prior, reftm, meta = result.load_models(n_voxels=...)

``train_semantics(cfg)`` does every step, each skipped when its result is already there::

    runs/<profile>/subjNN/semantics/
        checkpoint.pt           the selected SR (config, weights, voxel count) with, in its meta, the prior
                                (config, weights) and the frozen Reftm projector: load_semantics_models reads it
        history.json            {stage: training curves} (per-epoch train/validation means, loss every few steps)
        retrieval.json          test and validation top-1 retrieval with chance, stage summaries, notes, timings
        prior_tokens_test.npy   float16 (N_test, T, C): the prior's tokens for each test clip (seeded DDIM)
        train_<stage>/          last.pt, best.pt, history.json: each stage's resumable training state
    runs/<profile>/cache/clip_tokens/, clip_text/   keyframe tokens and caption embeddings (every subject shares
                                                    them: :mod:`~neuroclips_core.semantics_targets`)
    runs/<profile>/cache/reftm/<clip>-<settings>.pt the pre-trained, frozen Reftm projector
                                                    (:mod:`~neuroclips_core.reftm_pretrain`)

**Data.**  Targets are the CLIP image tokens of each clip's keyframe, the one :func:`~neuroclips_core.zoo.
unclip_sampling.image_tokens` gives and unCLIP is conditioned on.  The keyframe is stored frame **2** of the 6
(``keyframe_index``), as the official training, validation and captioning use: a clip's label and caption come from
the shot covering most of it, and a clip that straddles a cut (about 2 in 5 in cc2017-sim, whose shots last
2.5-8 s) has its cut at a uniform moment c of its 60 raw frames.  The stored frames are raw frames 5 + 10 j, so
frame 2 (raw 25) lies in the majority shot unless 25 < c < 30: with probability 55/60 = 0.92; frame 0 (raw 5) only
with 35/60 = 0.58.  The PR predicts all 6 frames, so the keyframe step can start unCLIP from the blurry frame of the
same index.  (The official training alternates frames 2 and 3 by epoch, paired with repetitions 0 and 1; here one
frame, one of the 2 repetitions drawn per clip and epoch.)  Inputs: training draws a repetition; validation and test
use the mean of the repetitions (2 and 10).  The kept epoch of each stage is chosen on whole held-out training
segments (:meth:`~neuroclips_core.data.store.Store.train_val_split`), never on the test set (the official code
selects stage A by test loss).

**Stages** (:class:`~neuroclips_core.models.semantics_objective.SemanticsObjective`): the ``"official"`` loss recipe
trains the backbone (ridge layer, MLP, clip projector: BiMixCo every epoch + 0.25 Reftm(clip_voxels)), then the
diffusion prior with the SR frozen (30 x prior MSE + 1.0 Reftm(prior x0)); the ``"paper"`` recipe trains Eq. 4
jointly.  Validation, and the epoch kept: stage ``backbone`` by **forward top-1 retrieval of clip_voxels vs the
keyframe tokens inside each validation batch** (the issue's own target, chance 1 / batch size, recorded beside it);
stage ``prior`` by the prior's validation MSE (eval mode: no condition drop, the same noise every epoch); ``joint``
by Eq. 4's total (its contrastive term as plain InfoNCE, comparable across epochs).

**Recipes** (:class:`SemanticsRunConfig`).  ``paper()``: paper sizes, the official two stages (stage A batch 720,
lr 1e-4, 30 epochs; stage B batch 64, lr 3e-4, 150 epochs), random initialisation (the MindEye2 NSD checkpoint the
official code starts from is not loaded: it is one NSD subject's, loaded for every cc2017 subject), for a GPU.
``sim()``, the default on cc2017-sim, keeps the **official two-stage recipe**, for three reasons: it is what the
authors ran; each stage is selected on its own measure; and it is the cheaper one on a CPU, since the backbone
epochs do not pay for the prior and the prior epochs do not pay for the SR's backward pass (the joint Eq. 4 pays
both every step).  Its sizes and lengths follow a CPU budget of minutes per subject on 2 cores.  Measured
here (one thread, CPU time, sim sizes, V = 6000, tokens 64 x 128): an SR training step of 64 clips 0.34 s, a prior
step (depth 4) of 64 clips 1.23 s, 20-step DDIM sampling of 16 clips 2.2 s.  So: the backbone 10 epochs at batch
128, lr 3e-4 (~3840 x 10 clips, ~3.5 CPU minutes); the prior at **depth 2** (half of ``PriorConfig.sim``'s 4) for
**30 epochs** at batch 64, lr 1e-3; the ridge layer starts from the closed-form ridge fMRI -> tokens
(Eq. 3, ``init_from_ridge``, as the PR's sim recipe) since there is no pretrained backbone to start from (16 CPU s
for 1920 clips x 6000 voxels -> 8192 token values, so ~1-1.5 CPU minutes at 3840 clips).  Encoding the 4560
keyframes, the Reftm pre-training (once per CLIP) and sampling the 240 test clips add about a minute.

The prior's length was first 6 epochs at lr 3e-4 (budget, not tuned). That prior was far from converged: on the
**validation split** of seed 12's subject 1 (never the test clips) its samples identified their own clip at 0.006
top-1 in pools of 300 (chance 0.003) while the clip_voxels they are conditioned on did at 0.42, so its tokens
carried almost nothing of the clip into unCLIP. Training it further (measured on that split, the SR frozen,
``benchmarks/probe_prior_training.py``): 16 more epochs at lr 3e-4 took its validation MSE from 0.62 to 0.25 and
sample identification to 0.11; at lr 1e-3, to 0.20 and 0.11, still rising. So 30 epochs at lr 1e-3: ~30 s an epoch
on 2 cores, ~15 minutes, the bulk of the SR's ~20 minutes per subject (seed 12, subjects 1 and 2: 893 and 874 s).
The paper recipe's 150 epochs say the same: the prior is the slow part to train.

``quick()`` trains on at most 240 clips for a few epochs.

The sim recipe departs from the code on purpose in the SR only where said above (ridge start, sizes, lengths,
validation split, frame 2 only); the prior's sampling is seeded once per run (one generator over the test clips in
order), where the official code resets the seed per clip (the same noise for every clip).

**Reftm** needs a caption per training clip (``captions_train.json``).  A store without them (real data before
captioning) trains without the text terms and says so in ``retrieval.json["notes"]``; ``reftm=True`` makes that an
error.  The projector is pre-trained on the pretraining corpus and frozen (:mod:`~neuroclips_core.reftm_pretrain`), or
read from ``reftm_weights`` (the authors' ``coco_tokens_avg_proj.pth``, a (1664, 1280) ``proj``); with the real
bigG, pass it (or a projector pre-trained on real image-caption pairs): the simulated corpus is no place to align
bigG's embeddings.

A run is reused when ``retrieval.json`` records the same parameters (run config, seed, store and CLIP fingerprints);
an interrupted run resumes from ``train_<stage>/last.pt``; changed parameters retrain from scratch.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from .artifacts import (StepRecipe, StepResult, profile_role, read_finished_run, start_run_dir, step_dir,
                        store_fingerprint, store_with_frames, train_val_rows)
from .config import ConfigError, RunConfig
from .data.store import ClipDataset, Store
from .metrics_semantic import retrieval_top1
from .models.blocks import count_parameters
from .models.losses import SemanticsLossConfig
from .models.prior import DiffusionPrior, PriorConfig
from .models.ridge import RidgeRegression
from .models.semantics import ReftmProjector, SemanticsConfig, SemanticsReconstructor, clip_token_shape, load_semantics
from .models.semantics_objective import SELECT, SemanticsObjective, SemanticsTrainee
from .pipelines.blurry import save_npy_atomic
from .reftm_pretrain import ReftmPretrainConfig, pretrain_reftm
from .semantics_targets import (KEYFRAME_INDEX, RowTable, TokenClips, cached_caption_embeddings,
                                cached_keyframe_tokens, clip_fingerprint)
from .train import FitSettings, fit, write_json_atomic

#: the largest T x C the closed-form ridge start regresses token by token; above it (paper size: 256 x 1664, a
#: V x 426k ridge) it regresses the mean token (C,) instead
MAX_RIDGE_TARGETS = 16384


# ================================================================================================== config
@dataclass(frozen=True)
class StageSchedule:
    """Length and optimisation of one training stage (AdamW + OneCycle; ``pct_start`` None = 2 / epochs)."""

    epochs: int
    batch_size: int
    lr: float
    pct_start: float | None = None


@dataclass(frozen=True)
class SemanticsRunConfig(StepRecipe):
    """How the SR and its prior are trained for a subject (everything here is recorded and checked on reuse/resume).

    Attributes:
        size: ``"sim"`` or ``"paper"`` sizes (:meth:`SemanticsConfig.for_clip`, :class:`PriorConfig`); the token
            shape and text width always come from the CLIP model.
        sr_model, prior_model: overrides of :class:`SemanticsConfig` / :class:`PriorConfig` fields.
        loss: :class:`SemanticsLossConfig` (recipe ``"official"``: stages backbone then prior; ``"paper"``: joint).
        backbone_stage, prior_stage, joint_stage: :class:`StageSchedule` of each stage (the recipe says which run).
        keyframe_index: the stored frame (of 6) whose tokens are the target (2, as the official code).
        repetition: training fMRI per clip: ``"random"`` (one of the 2 per epoch) or ``"mean"``.
        val_fraction: share of training segments held out for model selection.
        max_train_clips, max_val_clips: use only the first this many clips of each split (quick mode).
        init_from_ridge: start the ridge layer from the closed-form ridge fMRI -> tokens (Eq. 3).
        reftm: None = on when every training clip has a caption; True = required (error without captions);
            False = off.
        reftm_pretrain: :class:`~neuroclips_core.reftm_pretrain.ReftmPretrainConfig`.
        reftm_weights: a torch file holding a pre-trained projector (``{"proj": (C, D)}`` or the tensor), used
            instead of pre-training (the paper profile: the authors' ``coco_tokens_avg_proj.pth``).
        weight_decay, grad_clip: optimisation, all stages.
        retrieval_pool, retrieval_parts: test and validation retrieval in ``retrieval_parts`` random parts of
            ``retrieval_pool`` clips (the whole set, once, when smaller), as the paper's App. C.6.
        batch_size_eval: batch size of token encoding, prediction and prior sampling.
    """

    size: str = "sim"
    sr_model: dict = field(default_factory=dict)
    prior_model: dict = field(default_factory=lambda: {"depth": 2})
    loss: SemanticsLossConfig = field(default_factory=lambda: SemanticsLossConfig.for_recipe("official"))
    backbone_stage: StageSchedule = StageSchedule(epochs=10, batch_size=128, lr=3e-4)
    prior_stage: StageSchedule = StageSchedule(epochs=30, batch_size=64, lr=1e-3)
    joint_stage: StageSchedule = StageSchedule(epochs=10, batch_size=64, lr=3e-4)
    keyframe_index: int = KEYFRAME_INDEX
    repetition: str = "random"
    val_fraction: float = 0.1
    max_train_clips: int | None = None
    max_val_clips: int | None = None
    init_from_ridge: bool = True
    reftm: bool | None = None
    reftm_pretrain: ReftmPretrainConfig = field(default_factory=ReftmPretrainConfig)
    reftm_weights: str | None = None
    weight_decay: float = 0.01
    grad_clip: float | None = None
    retrieval_pool: int = 300
    retrieval_parts: int = 4
    batch_size_eval: int = 64

    def __post_init__(self):
        self.check_choices()
        if self.reftm not in (None, True, False):
            raise ValueError(f"SemanticsRunConfig.reftm must be None (auto), True or False, found {self.reftm!r}")

    @classmethod
    def quick(cls, **overrides) -> "SemanticsRunConfig":
        """Quick mode (tests, CI): the sim recipe on 240 training and 120 validation clips, 2 + 1 epochs, a prior of
        depth 1 sampled in 5 steps, a small Reftm pre-training."""
        return cls(**{"max_train_clips": 240, "max_val_clips": 120, "prior_model": {"depth": 1, "sample_steps": 5},
                      "backbone_stage": StageSchedule(2, 64, 1e-3), "prior_stage": StageSchedule(1, 32, 1e-3),
                      "joint_stage": StageSchedule(2, 32, 1e-3), "reftm_pretrain": ReftmPretrainConfig.quick(),
                      **overrides})

    @classmethod
    def paper(cls, **overrides) -> "SemanticsRunConfig":
        """The official recipe on a GPU: paper sizes, stage A batch 720, lr 1e-4, 30 epochs; stage B batch 64, lr
        3e-4, 150 epochs (the README's commands); for the joint Eq. 4 the paper's batch 240, lr 3e-4, 150 epochs."""
        return cls(**{"size": "paper", "prior_model": {}, "backbone_stage": StageSchedule(30, 720, 1e-4),
                      "prior_stage": StageSchedule(150, 64, 3e-4), "joint_stage": StageSchedule(150, 240, 3e-4),
                      "init_from_ridge": False, **overrides})

    def stages(self) -> list[str]:
        """The stages the loss recipe trains, in order: ``["backbone", "prior"]`` or ``["joint"]``."""
        return list(self.loss.stage_weights())

    def schedule(self, stage: str) -> StageSchedule:
        return {"backbone": self.backbone_stage, "prior": self.prior_stage, "joint": self.joint_stage}[stage]

    def sr_config(self, n_voxels: int, clip) -> SemanticsConfig:
        """The SR's sizes for ``n_voxels`` and ``clip``'s tokens; a ``sr_model`` override of the token shape or
        text width that disagrees with ``clip`` is an error naming both."""
        shape, text_dim = clip_token_shape(clip), int(clip.model_cfg["embed_dim"])
        config = SemanticsConfig.for_clip(n_voxels, clip, self.size, **self.sr_model)
        if config.token_shape != shape or config.text_dim != text_dim:
            raise ConfigError(
                f"the SR config predicts tokens {config.token_shape} and Reftm text width {config.text_dim}, but the "
                f"CLIP model gives tokens {shape} and text width {text_dim}: the SR must predict exactly what the CLIP "
                f"model (and so unCLIP) uses. Drop token_shape/text_dim from sr_model, or use the matching CLIP")
        return config

    def prior_config(self, token_shape: tuple[int, int]) -> PriorConfig:
        """The prior's sizes for tokens of ``token_shape``; an override that disagrees is an error naming both."""
        n, d = token_shape
        base = PriorConfig.sim(n, d) if self.size == "sim" else PriorConfig.paper(n_tokens=n, token_dim=d)
        config = dataclasses.replace(base, **self.prior_model)
        if (config.n_tokens, config.token_dim) != (n, d):
            raise ConfigError(f"the prior config is for tokens ({config.n_tokens}, {config.token_dim}) but the CLIP "
                              f"model gives {(n, d)}; drop n_tokens/token_dim from prior_model")
        return config

    def fit_settings(self, stage: str, seed: int) -> FitSettings:
        s = self.schedule(stage)
        select, mode = SELECT[stage]
        return FitSettings(epochs=s.epochs, batch_size=s.batch_size, lr=s.lr, pct_start=s.pct_start,
                           weight_decay=self.weight_decay, grad_clip=self.grad_clip, select=select, mode=mode,
                           seed=seed)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)     # nested dataclasses (loss, stages, reftm_pretrain) become dicts


# ================================================================================================ Reftm plan
def reftm_plan(store: Store, run: SemanticsRunConfig) -> tuple[bool, str | None]:
    """(Reftm on?, a note when it is off): on when every training clip has a caption, unless ``run.reftm`` is False;
    ``run.reftm=True`` with missing captions raises a ConfigError saying how to get them."""
    captions = store.captions_train
    missing = len(store.fmri_train) if captions is None else sum(c is None for c in captions)
    if run.reftm is False:
        return False, "Reftm off (reftm=False): the SR trains without its text terms"
    if missing == 0:
        return True, None
    what = (f"{missing} of {store.n_train} training clips in {store.path} have no caption (captions_train.json "
            f"is null until the clips are captioned)")
    if run.reftm:
        raise ConfigError(f"Reftm was requested (reftm=True) but {what}. Caption the training clips first (the "
                          "store's captions_train.json), or set reftm=None to train without Reftm")
    return False, f"Reftm off: {what}; the SR trains without its text terms"


def load_reftm_weights(path, token_dim: int, text_dim: int) -> ReftmProjector:
    """A frozen :class:`ReftmProjector` from a torch file holding ``{"proj": (C, D)}`` (or the tensor itself)."""
    saved = torch.load(path, map_location="cpu", weights_only=False)
    proj = saved.get("proj") if isinstance(saved, dict) else saved
    if not isinstance(proj, torch.Tensor) or tuple(proj.shape) != (token_dim, text_dim):
        found = tuple(proj.shape) if isinstance(proj, torch.Tensor) else type(saved).__name__
        raise ConfigError(f"{path}: expected a Reftm projector 'proj' of shape ({token_dim}, {text_dim}) (token width "
                          f"x text width of the CLIP model), found {found}")
    projector = ReftmProjector(token_dim, text_dim)
    projector.load_state_dict({"proj": proj.float()})
    return projector.requires_grad_(False).eval()


# ================================================================================================ prediction
@torch.inference_mode()
def predict_clip_voxels(sr: SemanticsReconstructor, fmri: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """An SR (eval mode) on fMRI (N, V) -> clip_voxels float32 (N, T, C)."""
    device = next(sr.parameters()).device
    sr.eval()
    x = torch.from_numpy(np.array(fmri, dtype=np.float32))
    return torch.cat([sr(x[a:a + batch_size].to(device)).clip_voxels.float().cpu()
                      for a in range(0, len(x), batch_size)]).numpy()


@torch.inference_mode()
def sample_prior_tokens(prior: DiffusionPrior, clip_voxels: np.ndarray, seed: int, batch_size: int = 64) -> np.ndarray:
    """The prior's tokens for each condition (N, T, C): DDIM with the prior's sampling settings, one generator
    seeded with ``seed`` drawn through the clips in order (the same seed and batch size give the same tokens).
    Returns float16 (N, T, C)."""
    device = next(prior.parameters()).device
    prior.eval()
    generator = torch.Generator().manual_seed(int(seed))
    cond = torch.from_numpy(np.asarray(clip_voxels, np.float32))
    return torch.cat([prior.sample(cond[a:a + batch_size].to(device), generator=generator).float().cpu()
                      for a in range(0, len(cond), batch_size)]).half().numpy()


def _retrieval(brain: np.ndarray, image: np.ndarray, run: SemanticsRunConfig, seed: int) -> dict:
    return retrieval_top1(brain, image, run.retrieval_pool, run.retrieval_parts, seed).as_dict()


# ================================================================================================ results
class SemanticsModels(NamedTuple):
    """A trained SR (eval mode), its prior (eval mode) and Reftm projector (None when Reftm was off), and the
    checkpoint's meta."""

    sr: SemanticsReconstructor
    prior: DiffusionPrior
    reftm: ReftmProjector | None
    meta: dict


def load_semantics_models(path, n_voxels: int | None = None, device="cpu", subject: int | None = None
                          ) -> SemanticsModels:
    """Read a ``checkpoint.pt`` written by :func:`train_semantics`; a checkpoint made for another voxel count
    raises :class:`~neuroclips_core.models.semantics.SemanticsCheckpointError` naming both counts."""
    sr, meta = load_semantics(path, n_voxels=n_voxels, device=device, subject=subject)
    prior = DiffusionPrior(PriorConfig.from_dict(meta["prior"]["config"]))
    prior.load_state_dict(meta["prior"]["state_dict"])
    reftm = None
    if meta.get("reftm") is not None:
        proj = meta["reftm"]["state_dict"]["proj"]
        reftm = ReftmProjector(*proj.shape)
        reftm.load_state_dict(meta["reftm"]["state_dict"])
        reftm = reftm.to(device).requires_grad_(False).eval()
    return SemanticsModels(sr, prior.to(device).eval(), reftm, meta)


class SemanticsResult(StepResult):
    """What :func:`train_semantics` made: ``retrieval`` is retrieval.json, ``history`` history.json (by stage),
    ``checkpoint`` the SR with its prior and Reftm projector."""

    @property
    def retrieval(self) -> dict:
        return self.summary

    def prior_tokens(self) -> np.ndarray:
        """float16 (N_test, T, C), memory-mapped: the prior's tokens for each test clip (``prior_tokens_test.npy``)."""
        return self.array("prior_tokens_test.npy")

    def load_models(self, n_voxels: int | None = None, device="cpu") -> SemanticsModels:
        return load_semantics_models(self.checkpoint, n_voxels=n_voxels, device=device, subject=self.subject)


def semantics_dir(cfg: RunConfig, subject: int | None = None) -> Path:
    return step_dir(cfg, subject, "semantics")


def load_semantics_result(cfg: RunConfig, subject: int | None = None) -> SemanticsResult:
    """The artifacts of a finished run (no training); FileNotFoundError naming the command if there are none."""
    subject = subject or cfg.subject
    folder = semantics_dir(cfg, subject)
    retrieval, history = read_finished_run(folder, "retrieval.json", f"Semantics Reconstructor run for subject "
                                           f"{subject}", "train_semantics(cfg) (or chapter 03)")
    return SemanticsResult(folder, subject, retrieval, history, True)


# ================================================================================================ training
def train_semantics(cfg: RunConfig, subject: int | None = None, run: SemanticsRunConfig | None = None, *,
                    store: Store | None = None, clip=None, retrain: bool = False, progress: bool = True,
                    stop_after_epochs: int | None = None) -> SemanticsResult:
    """Train (or resume, or reuse) the SR and prior of ``subject`` and write their artifacts (module docstring).

    Args:
        cfg: the run config (profile, seed, paths, device).
        subject: default ``cfg.subject``.
        run: the recipe; default :meth:`SemanticsRunConfig.for_config` (quick / sim / paper).
        store: the subject's processed store (default: :func:`~neuroclips_core.data.ensure.ensure_store`).
        clip: the CLIP bundle whose tokens the SR predicts (default: the profile's ``clip`` role).
        retrain: train from scratch even if a finished or interrupted run is there.
        progress: progress bars and per-epoch lines.
        stop_after_epochs: stop once this many epochs are done, counted over the stages in order (a deliberate
            interruption); the result then has ``retrieval == {}`` and the next call resumes.

    Returns:
        :class:`SemanticsResult` (``reused`` tells whether a finished run was found).
    """
    run = run or SemanticsRunConfig.for_config(cfg)
    subject, device = int(subject or cfg.subject), cfg.torch_device()
    store = store_with_frames(cfg, subject, store, "the SR's targets are the CLIP tokens of the keyframes", progress)
    clip = clip if clip is not None else profile_role(cfg, "clip", device)
    sr_cfg = run.sr_config(store.n_voxels, clip)
    prior_cfg = run.prior_config(sr_cfg.token_shape)
    use_text, note = reftm_plan(store, run)
    clip_key = clip_fingerprint(clip)
    out = semantics_dir(cfg, subject)
    params = {"run": run.to_dict(), "seed": cfg.seed, "subject": subject, "store": store_fingerprint(store),
              "clip": clip_key, "n_voxels": store.n_voxels, "reftm": use_text}
    params = json.loads(json.dumps(params))
    if start_run_dir(out, params, "retrieval.json", ("checkpoint.pt", "prior_tokens_test.npy"), retrain):
        return load_semantics_result(cfg, subject)
    cache, timings = cfg.run_root / cfg.profile / "cache", {}
    i_tr, i_va = train_val_rows(store, run.val_fraction, run.max_train_clips, run.max_val_clips)

    t0 = time.monotonic()
    targets = _encode_targets(clip, clip_key, store, run, cache, np.concatenate([i_tr, i_va]), use_text, progress)
    timings["encode_targets_s"] = round(time.monotonic() - t0, 1)
    reftm, reftm_summary = None, {"used": use_text, "note": note}
    if use_text:
        t0 = time.monotonic()
        reftm, about = _reftm_projector(clip, clip_key, run, sr_cfg, cache, device, progress)
        reftm_summary.update(about)
        timings["reftm_s"] = round(time.monotonic() - t0, 1)

    def split(name: str, repetition: str, subset: int | None) -> TokenClips:
        clips = ClipDataset(store, name, repetition=repetition, with_frames=False, seed=cfg.seed,
                            val_fraction=run.val_fraction)
        return TokenClips(clips, targets.tokens, targets.text, subset)

    train_set, val_set = split("train", run.repetition, run.max_train_clips), split("val", "mean", run.max_val_clips)

    cfg.seed_everything()                                 # the SR's initial weights
    sr, ridge = SemanticsReconstructor(sr_cfg), None
    if run.init_from_ridge:
        t0 = time.monotonic()
        ridge = _init_from_ridge(sr, store, i_tr, i_va, targets.tokens)
        timings["ridge_s"] = round(time.monotonic() - t0, 1)
    cfg.seed_everything(1)                                # the prior's, independent of whether the ridge ran
    prior = DiffusionPrior(prior_cfg)

    histories, stages, done_before = {}, {}, 0
    for stage in run.stages():
        settings = run.fit_settings(stage, cfg.seed)
        objective = SemanticsObjective(run.loss, stage, settings.epochs, lambda: train_set.epoch, use_text)
        remaining = None if stop_after_epochs is None else max(stop_after_epochs - done_before, 0)
        t0 = time.monotonic()
        result = fit(SemanticsTrainee(sr, prior, reftm, objective), _run_trainee, train_set, val_set, settings,
                     out / f"train_{stage}", identity={"params": params, "stage": stage, "sr": sr_cfg.to_dict(),
                                                       "prior": prior_cfg.to_dict()},
                     device=device, progress=progress, stop_after_epochs=remaining)
        histories[stage] = result.history
        if not result.finished:
            return SemanticsResult(out, subject, {}, histories, False)
        done_before += settings.epochs
        sr, prior = result.model.sr, result.model.prior
        stages[stage] = _stage_summary(result, settings, len(train_set), time.monotonic() - t0)
        timings[f"train_{stage}_s"] = stages[stage]["seconds"]
    sr, prior = sr.to(device).eval(), prior.to(device).eval()
    sr.save(out / "checkpoint.pt", subject=subject, params=params, keyframe_index=run.keyframe_index, stages=stages,
            prior={"config": prior_cfg.to_dict(), "state_dict": {k: v.cpu() for k, v in prior.state_dict().items()}},
            reftm=None if reftm is None else {"state_dict": {"proj": reftm.proj.detach().cpu()}})
    write_json_atomic(out / "history.json", histories)

    t0 = time.monotonic()
    test, validation = _evaluate(sr, prior, ridge, store, run, cfg.seed, targets, i_va, out)
    timings["evaluate_s"] = round(time.monotonic() - t0, 1)
    summary = {"subject": subject, "params": params, "keyframe_index": run.keyframe_index,
               "n_train": len(train_set), "n_val": len(val_set), "n_test": int(store.n_test),
               "test": test, "validation": validation, "stages": stages, "reftm": reftm_summary,
               "model": {"sr": sr_cfg.to_dict(), "prior": prior_cfg.to_dict(),
                         "n_parameters": {"sr": count_parameters(sr), "prior": count_parameters(prior)}},
               "ridge": None if ridge is None else {"lambda": float(ridge.lambda_), "form": ridge.form_},
               "notes": [note] if note else [], "timings": timings}
    summary = json.loads(json.dumps(summary))
    write_json_atomic(out / "retrieval.json", summary)
    return SemanticsResult(out, subject, summary, histories, False)


class Targets(NamedTuple):
    """The SR's targets: keyframe tokens of the training and validation clips (by store row), of the test clips
    (N_test, T, C) float16, and the caption embeddings (by store row; None without Reftm)."""

    tokens: RowTable
    test_tokens: np.ndarray
    text: RowTable | None


def _encode_targets(clip, clip_key: str, store: Store, run: SemanticsRunConfig, cache: Path, rows: np.ndarray,
                    use_text: bool, progress: bool) -> Targets:
    """Keyframe tokens of ``rows`` and of every test clip, caption embeddings of ``rows``: from the cache or
    encoded into it."""
    def keyframe_tokens(frames, rows):
        return cached_keyframe_tokens(clip, frames, run.keyframe_index, cache / "clip_tokens", rows, clip_key,
                                      run.batch_size_eval, progress)

    text = (RowTable(*cached_caption_embeddings(clip, store.captions_train, cache / "clip_text", rows, clip_key))
            if use_text else None)
    return Targets(RowTable(*keyframe_tokens(store.frames_train, rows)), keyframe_tokens(store.frames_test, None)[0],
                   text)


def _reftm_projector(clip, clip_key: str, run: SemanticsRunConfig, sr_cfg: SemanticsConfig, cache: Path, device,
                     progress: bool) -> tuple[ReftmProjector, dict]:
    """The frozen Reftm projector (``run.reftm_weights``, or pre-trained on the corpus) and what to record of it."""
    if run.reftm_weights:
        return (load_reftm_weights(run.reftm_weights, sr_cfg.token_dim, sr_cfg.text_dim),
                {"weights": str(run.reftm_weights)})
    pre = pretrain_reftm(clip, cache / "reftm", run.reftm_pretrain, clip_key=clip_key, device=device,
                         progress=progress)
    return pre.projector, pre.summary()


def _stage_summary(result, settings: FitSettings, n_train: int, seconds: float) -> dict:
    """What retrieval.json records of a finished stage: selection, kept epoch, time and throughput."""
    trained_epochs = len(result.history["epochs"]) - result.resumed_from
    return {"select": settings.select, "mode": settings.mode, "best_epoch": result.best_epoch,
            "best": result.best_score, "epochs": settings.epochs, "seconds": round(seconds, 1),
            "clips_per_s": round(trained_epochs * n_train / max(seconds, 1e-9), 1)}


def _evaluate(sr: SemanticsReconstructor, prior: DiffusionPrior, ridge: RidgeRegression | None, store: Store,
              run: SemanticsRunConfig, seed: int, targets: Targets, i_va: np.ndarray, out: Path) -> tuple[dict, dict]:
    """Writes the prior's test tokens; returns the test retrieval (clip_voxels, the prior's tokens and the ridge
    baseline vs the keyframe tokens) and the validation retrieval (clip_voxels)."""
    fmri_test = np.asarray(store.fmri_test, dtype=np.float32).mean(axis=1)          # (N_test, V): 10 repetitions
    clip_voxels = predict_clip_voxels(sr, fmri_test, run.batch_size_eval)
    prior_tokens = sample_prior_tokens(prior, clip_voxels, seed, run.batch_size_eval)
    save_npy_atomic(out / "prior_tokens_test.npy", prior_tokens)
    test_tokens = np.asarray(targets.test_tokens, np.float32)
    test = {"clip_voxels": _retrieval(clip_voxels, test_tokens, run, seed),
            "prior_tokens": _retrieval(prior_tokens.astype(np.float32), test_tokens, run, seed)}
    if ridge is not None:
        test["ridge"] = _retrieval(ridge.predict(fmri_test), _ridge_targets(test_tokens), run, seed)
    fmri_val = np.asarray(store.fmri_train[i_va], np.float32).mean(axis=1)
    val_tokens = np.stack([np.asarray(targets.tokens[r], np.float32) for r in i_va])
    val_voxels = predict_clip_voxels(sr, fmri_val, run.batch_size_eval)
    return test, {"clip_voxels": _retrieval(val_voxels, val_tokens, run, seed)}


def _run_trainee(model, batch, generator):
    """fit's ``loss_fn``: the trainee computes its stage's objective in ``forward``."""
    return model(batch, generator)


def _ridge_targets(tokens: np.ndarray) -> np.ndarray:
    """What the ridge start regresses: the tokens flattened (n, T C), or their mean over tokens (n, C) when
    T C > :data:`MAX_RIDGE_TARGETS`."""
    tokens = np.asarray(tokens, np.float32)
    flat = tokens.reshape(len(tokens), -1)
    return flat if flat.shape[1] <= MAX_RIDGE_TARGETS else tokens.mean(axis=1)


def _init_from_ridge(sr: SemanticsReconstructor, store: Store, i_tr: np.ndarray, i_va: np.ndarray,
                     tokens: RowTable) -> RidgeRegression:
    """Ridge fMRI (mean of the 2 repetitions) -> :func:`_ridge_targets` on the training split, penalty chosen on the
    validation split; the SR's ridge layer starts in its predictive subspace.  Returns the fit."""
    def data(rows):
        x = np.asarray(store.fmri_train[rows], np.float32).mean(axis=1)
        return x, _ridge_targets(np.stack([np.asarray(tokens[r], np.float32) for r in rows]))

    (x_tr, y_tr), (x_va, y_va) = data(i_tr), data(i_va)
    return sr.init_from_ridge(x_tr, y_tr, x_va, y_va)
