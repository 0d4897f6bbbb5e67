"""The diffusion prior of the Semantics Reconstructor: fMRI tokens -> CLIP image tokens (paper §3.2, Eq. 9).

NeuroClips, after MindEye2 and DALL-E 2, does not use the backbone's fMRI tokens as the keyframe's CLIP
embedding directly: a diffusion model, conditioned on them, denoises a sample of the CLIP image tokens, which
unCLIP then turns into the keyframe.  Everything here works on token sequences of shape (B, n_tokens, token_dim),
and the brain condition has the same shape as the image tokens:

- paper profile: OpenCLIP ViT-bigG/14's 256 patch tokens of width 1664, (B, 256, 1664), the cross-attention
  context of MindEye2's ``unclip6``; the condition is the SR's ``clip_voxels`` (B, 256, 1664);
- sim profile: the CLIP stand-in's 64 patch tokens of width 128, (B, 64, 128): ``encode_image``'s second output
  (an 8 x 8 grid of 8-px patches of a 64-px frame, after ``ln_post``, unprojected; see
  :mod:`neuroclips_core.zoo.train.clip` and :func:`neuroclips_core.zoo.unclip_sampling.image_tokens`), which is
  what the unCLIP stand-in (:mod:`neuroclips_core.zoo.train.unclip`) cross-attends to.

Pieces:

- :class:`PriorConfig`: sizes, schedule and sampling settings (:meth:`~PriorConfig.paper`, :meth:`~PriorConfig.sim`);
- :class:`PriorNetwork`: the DALL-E 2 style transformer that predicts x0;
- :class:`DiffusionPrior`: the cosine noise schedule around it, the training :meth:`~DiffusionPrior.loss`
  (MSE to x0 with classifier-free condition drops) and the DDIM sampler :meth:`~DiffusionPrior.sample`.

**The network** (MindEye2's ``PriorNetwork`` with ``learned_query_mode="pos_emb"``, on dalle2-pytorch parts; our
own implementation).  One sequence per item: [brain tokens (n) | time token (1) | noisy image tokens (n)], 2n + 1
tokens of width ``token_dim``.  The time token is a continuous sinusoidal embedding of the timestep through a
3-layer SiLU MLP (width 2 x token_dim); the noisy image tokens get a learned positional embedding (initialised at
scale token_dim^-1/2).  ``depth`` pre-norm residual blocks, each attention then a SwiGLU feed-forward (mult 4),
all projections bias-free, LayerNorms gain-only; then a final LayerNorm and a bias-free output projection.  The
last n outputs are the predicted clean tokens x0.  The attention is dalle2-pytorch's: ``heads`` query heads that
share one key/value head (multi-query attention, which is why the official network has ~0.26 B parameters and
not ~0.29 B), cosine-similarity logits at a fixed scale of 16 (normalised queries and keys keep the logits
bounded, a stability measure of dalle2-pytorch), a learned null key/value every query can attend to, rotary
position embedding on the first ``min(32, dim_head)`` features of queries and keys, and a LayerNorm after the
output projection.  Learned null tokens for the brain condition and for the noisy image input serve
classifier-free guidance.  Non-causal (``causal=False`` as in NeuroClips / MindEye2).

Left out of the official network, on purpose:

- *T5 relative position bias* (``RelPosBias``, 32 buckets up to distance 128): rotary embedding already tells
  every query the relative offset of every key (image token i finds brain token i at the constant offset
  n + 1).  The bias's buckets were made for causal attention: every key after the query shares the bucket of the
  query's own position, and every key 128 or more before it (brain token i, seen from image token i, when
  n = 256) shares the last bucket, so in this non-causal sequence it says little that rotary does not.
- *the "stable" final LayerNorm* (dividing by the token's max first): an fp16 overflow guard; we run fp32 or bf16.
- *checkpoint compatibility with dalle2-pytorch*: parameter names and the rotary feature layout differ, because
  this package never loads MindEye2's prior weights.  NeuroClips initialises its prior from MindEye2's (which was
  trained on NSD with another conditioning, the backbone output before ``clip_proj``) and fine-tunes it; here the
  prior is trained from scratch on the subject, in the paper profile as in the sim one.

**The diffusion** (dalle2-pytorch's ``DiffusionPrior`` as MindEye2 configures it): T = 100 timesteps of the cosine
schedule (Nichol & Dhariwal, s = 0.008, betas capped at 0.999; diffusers' ``squaredcos_cap_v2``, which equals
dalle2-pytorch's ``cosine_beta_schedule``), x0 prediction, loss MSE(pred x0, x0) with t uniform in {0..T-1}.  The
tokens are not rescaled (MindEye2 overrides dalle2's sqrt(dim) ``image_embed_scale`` away), so the tokens' own
scale sets the signal-to-noise ratio of each timestep.  Condition drops, as the official ``cond_drop_prob=0.2``
sets both: each item's brain tokens are replaced by the null brain tokens with probability p and, independently,
its noisy image tokens by the null image tokens with probability p.

**Sampling**: DDIM over ``steps`` timesteps evenly spaced from T - 1 down to 0, then x0; eta = 1 by default
(NeuroClips' ``recon_keyframe.py``: 20 steps, eta 1, so stochastic; with ``steps = T`` and eta 1 this is DDPM's
ancestral sampler, which is what dalle2 runs then).  dalle2-pytorch's own DDIM loop starts at t = 94 (of 99) and
reads each step's alpha one timestep early; ours starts at the last training timestep, where the input really is
pure noise.  Classifier-free guidance with ``guidance_scale`` s: x0 = x0_null + s (x0_cond - x0_null), where, as in
the official ``forward_with_cond_scale``, the null branch drops *both* inputs (brain and noisy image -> their
nulls), a combination training sees with probability p^2; s = 1 (the official setting) runs only the conditional
branch.  Every random draw comes from an explicit CPU ``torch.Generator`` and is moved to the model's device, so a
seed gives the same tokens on every device.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..zoo.train.diffusion import drop_condition, noised

#: the CLIP stand-in's image tokens (B, 64, 128): (64 px / 8 px patches)^2 tokens of the vision width 128
SIM_N_TOKENS, SIM_TOKEN_DIM = 64, 128
#: dalle2-pytorch's attention: logits = 16 x cosine(query, key)
COSINE_SIM_SCALE = 16.0
#: features of each head that rotary embedding rotates (dalle2-pytorch: ``min(32, dim_head)``)
MAX_ROTARY_DIM = 32


# ================================================================================================ config
@dataclass(frozen=True)
class PriorConfig:
    """Sizes, noise schedule and sampling settings of a :class:`DiffusionPrior`.  Build with :meth:`paper` or
    :meth:`sim`; the defaults are the paper's (MindEye2's prior as NeuroClips trains and samples it).

    Attributes:
        n_tokens, token_dim: shape (n_tokens, token_dim) of one item's image tokens and of its brain condition;
            ``token_dim`` is also the transformer's width.
        depth: transformer blocks.
        heads, dim_head: query heads and their width (the shared key/value head has width ``dim_head``).
        ff_mult: SwiGLU hidden width / token_dim.
        timesteps: T, training timesteps of the cosine schedule.
        cond_drop_prob: probability of each of the two independent condition drops in training.
        sample_steps, sample_eta: DDIM steps and eta of :meth:`DiffusionPrior.sample` by default.
        guidance_scale: classifier-free guidance scale of :meth:`DiffusionPrior.sample` by default (1 = none).
    """

    n_tokens: int = 256
    token_dim: int = 1664
    depth: int = 6
    heads: int = 32
    dim_head: int = 52
    ff_mult: int = 4
    timesteps: int = 100
    cond_drop_prob: float = 0.2
    sample_steps: int = 20
    sample_eta: float = 1.0
    guidance_scale: float = 1.0

    def __post_init__(self):
        positive = ("n_tokens", "token_dim", "depth", "heads", "dim_head", "ff_mult", "timesteps", "sample_steps")
        bad = [f"{k}={getattr(self, k)}" for k in positive if int(getattr(self, k)) < 1]
        if bad:
            raise ValueError(f"PriorConfig: expected positive sizes, found {', '.join(bad)}")
        if not 0.0 <= self.cond_drop_prob <= 1.0:
            raise ValueError(f"PriorConfig: cond_drop_prob must lie in [0, 1], found {self.cond_drop_prob}")
        if self.sample_steps > self.timesteps:
            raise ValueError(f"PriorConfig: sample_steps ({self.sample_steps}) cannot exceed timesteps "
                             f"({self.timesteps}): DDIM visits a subset of the training timesteps")
        if self.sample_eta < 0:
            raise ValueError(f"PriorConfig: sample_eta must be >= 0 (0: deterministic DDIM), found {self.sample_eta}")

    @property
    def rotary_dim(self) -> int:
        """Features of each head rotated by rotary embedding: min(32, dim_head), rounded down to even."""
        return min(MAX_ROTARY_DIM, self.dim_head - self.dim_head % 2)

    @classmethod
    def paper(cls, **overrides) -> "PriorConfig":
        """MindEye2's prior as NeuroClips uses it: tokens (256, 1664), 6 blocks of 32 x 52 heads, T = 100 cosine,
        condition drops 0.2, x0 prediction; sampled with DDIM 20 steps, eta 1, no guidance (~0.26 B parameters)."""
        return cls(**overrides)

    @classmethod
    def sim(cls, n_tokens: int = SIM_N_TOKENS, token_dim: int = SIM_TOKEN_DIM, **overrides) -> "PriorConfig":
        """CPU sizes for cc2017-sim: the same architecture and diffusion, 4 blocks of 4 heads.

        The default tokens are the CLIP stand-in's (B, 64, 128) (:data:`SIM_N_TOKENS`, :data:`SIM_TOKEN_DIM`);
        pass the shape of the tokens actually used if they differ.  Heads are ``token_dim / 4`` wide (at least 8).
        """
        base = dict(depth=4, heads=4, dim_head=max(8, int(token_dim) // 4))
        return cls(n_tokens=int(n_tokens), token_dim=int(token_dim), **{**base, **overrides})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PriorConfig":
        return cls(**d)


# ================================================================================================ network
def rotary_tables(length: int, rotary_dim: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of rotary embedding's angles, each (length, rotary_dim / 2) float32.

    Position p turns feature pair k by p * 10000^(-2k / rotary_dim) radians (RoFormer's frequencies).
    """
    freqs = 10000.0 ** (-torch.arange(0, rotary_dim, 2, device=device, dtype=torch.float32) / rotary_dim)
    angles = torch.arange(length, device=device, dtype=torch.float32)[:, None] * freqs[None]
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the first 2 k features of ``x`` (..., L, d) by position (``cos``, ``sin``: (L, k)); the rest pass.

    Feature j is paired with feature j + k (the "rotate half" layout), so dot products of rotated queries and
    keys depend on their positions only through the offset between them.
    """
    k = cos.shape[-1]
    x1, x2, rest = x[..., :k], x[..., k:2 * k], x[..., 2 * k:]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos, rest), dim=-1)


class MultiQueryAttention(nn.Module):
    """Pre-norm attention of dalle2-pytorch's prior: (B, L, dim) -> (B, L, dim), without the residual.

    ``heads`` query heads share one key/value head of width ``dim_head``; a learned null key/value is prepended
    (a place for a query to put attention it has no use for); queries and keys are rotary-embedded, then
    L2-normalised, and the logits are 16 x their cosine; the output projection is followed by a LayerNorm.
    """

    def __init__(self, dim: int, heads: int, dim_head: int):
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        self.norm = nn.LayerNorm(dim, bias=False)
        self.to_q = nn.Linear(dim, heads * dim_head, bias=False)
        self.to_kv = nn.Linear(dim, 2 * dim_head, bias=False)
        self.null_kv = nn.Parameter(torch.randn(2, dim_head))
        self.to_out = nn.Linear(heads * dim_head, dim, bias=False)
        self.out_norm = nn.LayerNorm(dim, bias=False)

    def forward(self, x: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        b, length, _ = x.shape
        h = self.norm(x)
        q = self.to_q(h).view(b, length, self.heads, self.dim_head).transpose(1, 2)   # (B, H, L, dh)
        k, v = self.to_kv(h).chunk(2, dim=-1)                                         # (B, L, dh) each
        q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        null_k, null_v = self.null_kv.to(k.dtype)[:, None, :].expand(2, b, self.dim_head).unsqueeze(2)
        k, v = torch.cat((null_k, k), dim=1), torch.cat((null_v, v), dim=1)          # (B, L + 1, dh)
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        # one key/value head for all query heads: expand is a view, not a copy
        k, v = (t.unsqueeze(1).expand(-1, self.heads, -1, -1) for t in (k, v))
        y = F.scaled_dot_product_attention(q, k, v, scale=COSINE_SIM_SCALE)          # (B, H, L, dh)
        return self.out_norm(self.to_out(y.transpose(1, 2).reshape(b, length, -1)))


class SwiGLUFeedForward(nn.Module):
    """Pre-norm SwiGLU feed-forward: (B, L, dim) -> (B, L, dim), hidden width ``mult * dim``, no biases."""

    def __init__(self, dim: int, mult: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, bias=False)
        self.proj_in = nn.Linear(dim, 2 * mult * dim, bias=False)
        self.proj_out = nn.Linear(mult * dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj_in(self.norm(x)).chunk(2, dim=-1)
        return self.proj_out(value * F.silu(gate))


class PriorBlock(nn.Module):
    """x + Attn(x), then + FF: (B, L, dim) -> (B, L, dim)."""

    def __init__(self, config: PriorConfig):
        super().__init__()
        self.attn = MultiQueryAttention(config.token_dim, config.heads, config.dim_head)
        self.ff = SwiGLUFeedForward(config.token_dim, config.ff_mult)

    def forward(self, x: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x = x + self.attn(x, rotary)
        return x + self.ff(x)


class TimeEmbedding(nn.Module):
    """Diffusion timesteps (B,) -> one token each (B, 1, dim): sinusoidal features of the (continuous) timestep,
    then an MLP dim -> 2 dim -> 2 dim -> dim with SiLU (dalle2-pytorch's ``SinusoidalPosEmb`` + ``MLP``)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.SiLU(), nn.Linear(2 * dim, 2 * dim), nn.SiLU(),
                                 nn.Linear(2 * dim, dim))

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:
        from diffusers.models.embeddings import get_timestep_embedding

        # [sin | cos] at frequencies 10000^(-k / (dim/2 - 1)): dalle2-pytorch's SinusoidalPosEmb
        features = get_timestep_embedding(timesteps.float(), self.dim, flip_sin_to_cos=False, downscale_freq_shift=1)
        return self.mlp(features).unsqueeze(1)


