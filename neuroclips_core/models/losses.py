"""Training losses of the Perception Reconstructor (the paper's Eq. 1 and the official code's variant) and the
contrastive losses of the Semantics Reconstructor (MixCo, BiMixCo, SoftCLIP; see the section at the end).

``kind="paper"`` (Eq. 1), on predicted latents e_Y and VAE latents e_X of a clip's N_f frames::

    L = 1/N_f sum_i |e_X_i - e_Y_i|                                      MAE (mean over latent entries)
        - 1/(2 N_f) sum_j log softmax_k(sim(e_X_j, e_Y_k) / tau)[j]      X -> Y contrastive
        - 1/(2 N_f) sum_j log softmax_k(sim(e_Y_j, e_X_k) / tau)[j]      Y -> X contrastive

with sim the cosine similarity of flattened latents.  In Eq. 1 the k sum runs over the clip's own N_f frames
(``negatives="clip"``): each predicted frame must be closer to its own target than to the other frames of the
clip, which rewards getting the within-clip change (the motion) right; ``negatives="batch"`` uses every frame
of the batch instead (CLIP-style).  Averaged over the clips of the batch.

``kind="official"`` (train_PR.py L384-409; neuroclips-official-code.md §2.4)::

    L = 0.5 * L1(latents) + 0.5 * 0.1 * SoftCont(student tokens, teacher(frames), teacher(augment(frames)), tau 0.2)

where the student tokens come from the model's token projector (``PerceptionConfig.token_dim``) and the teacher
is a frozen image network's spatial tokens (ConvNeXt-XL's 7 x 7 x 512 in the official code; in the sim profile
:class:`ViTTokenTeacher` of the frame-classifier stand-in).  Teacher tokens on a finer square grid than the student's
are average-pooled to it.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class LossConfig:
    """Which PR loss, and its weights.

    Attributes:
        kind: ``"paper"`` (Eq. 1) or ``"official"`` (0.5 L1 + 0.05 soft token distillation).
        mae_weight, contrastive_weight: Eq. 1's terms (1 and 1 in the paper).
        temperature: tau of Eq. 1's contrastive terms (not given in the paper).
        negatives: ``"clip"`` (Eq. 1: the clip's other frames) or ``"batch"`` (every frame of the batch).
        centered: compare frames after removing their clip's mean latent (see :func:`bidirectional_contrastive`).
        batch_contrastive_weight: an extra CLIP-style term with every frame of the batch as negatives (not in
            Eq. 1; 0 = off): it teaches what tells clips apart, where Eq. 1's term teaches what tells a clip's
            frames apart.
        blur_scale, soft_scale, soft_temperature: the official variant's 0.5, 0.1 and 0.2.
    """

    kind: str = "paper"
    mae_weight: float = 1.0
    contrastive_weight: float = 1.0
    temperature: float = 0.1
    negatives: str = "clip"
    centered: bool = False
    batch_contrastive_weight: float = 0.0
    blur_scale: float = 0.5
    soft_scale: float = 0.1
    soft_temperature: float = 0.2

    def __post_init__(self):
        if self.kind not in ("paper", "official"):
            raise ValueError(f"LossConfig.kind must be 'paper' (Eq. 1) or 'official', found {self.kind!r}")
        if self.negatives not in ("clip", "batch"):
            raise ValueError(f"LossConfig.negatives must be 'clip' or 'batch', found {self.negatives!r}")
        if self.temperature <= 0 or self.soft_temperature <= 0:
            raise ValueError("LossConfig: temperatures must be > 0")

    def to_dict(self) -> dict:
        return asdict(self)


def mae(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over every entry."""
    return (pred.float() - target.float()).abs().mean()


def bidirectional_contrastive(pred: torch.Tensor, target: torch.Tensor, temperature: float,
                              negatives: str = "clip", centered: bool = False) -> torch.Tensor:
    """The two contrastive terms of Eq. 1, averaged: pred, target (B, F, ...) -> scalar.

    ``negatives="clip"``: logits (B, F, F) between the frames of each clip; ``"batch"``: (B F, B F) between
    every frame of the batch.  Cosine similarity / ``temperature``; cross-entropy both ways.  ``centered``
    subtracts each clip's mean over its frames first (prediction and target alike), so the similarity compares
    how each frame departs from its clip: the motion.
    """
    b, f = pred.shape[:2]
    p, t = pred.float().reshape(b, f, -1), target.float().reshape(b, f, -1)
    if centered:
        p, t = p - p.mean(1, keepdim=True), t - t.mean(1, keepdim=True)
    p, t = F.normalize(p, dim=-1), F.normalize(t, dim=-1)
    if negatives == "batch":
        p, t = p.reshape(1, b * f, -1), t.reshape(1, b * f, -1)
    logits = t @ p.transpose(1, 2) / temperature                        # [., j, k] = sim(e_X_j, e_Y_k) / tau
    n = logits.shape[-1]
    labels = torch.arange(n, device=logits.device).repeat(logits.shape[0])
    x_to_y = F.cross_entropy(logits.reshape(-1, n), labels)
    y_to_x = F.cross_entropy(logits.transpose(1, 2).reshape(-1, n), labels)
    return (x_to_y + y_to_x) / 2


def soft_cont_loss(student: torch.Tensor, teacher: torch.Tensor, teacher_aug: torch.Tensor,
                   temperature: float = 0.2) -> torch.Tensor:
    """The official soft token distillation: (N, D) tokens each (every token of the batch flattened) -> scalar.

    Targets are the teacher's softmax similarities to the augmented teacher tokens; the student matches them
    from both sides (neuroclips-official-code.md §2.4).
    """
    s, t, ta = (F.normalize(x.float(), dim=-1) for x in (student, teacher, teacher_aug))
    loss_1 = soft_cross_entropy(s @ ta.T / temperature, F.softmax(t @ ta.T / temperature, dim=-1))
    loss_2 = soft_cross_entropy(ta @ s.T / temperature, F.softmax(ta @ t.T / temperature, dim=-1))
    return (loss_1 + loss_2) / 2


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each row of ``logits`` (N, M) against the target weights ``targets`` (N, M), averaged over
    rows: -mean_i sum_j targets[i, j] log softmax(logits[i])[j].  One-hot targets give ``F.cross_entropy``."""
    return -(targets * F.log_softmax(logits, dim=-1)).sum(-1).mean()


def pool_tokens(tokens: torch.Tensor, n_out: int) -> torch.Tensor:
    """Average-pool (N, T, D) tokens of a square grid (T = g^2) to ``n_out`` = g'^2 tokens (g divisible by g')."""
    n, t, d = tokens.shape
    g, g_out = math.isqrt(t), math.isqrt(n_out)
    if g * g != t or g_out * g_out != n_out or g % g_out:
        raise ValueError(f"pool_tokens: cannot pool {t} tokens to {n_out}; both must be square grids, the first "
                         "a multiple of the second per side")
    if g == g_out:
        return tokens
    grid = tokens.transpose(1, 2).reshape(n, d, g, g)
    return F.avg_pool2d(grid, g // g_out).flatten(2).transpose(1, 2)


# ------------------------------------------------------------------------------------------ augmentation
def augment_frames(frames: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """The official teacher augmentation, in plain torch: frames (N, 3, H, W) in [0, 1] -> same shape.

    As kornia's ColorJitter(0.4, 0.4, 0.2, 0.1, p=0.8), RandomGrayscale(p=0.1), RandomSolarize(p=0.1),
    RandomResizedCrop(scale=(0.9, 1), ratio=1); hue is rotated in YIQ space (a close stand-in for HSV hue).
    """
    n = frames.shape[0]
    dev = frames.device

    def u(lo, hi):
        return (torch.rand(n, generator=generator) * (hi - lo) + lo).to(dev).view(n, 1, 1, 1)

    def p(prob):
        return (torch.rand(n, generator=generator) < prob).to(dev).view(n, 1, 1, 1)

    x = frames.float()
    gray_w = torch.tensor([0.299, 0.587, 0.114], device=dev).view(1, 3, 1, 1)
    jitter = p(0.8)
    y = (x * u(0.6, 1.4)).clamp(0, 1)                                               # brightness
    mean = (y * gray_w).sum(1, keepdim=True).mean((2, 3), keepdim=True)
    y = ((y - mean) * u(0.6, 1.4) + mean).clamp(0, 1)                               # contrast
    gray = (y * gray_w).sum(1, keepdim=True)
    y = ((y - gray) * u(0.8, 1.2) + gray).clamp(0, 1)                               # saturation
    angle = u(-0.1, 0.1).view(n) * 2 * math.pi                                      # hue, in YIQ
    to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], device=dev)
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.zeros(n, 3, 3, device=dev)
    rot[:, 0, 0], rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = 1, cos, -sin, sin, cos
    mix = torch.linalg.inv(to_yiq) @ rot @ to_yiq                                   # (N, 3, 3)
    y = torch.einsum("nij,njhw->nihw", mix, y).clamp(0, 1)
    x = torch.where(jitter, y, x)
    gray = (x * gray_w).sum(1, keepdim=True).expand_as(x)
    x = torch.where(p(0.1), gray, x)
    x = torch.where(p(0.1) & (x >= 0.5), 1 - x, x)                                  # solarize
    side = u(0.9, 1.0).view(n).sqrt()                                               # crop side, area 0.9..1
    shift = (torch.rand(n, 2, generator=generator).to(dev) * 2 - 1) * (1 - side)[:, None]
    theta = torch.zeros(n, 2, 3, device=dev)
    theta[:, 0, 0], theta[:, 1, 1], theta[:, :, 2] = side, side, shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class ViTTokenTeacher(nn.Module):
    """A frozen transformers ViT image classifier as a token teacher: frames (N, 3, H, W) in [0, 1] ->
    patch tokens (N, T, D) (final LayerNorm, no CLS), resized and normalised as its processor would.

    The sim profile's stand-in for the official ConvNeXt-XL teacher:
    ``ViTTokenTeacher(load_standin("frame_classifier"))``.
    """

    def __init__(self, classifier):
        super().__init__()
        model, processor = classifier
        self.vit = model.vit.eval().requires_grad_(False)
        size = model.config.image_size
        self.size = (size, size)
        self.register_buffer("mean", torch.tensor(processor.image_mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(processor.image_std, dtype=torch.float32).view(1, 3, 1, 1))

    @torch.no_grad()
    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(frames.float(), size=self.size, mode="bilinear", antialias=True, align_corners=False)
        x = ((x - self.mean) / self.std).to(next(self.vit.parameters()).dtype)
        return self.vit(pixel_values=x).last_hidden_state[:, 1:].float()

    def train(self, mode: bool = True):
        return super().train(False)      # frozen: dropout stays off when the loop calls model.train()


# ----------------------------------------------------------------------------------------------- the loss
class PerceptionLoss:
    """``loss(output, batch, generator) -> (scalar, {part: float})`` for the PR.

    ``output``: the model's latents (B, F, C, s, s), or (latents, tokens (B, F, T, D)) for ``kind="official"``;
    ``batch``: ``{"latents": (B, F, C, s, s)}`` (+ ``"frames"`` (B, F, 3, H, W) in [0, 1] for the official kind).
    """

    def __init__(self, config: LossConfig | None = None, teacher: nn.Module | None = None):
        self.config = config or LossConfig()
        if self.config.kind == "official" and teacher is None:
            raise ValueError("the official PR loss distils a frozen image network's tokens: pass teacher= (the "
                             "paper profile: ConvNeXt-XL tokens; the sim profile: ViTTokenTeacher(load_standin("
                             "'frame_classifier'))), or use LossConfig(kind='paper') (Eq. 1)")
        self.teacher = teacher

    @property
    def needs_tokens(self) -> bool:
        return self.config.kind == "official"

    def __call__(self, output, batch: dict, generator: torch.Generator | None = None):
        c = self.config
        target = batch["latents"]
        if c.kind == "paper":
            pred = output
            l1 = mae(pred, target)
            con = bidirectional_contrastive(pred, target, c.temperature, c.negatives, c.centered)
            loss = c.mae_weight * l1 + c.contrastive_weight * con
            parts = {"mae": float(l1.detach()), "contrastive": float(con.detach())}
            if c.batch_contrastive_weight:
                across = bidirectional_contrastive(pred, target, c.temperature, "batch")
                loss = loss + c.batch_contrastive_weight * across
                parts["batch_contrastive"] = float(across.detach())
            return loss, parts
        pred, tokens = output
        frames = batch["frames"]
        flat = frames.reshape(-1, *frames.shape[2:])                      # (B F, 3, H, W)
        self.teacher.to(flat.device)
        with torch.no_grad():
            t = pool_tokens(self.teacher(flat), tokens.shape[2])
            ta = pool_tokens(self.teacher(augment_frames(flat, generator)), tokens.shape[2])
        l1 = mae(pred, target)
        soft = soft_cont_loss(tokens.reshape(-1, tokens.shape[-1]), t.reshape(-1, t.shape[-1]),
                              ta.reshape(-1, ta.shape[-1]), c.soft_temperature)
        loss = c.blur_scale * (l1 + c.soft_scale * soft)
        return loss, {"mae": float(l1.detach()), "soft_contrastive": float(soft.detach())}


# ======================================================================= Semantics Reconstructor (paper §3.2)
# MindEye2's functions (utils.mixco, mixco_nce, soft_clip_loss, cosine_anneal) with NeuroClips' settings
# (neuroclips-official-code.md §3.4, §3.6-3.7), written here from their description.
#: what each recipe changes from :class:`SemanticsLossConfig`'s defaults (which are the official settings)
SR_RECIPES = {"official": {}, "paper": {"mixup_pct": 0.33, "text_weight": 0.0}}


@dataclass(frozen=True)
class SemanticsLossConfig:
    """Which Semantics Reconstructor losses, with which weights and temperatures (declarative: the training
    driver reads it).  Build with :meth:`for_recipe` (``"official"`` or ``"paper"``, then any overrides).

    ``recipe="official"`` (the README's two stages, neuroclips-official-code.md §3.7):

    - stage ``"backbone"`` (ridge + backbone + clip projector trained): BiMixCo for every epoch
      (``mixup_pct`` 1.0, so SoftCLIP is never used) + ``text_weight`` 0.25 x Reftm(clip_voxels);
    - stage ``"prior"`` (diffusion prior only): ``prior_weight`` 30 x prior MSE + ``prior_text_weight`` 1.0 x
      Reftm(prior output).  (The code also adds SoftCLIP there, a constant since the backbone is frozen.)

    ``recipe="paper"`` (Eq. 4, one joint stage ``"joint"``): L_BiMixCo + delta L_Prior + mu L_Reftm with
    delta = ``prior_weight`` 30 and mu = ``prior_text_weight`` 1, Reftm on the prior's output (the paper's
    e^re, Eq. 10), no Reftm on clip_voxels; the contrastive term follows MindEye2, on which §3.2 builds:
    BiMixCo for the first ``mixup_pct`` 0.33 of the epochs, SoftCLIP after.

    Attributes:
        recipe: ``"official"`` or ``"paper"``.
        mixup_pct: fraction of the epochs trained with MixCo + BiMixCo; SoftCLIP after (MindEye2's switch
            ``epoch < int(mixup_pct * num_epochs)``).
        mix_beta: alpha = beta of the Beta distribution of MixCo's mixing weights (0.15).
        mix_select_prob: probability that a sample is mixed (0.5).
        bimixco_temperature: tau of BiMixCo (0.006).
        reftm_temperature: tau of the Reftm InfoNCE (0.1).
        contrastive_weight: weight of BiMixCo / SoftCLIP (1 in both recipes).
        text_weight: weight of Reftm on ``clip_voxels`` (official stage A 0.25; the paper has none).
        prior_weight: delta, the weight of the diffusion prior's MSE (30).
        prior_text_weight: mu, the weight of Reftm on the prior's output (1).
        soft_clip_temperatures: (start, end) of SoftCLIP's tau, cosine-annealed over the post-mixup epochs
            (0.004 up to 0.0075).
    """

    recipe: str = "official"
    mixup_pct: float = 1.0
    mix_beta: float = 0.15
    mix_select_prob: float = 0.5
    bimixco_temperature: float = 0.006
    reftm_temperature: float = 0.1
    contrastive_weight: float = 1.0
    text_weight: float = 0.25
    prior_weight: float = 30.0
    prior_text_weight: float = 1.0
    soft_clip_temperatures: tuple = (0.004, 0.0075)

    def __post_init__(self):
        name = type(self).__name__
        if self.recipe not in SR_RECIPES:
            raise ValueError(f"{name}.recipe: expected one of {tuple(SR_RECIPES)} ('official': the README's two "
                             f"stages; 'paper': Eq. 4 trained jointly), found {self.recipe!r}")
        temps = tuple(float(t) for t in self.soft_clip_temperatures)
        if len(temps) != 2 or not all(math.isfinite(t) and t > 0 for t in temps):
            raise ValueError(f"{name}.soft_clip_temperatures: expected (start, end), two positive numbers, found "
                             f"{self.soft_clip_temperatures!r}")
        object.__setattr__(self, "soft_clip_temperatures", temps)
        for key in ("mixup_pct", "mix_select_prob"):
            value = getattr(self, key)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}.{key}: expected a fraction in [0, 1], found {value!r}")
        for key in ("mix_beta", "bimixco_temperature", "reftm_temperature"):
            value = getattr(self, key)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name}.{key}: expected a positive number, found {value!r}")
        for key in ("contrastive_weight", "text_weight", "prior_weight", "prior_text_weight"):
            value = getattr(self, key)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}.{key}: expected a weight >= 0, found {value!r}")

    @classmethod
    def for_recipe(cls, recipe: str, **overrides) -> "SemanticsLossConfig":
        """The settings of ``recipe`` (:data:`SR_RECIPES`), then ``overrides``: ``"official"`` = the README's
        commands, ``"paper"`` = Eq. 4 jointly with MindEye2's mixup_pct 0.33 then SoftCLIP."""
        if recipe not in SR_RECIPES:
            raise ValueError(f"SemanticsLossConfig.for_recipe: expected one of {tuple(SR_RECIPES)}, found {recipe!r}")
        return cls(**{"recipe": recipe, **SR_RECIPES[recipe], **overrides})

    def to_dict(self) -> dict:
        return asdict(self)

    def stage_weights(self) -> dict[str, dict[str, float]]:
        """{stage: {term: weight}} in training order, zero weights left out.  Terms: ``"contrastive"``
        (BiMixCo or SoftCLIP by epoch), ``"reftm_clip_voxels"``, ``"prior"``, ``"reftm_prior"``."""
        contrastive = {"contrastive": self.contrastive_weight, "reftm_clip_voxels": self.text_weight}
        prior = {"prior": self.prior_weight, "reftm_prior": self.prior_text_weight}
        stages = ({"backbone": contrastive, "prior": prior} if self.recipe == "official"
                  else {"joint": {**contrastive, **prior}})
        return {stage: {k: w for k, w in terms.items() if w} for stage, terms in stages.items()}

    def mixup_epochs(self, num_epochs: int) -> int:
        """How many of ``num_epochs`` epochs mix (MindEye2: ``int(mixup_pct * num_epochs)``)."""
        return int(self.mixup_pct * num_epochs)

    def uses_mixup(self, epoch: int, num_epochs: int) -> bool:
        """Whether ``epoch`` (0-based) trains with MixCo + BiMixCo (else SoftCLIP)."""
        return epoch < self.mixup_epochs(num_epochs)

    def soft_clip_tau(self, epoch: int, num_epochs: int) -> float:
        """SoftCLIP's temperature at ``epoch`` (0-based), annealed over the epochs after the mixup ones."""
        m = self.mixup_epochs(num_epochs)
        if epoch < m:
            raise ValueError(f"SemanticsLossConfig.soft_clip_tau: epoch {epoch} is a mixup epoch (the first {m} of "
                             f"{num_epochs} are); SoftCLIP starts at epoch {m}")
        return soft_clip_temperature(epoch - m, num_epochs - m, *self.soft_clip_temperatures)


