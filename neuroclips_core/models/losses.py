"""Training losses of the Perception Reconstructor: the paper's Eq. 1 and the official code's variant.

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
    target_1 = F.softmax(t @ ta.T / temperature, dim=-1)
    loss_1 = -(target_1 * F.log_softmax(s @ ta.T / temperature, dim=-1)).sum(-1).mean()
    target_2 = F.softmax(ta @ t.T / temperature, dim=-1)
    loss_2 = -(target_2 * F.log_softmax(ta @ s.T / temperature, dim=-1)).sum(-1).mean()
    return (loss_1 + loss_2) / 2


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