class PriorNetwork(nn.Module):
    """Predicts clean image tokens x0 from noisy ones, the timestep and the brain condition.

    ``forward(noisy_image_tokens (B, n, d), timesteps (B,), brain_tokens (B, n, d)) -> x0 (B, n, d)``.

    Parameters beside the transformer: ``image_pos_emb`` (n, d), added to the noisy image tokens;
    ``null_brain_tokens`` and ``null_image_tokens`` (n, d), the learned stand-ins for a dropped condition.
    """

    def __init__(self, config: PriorConfig):
        super().__init__()
        self.config = config
        n, d = config.n_tokens, config.token_dim
        self.time_embedding = TimeEmbedding(d)
        self.image_pos_emb = nn.Parameter(torch.randn(n, d) * d ** -0.5)
        self.null_brain_tokens = nn.Parameter(torch.randn(n, d))
        self.null_image_tokens = nn.Parameter(torch.randn(n, d))
        self.blocks = nn.ModuleList(PriorBlock(config) for _ in range(config.depth))
        self.final_norm = nn.LayerNorm(d, bias=False)
        self.project_out = nn.Linear(d, d, bias=False)

    def check_tokens(self, tokens: torch.Tensor, what: str) -> None:
        """Raise a ValueError unless ``tokens`` is (B, n_tokens, token_dim)."""
        n, d = self.config.n_tokens, self.config.token_dim
        if tokens.ndim != 3 or tuple(tokens.shape[1:]) != (n, d):
            raise ValueError(f"diffusion prior: expected {what} of shape (B, {n}, {d}), found {tuple(tokens.shape)}"
                             f" (the prior was built for {n} tokens of width {d}; see PriorConfig)")

    def forward(self, noisy_image_tokens: torch.Tensor, timesteps: torch.Tensor,
                brain_tokens: torch.Tensor) -> torch.Tensor:
        self.check_tokens(noisy_image_tokens, "noisy image tokens")
        self.check_tokens(brain_tokens, "brain tokens")
        b, n, _ = noisy_image_tokens.shape
        if brain_tokens.shape[0] != b or timesteps.shape != (b,):
            raise ValueError(f"diffusion prior: batch sizes differ: noisy image tokens {b}, brain tokens "
                             f"{brain_tokens.shape[0]}, timesteps {tuple(timesteps.shape)} (expected ({b},))")
        dtype = noisy_image_tokens.dtype
        x = torch.cat((brain_tokens.to(dtype), self.time_embedding(timesteps).to(dtype),
                       noisy_image_tokens + self.image_pos_emb.to(dtype)), dim=1)    # (B, 2n + 1, d)
        rotary = rotary_tables(x.shape[1], self.config.rotary_dim, device=x.device)
        for block in self.blocks:
            x = block(x, rotary)
        return self.project_out(self.final_norm(x[:, -n:]))                         # the image positions