def _beta_samples(n: int, alpha: float, generator: torch.Generator) -> torch.Tensor:
    """(n,) float32 draws of Beta(alpha, alpha), reproducible from ``generator``.

    torch's Beta sampler takes no generator, so a seed drawn from ``generator`` seeds numpy's Beta sampler.
    """
    seed = int(torch.randint(0, 2 ** 62, (1,), generator=generator, device=generator.device))
    return torch.from_numpy(np.random.default_rng(seed).beta(alpha, alpha, n).astype(np.float32))


def mixco(voxels: torch.Tensor, generator: torch.Generator, beta_alpha: float = 0.15,
          select_prob: float = 0.5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MixCo in voxel space (MindEye2's ``utils.mixco``): voxels (B, ...) -> (mixed (B, ...), betas (B,), perm (B,)).

    perm is a random permutation of the batch, beta_i ~ Beta(beta_alpha, beta_alpha); each sample is mixed with
    probability ``select_prob``: v_i <- beta_i v_i + (1 - beta_i) v_perm[i]; unselected samples are left as they
    are and get beta_i = 1.  Unlike the official function, the input is not modified in place, and every draw
    comes from ``generator`` (so a run is reproducible).  ``betas`` is float32 on the voxels' device.
    """
    if beta_alpha <= 0 or not 0 <= select_prob <= 1:
        raise ValueError(f"mixco: expected beta_alpha > 0 and select_prob in [0, 1], found {beta_alpha!r} and "
                         f"{select_prob!r}")
    b, dev = voxels.shape[0], voxels.device
    perm = torch.randperm(b, generator=generator, device=generator.device).to(dev)
    betas = _beta_samples(b, beta_alpha, generator).to(dev)
    select = (torch.rand(b, generator=generator, device=generator.device) < select_prob).to(dev)
    betas = torch.where(select, betas, torch.ones_like(betas))
    w = betas.to(voxels.dtype).view(-1, *([1] * (voxels.ndim - 1)))
    return w * voxels + (1 - w) * voxels[perm], betas, perm


def mixco_targets(betas: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """BiMixCo's soft target matrix (B, B): P = diag(betas), plus 1 - beta_i at P[i, perm[i]].

    Added, not assigned as in MindEye2's ``mixco_nce``: where perm[i] = i the official assignment overwrites the
    diagonal (an unmixed sample with perm[i] = i gets an all-zero row and no loss); adding keeps every row a
    distribution.  Elsewhere the two agree.
    """
    p = torch.diag(betas.float())
    return p.index_put((torch.arange(len(betas), device=betas.device), perm), 1 - betas.float(), accumulate=True)


def _unit_rows(x: torch.Tensor) -> torch.Tensor:
    """(B, ...) -> (B, D) float32 rows of unit L2 norm (tokens flattened, as the official losses compare them)."""
    return F.normalize(x.float().flatten(1), dim=-1)


def bimixco_nce(brain: torch.Tensor, clip: torch.Tensor, temperature: float = 0.006,
                betas: torch.Tensor | None = None, perm: torch.Tensor | None = None) -> torch.Tensor:
    """BiMixCo (paper Eq. 8; MindEye2's ``mixco_nce``): brain, clip (B, ...) -> scalar.

    logits = unit(brain) unit(clip)^T / temperature on the flattened vectors; loss = 1/2 [soft CE of the rows
    against :func:`mixco_targets` + soft CE of the columns against its transpose].  The column term weighs the
    pair (l, perm[l]) with 1 - beta_l (the official code; Eq. 8 writes 1 - lambda_j).  Without ``betas`` and
    ``perm`` the targets are the identity: plain bidirectional InfoNCE (the Reftm loss, tau 0.1).
    """
    if (betas is None) != (perm is None):
        raise ValueError("bimixco_nce: pass both betas and perm (from mixco) or neither (plain InfoNCE)")
    logits = _unit_rows(brain) @ _unit_rows(clip).T / temperature
    targets = (torch.eye(len(logits), device=logits.device) if betas is None
               else mixco_targets(betas.to(logits.device), perm.to(logits.device)))
    return (soft_cross_entropy(logits, targets) + soft_cross_entropy(logits.T, targets.T)) / 2


def soft_clip_loss(brain: torch.Tensor, clip: torch.Tensor, temperature: float) -> torch.Tensor:
    """SoftCLIP (MindEye2's ``soft_clip_loss``): brain, clip (B, ...) -> scalar.

    Targets softmax(unit(clip) unit(clip)^T / tau) row-wise: a brain embedding should be as similar to each
    image as its own image is.  Both directions use the same targets, as the official code does.
    """
    b, c = _unit_rows(brain), _unit_rows(clip)
    targets = F.softmax(c @ c.T / temperature, dim=-1)
    logits = b @ c.T / temperature
    return (soft_cross_entropy(logits, targets) + soft_cross_entropy(logits.T, targets)) / 2


def soft_clip_temperature(epoch: int, n_epochs: int, start: float = 0.004, end: float = 0.0075) -> float:
    """SoftCLIP's tau at ``epoch`` of ``n_epochs`` (0-based, counted from the first post-mixup epoch).

    MindEye2's ``cosine_anneal(start, end, n_epochs)[epoch]``: end + (start - end)/2 (1 + cos(pi epoch/(n - 1))),
    from ``start`` at the first epoch to ``end`` at the last (increasing for the defaults); ``start`` when there
    is a single epoch (the official formula divides by zero there).
    """
    if n_epochs < 1 or not 0 <= epoch < n_epochs:
        raise ValueError(f"soft_clip_temperature: expected 0 <= epoch < n_epochs, found epoch {epoch} of "
                         f"{n_epochs}")
    if n_epochs == 1:
        return float(start)
    return float(end + (start - end) / 2 * (1 + math.cos(math.pi * epoch / (n_epochs - 1))))
