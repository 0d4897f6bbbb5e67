"""What the training loop optimises for the Semantics Reconstructor, stage by stage.

:class:`SemanticsTrainee` holds the three networks (SR, diffusion prior, Reftm projector), freezes those the stage
does not train and computes the stage's :class:`SemanticsObjective` in its ``forward`` (what
:func:`~neuroclips_core.train.fit` minimises), built from a :class:`~.losses.SemanticsLossConfig`::

    stage       trains           loss (weights from SemanticsLossConfig.stage_weights())
    backbone    ridge, backbone  BiMixCo on MixCo-mixed voxels (first mixup_pct of the epochs), SoftCLIP after;
                clip projector   + text_weight x Reftm(clip_voxels)                      (official stage A)
    prior       prior            prior_weight x MSE(prior x0, tokens) + prior_text_weight x Reftm(prior x0),
                                 the SR frozen, its clip_voxels the condition             (official stage B)
    joint       SR + prior       all of the above with their weights                     (the paper's Eq. 4)

Batches: ``{"fmri": (B, V), "tokens": (B, T, C) the keyframe's CLIP tokens, "text": (B, D) the caption embedding}``
(``"text"`` only when Reftm is on).  Reftm is the bidirectional InfoNCE (tau 0.1) between the frozen projector's
output and the caption embedding, with hard targets even on mixed voxels (the official quirk).

**Validation** (eval mode: no mixing, no condition drop, the loop's fixed generator) reports the same terms, with
the contrastive one as plain InfoNCE at BiMixCo's temperature so that epochs compare (SoftCLIP's temperature moves
by epoch), and, when the stage trains the SR, top-1 retrieval inside each validation batch: ``fwd_top1``
(clip_voxels -> keyframe tokens, the paper's keyframe retrieval), ``bwd_top1`` (tokens -> clip_voxels) and
``chance`` (1 / batch size), by cosine of the flattened tokens.

Left out: the official stage B also adds SoftCLIP on the frozen SR's output, a constant without gradient.  In the
joint stage the prior is conditioned on the clip_voxels of the *mixed* voxels during the mixup epochs while its
target is the unmixed tokens, as in MindEye2's joint training.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..metrics_semantic import retrieval_top1
from .losses import SemanticsLossConfig, bimixco_nce, mixco, soft_clip_loss
from .prior import DiffusionPrior
from .semantics import ReftmProjector, SemanticsReconstructor

#: the modules each stage trains (the rest are frozen)
TRAINED = {"backbone": ("sr",), "prior": ("prior",), "joint": ("sr", "prior")}
#: the validation entry :func:`~neuroclips_core.train.fit` selects each stage's epoch on, and its direction
SELECT = {"backbone": ("fwd_top1", "max"), "prior": ("prior_mse", "min"), "joint": ("loss", "min")}


class SemanticsTrainee(nn.Module):
    """The SR, the prior and the Reftm projector (None when Reftm is off) as one module for the training loop,
    with the parts the objective's stage does not train frozen (no gradient, and kept in eval mode: no dropout).

    ``trainee(batch, generator) -> (loss, parts)`` runs the objective inside ``forward``, so that a data-parallel
    wrapper sees the whole computation; the loop's ``loss_fn`` is ``lambda model, batch, g: model(batch, g)``.
    """

    def __init__(self, sr: SemanticsReconstructor, prior: DiffusionPrior, reftm: ReftmProjector | None,
                 objective: "SemanticsObjective"):
        super().__init__()
        self.sr, self.prior, self.reftm, self.objective = sr, prior, reftm, objective
        self.stage = objective.stage
        for name, part in self._parts().items():
            part.requires_grad_(name in TRAINED[self.stage])

    def forward(self, batch: dict, generator: torch.Generator):
        return self.objective(self, batch, generator)

    def _parts(self) -> dict[str, nn.Module]:
        return {k: m for k, m in (("sr", self.sr), ("prior", self.prior), ("reftm", self.reftm)) if m is not None}

    def train(self, mode: bool = True) -> "SemanticsTrainee":
        super().train(mode)
        for name, part in self._parts().items():
            if name not in TRAINED[self.stage]:
                part.train(False)
        return self


def batch_retrieval(brain: torch.Tensor, image: torch.Tensor) -> dict[str, float]:
    """Top-1 retrieval both ways inside one batch of paired (B, ...) embeddings, and its chance 1 / B."""
    if len(brain) < 2:
        return {"fwd_top1": 1.0, "bwd_top1": 1.0, "chance": 1.0}
    r = retrieval_top1(brain.detach().float().cpu().numpy(), image.detach().float().cpu().numpy(),
                       pool_size=len(brain), n_parts=1)
    return {"fwd_top1": r.forward, "bwd_top1": r.backward, "chance": r.chance}


class SemanticsObjective:
    """``objective(trainee, batch, generator) -> (loss, {term: float})`` of one stage (module docstring).

    Args:
        config: the loss recipe; its stage weights (without the Reftm terms when ``use_text`` is False) say
            which terms this stage adds.
        stage: ``"backbone"``, ``"prior"`` or ``"joint"``.
        num_epochs: the stage's epochs (the mixup phase is the first ``int(mixup_pct * num_epochs)``).
        epoch: returns the current epoch (0-based), e.g. the training dataset's ``epoch``.
        use_text: whether Reftm is on (batches then carry ``"text"``).
    """

    def __init__(self, config: SemanticsLossConfig, stage: str, num_epochs: int, epoch: Callable[[], int],
                 use_text: bool = True):
        weights = config.stage_weights()
        if stage not in weights or stage not in TRAINED:
            raise ValueError(f"the {config.recipe!r} SR recipe has the stages {tuple(weights)}, not {stage!r}")
        self.config, self.stage, self.num_epochs, self.epoch = config, stage, int(num_epochs), epoch
        self.weights = {k: w for k, w in weights[stage].items() if use_text or not k.startswith("reftm")}

    def _contrastive(self, model: SemanticsTrainee, fmri, tokens, generator):
        """(clip_voxels, contrastive term) of a stage that trains the SR."""
        c, training = self.config, model.training
        mixing = training and c.uses_mixup(self.epoch(), self.num_epochs)
        if mixing:
            fmri, betas, perm = mixco(fmri, generator, c.mix_beta, c.mix_select_prob)
        clip_voxels = model.sr(fmri).clip_voxels
        if mixing:
            return clip_voxels, bimixco_nce(clip_voxels, tokens, c.bimixco_temperature, betas, perm)
        if training:
            return clip_voxels, soft_clip_loss(clip_voxels, tokens, c.soft_clip_tau(self.epoch(), self.num_epochs))
        return clip_voxels, bimixco_nce(clip_voxels, tokens, c.bimixco_temperature)

    def __call__(self, model: SemanticsTrainee, batch: dict, generator: torch.Generator):
        c, w = self.config, self.weights
        fmri, tokens = batch["fmri"], batch["tokens"]
        terms = {}
        if "contrastive" in w:
            clip_voxels, terms["contrastive"] = self._contrastive(model, fmri, tokens, generator)
        else:
            with torch.no_grad():                       # the SR is frozen: only the condition of the prior
                clip_voxels = model.sr(fmri).clip_voxels
        if "reftm_clip_voxels" in w:
            terms["reftm_clip_voxels"] = bimixco_nce(model.reftm(clip_voxels), batch["text"], c.reftm_temperature)
        if "prior" in w:
            terms["prior"], x0 = model.prior.loss(clip_voxels, tokens, generator, return_prediction=True)
            if "reftm_prior" in w:
                terms["reftm_prior"] = bimixco_nce(model.reftm(x0), batch["text"], c.reftm_temperature)
        loss = sum(w[k] * v for k, v in terms.items())
        parts = {("prior_mse" if k == "prior" else k): float(v.detach()) for k, v in terms.items()}
        if not model.training and "contrastive" in w:
            parts.update(batch_retrieval(clip_voxels, tokens))
        return loss, parts