# ================================================================================================ diffusion
def cosine_schedule(timesteps: int):
    """The forward process: a diffusers ``DDPMScheduler`` with the cosine schedule over ``timesteps`` steps and x0
    ("sample") as the prediction target.  Its ``alphas_cumprod[t]`` = f(t + 1) / f(0) with
    f(u) = cos^2((u / T + 0.008) / 1.008 * pi / 2) (betas capped at 0.999, which only touches the last step)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=timesteps, beta_schedule="squaredcos_cap_v2", prediction_type="sample",
                         clip_sample=False)


def ddim_timesteps(timesteps: int, steps: int) -> list[int]:
    """``steps`` distinct training timesteps, evenly spaced from ``timesteps - 1`` down to 0."""
    if not 1 <= steps <= timesteps:
        raise ValueError(f"diffusion prior: sampling steps must lie in [1, {timesteps}] (the training timesteps), "
                         f"found {steps}")
    return torch.linspace(timesteps - 1, 0, steps).round().long().tolist()


def ddim_step(x_t: torch.Tensor, x0: torch.Tensor, alpha_bar: float, alpha_bar_next: float, eta: float,
              noise: torch.Tensor | None) -> torch.Tensor:
    """One DDIM step from x_t (noise level ``alpha_bar``) to the next level ``alpha_bar_next`` given predicted x0.

    eps = (x_t - sqrt(a) x0) / sqrt(1 - a);  sigma = eta sqrt((1 - a') / (1 - a)) sqrt(1 - a / a');
    x' = sqrt(a') x0 + sqrt(1 - a' - sigma^2) eps + sigma noise      (Song et al. 2021, Eq. 12)
    """
    a, a_next = float(alpha_bar), float(alpha_bar_next)
    eps = (x_t - math.sqrt(a) * x0) / math.sqrt(1 - a)
    sigma = eta * math.sqrt(max((1 - a_next) / (1 - a) * (1 - a / a_next), 0.0))
    x_next = math.sqrt(a_next) * x0 + math.sqrt(max(1 - a_next - sigma ** 2, 0.0)) * eps
    return x_next if noise is None else x_next + sigma * noise


class DiffusionPrior(nn.Module):
    """The prior: a :class:`PriorNetwork` (``net``) under the cosine noise schedule (``scheduler``).

    Tokens are (B, n_tokens, token_dim) throughout: image tokens (the target) and brain tokens (the condition).
    """

    def __init__(self, config: PriorConfig):
        super().__init__()
        self.config = config
        self.net = PriorNetwork(config)
        with torch.device("cpu"):     # the schedule stays real even when the network is built on "meta"
            self.scheduler = cosine_schedule(config.timesteps)

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        """(T,) float32: the fraction of signal variance left at each training timestep, ~1 -> ~0."""
        return self.scheduler.alphas_cumprod

    def _drop_conditions(self, brain_tokens, noisy_image_tokens, generator):
        """Replace each item's brain tokens by the null brain tokens with probability p and, independently, its
        noisy image tokens by the null image tokens with probability p (training only)."""
        p = self.config.cond_drop_prob
        brain_tokens = drop_condition(brain_tokens, self.net.null_brain_tokens, p, generator)
        noisy_image_tokens = drop_condition(noisy_image_tokens, self.net.null_image_tokens, p, generator)
        return brain_tokens, noisy_image_tokens

    def loss(self, brain_tokens: torch.Tensor, image_tokens: torch.Tensor, generator: torch.Generator,
             return_prediction: bool = False):
        """The prior loss (Eq. 9): MSE between the predicted and the true image tokens x0.

        Args:
            brain_tokens: the condition (B, n, d) (the SR's ``clip_voxels``).
            image_tokens: the target x0 (B, n, d) (the keyframe's CLIP image tokens).
            generator: a CPU generator for the timesteps (uniform in {0..T-1}, one per item), the noise and the
                condition drops.
            return_prediction: also return the predicted x0 (B, n, d), which NeuroClips' Reftm loss aligns with
                the caption embedding in stage B.

        In training mode the conditions are dropped (:attr:`PriorConfig.cond_drop_prob`); in eval mode they are
        not, so a validation loss measures the conditional prediction that sampling uses.

        Returns:
            the scalar loss (float32), or ``(loss, predicted x0)`` with ``return_prediction``.
        """
        self.net.check_tokens(brain_tokens, "brain tokens")
        self.net.check_tokens(image_tokens, "image tokens")
        noisy, t, target = noised(self.scheduler, image_tokens, generator)
        if self.training:
            brain_tokens, noisy = self._drop_conditions(brain_tokens, noisy, generator)
        pred = self.net(noisy, t, brain_tokens)
        loss = F.mse_loss(pred.float(), target.float())
        return (loss, pred) if return_prediction else loss

    def predict_x0(self, noisy_image_tokens: torch.Tensor, timesteps: torch.Tensor, brain_tokens: torch.Tensor,
                   guidance_scale: float = 1.0) -> torch.Tensor:
        """Predicted x0 (B, n, d) with classifier-free guidance: x0_null + s (x0_cond - x0_null).

        The null branch replaces both inputs by their learned nulls (the official ``forward_with_cond_scale``);
        ``guidance_scale`` 1 runs the conditional branch only.
        """
        cond = self.net(noisy_image_tokens, timesteps, brain_tokens)
        if guidance_scale == 1.0:
            return cond
        b = noisy_image_tokens.shape[0]
        null_image = self.net.null_image_tokens.to(noisy_image_tokens.dtype).expand(b, -1, -1)
        null_brain = self.net.null_brain_tokens.to(brain_tokens.dtype).expand(b, -1, -1)
        uncond = self.net(null_image, timesteps, null_brain)
        return uncond + guidance_scale * (cond - uncond)

    @torch.no_grad()
    def sample(self, brain_tokens: torch.Tensor, steps: int | None = None, guidance_scale: float | None = None, *,
               generator: torch.Generator, eta: float | None = None) -> torch.Tensor:
        """Image tokens (B, n, d) for brain tokens (B, n, d): DDIM from pure noise, x0 predicted at every step.

        Args:
            brain_tokens: the condition (B, n, d).
            steps: DDIM steps (default :attr:`PriorConfig.sample_steps`, 20); ``T`` with eta 1 is DDPM sampling.
            guidance_scale: classifier-free guidance (default :attr:`PriorConfig.guidance_scale`, 1 = none).
            generator: a CPU generator for the starting noise and each step's noise: the same seed gives the same
                tokens, on any device.
            eta: DDIM's eta (default :attr:`PriorConfig.sample_eta`, 1; 0 = deterministic given the start).
        """
        c = self.config
        self.net.check_tokens(brain_tokens, "brain tokens")
        steps = c.sample_steps if steps is None else int(steps)
        guidance_scale = c.guidance_scale if guidance_scale is None else float(guidance_scale)
        eta = c.sample_eta if eta is None else float(eta)
        b, device, dtype = brain_tokens.shape[0], brain_tokens.device, brain_tokens.dtype

        def gaussian() -> torch.Tensor:
            return torch.randn(brain_tokens.shape, generator=generator).to(device, dtype)

        def at(t: int) -> torch.Tensor:
            return torch.full((b,), t, device=device, dtype=torch.long)

        schedule = ddim_timesteps(c.timesteps, steps)
        x = gaussian()
        for t, t_next in zip(schedule[:-1], schedule[1:]):
            x0 = self.predict_x0(x, at(t), brain_tokens, guidance_scale)
            noise = gaussian() if eta > 0 else None
            x = ddim_step(x, x0, self.alphas_cumprod[t], self.alphas_cumprod[t_next], eta, noise)
        # the last step goes to alpha_bar = 1, where DDIM's update is the predicted x0 itself
        return self.predict_x0(x, at(schedule[-1]), brain_tokens, guidance_scale)
