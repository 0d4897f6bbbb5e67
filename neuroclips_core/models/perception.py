"""The Perception Reconstructor (PR; paper §3.1, App. B.1): one fMRI sample -> N_f VAE latents -> a blurry video.

Shapes (B clips, V voxels, F = N_f frames per clip, e = coarse grid, s = latent grid)::

    fmri (B, V)
     Inception Extension  Linear(V, h) GELU Drop, residual MLP block(s), Linear(h, F V) GELU Drop
                          -> F pseudo-fMRIs (B, F, V)                    "extend one fMRI to N_f fMRIs"
     MLP backbone         per frame, shared: Linear(V, hidden), n_blocks x residual [LN Lin GELU Drop Lin]
                          -> (B F, hidden)
     projection           Linear(hidden, c e e) Drop -> (B F, c, e, e) GroupNorm(1): the coarse spatial embedding
     Temporal Upsampling  conv_in, a middle layer, then per stage ``layers_per_stage`` x [spatial layer +
                          temporal attention] and a 2x upsampling between stages, GN SiLU conv_out
                          -> (B F, C_lat, s, s),  s = e 2^(stages - 1)
    -> latents (B, F, C_lat, s, s), in the VAE's scaled latent space (``latents / scaling_factor`` decodes)
     [+ ridge skip]       optional frozen Linear(V, F C_lat s s), the network's path gated (``linear_skip``)
     [LatentRefiner]      optional per-frame residual conv net on the latents (``refiner_channels``; stage 2)

=============  =======================  =======================================
size           ``paper()``              ``sim()`` (default cc2017-sim)
=============  =======================  =======================================
voxels V       13447 (subject 1)        the subject's (~6000)
h / hidden     256 / 4096, 4 blocks     128 / 512, 1 block
coarse c x e   64 x 7 x 7               32 x 4 x 4
stages         128, 64, 32; 2 layers    32, 16, 16; 1 layer (spatial attention
               each, spatial attention  at 4 x 4 only); temporal attention in
               and temporal attention   every layer
               in every layer
latents        4 x 28 x 28 (224 px)     4 x 16 x 16 (64 px)
parameters     228.4 M                  9.4 M at V = 6000 (most in the two
                                        voxel-wide layers)
=============  =======================  =======================================

One Temporal Upsampling layer (App. B.1), on frames h (B F, C, H, W)::

    s = SpatialAttention(ResBlock(h))                 spatial layer (2-D convs, as the official code)
    h = eta_s * shortcut(h) + (1 - eta_s) * s         learnable residual mix, eta_s starts at 0
    h = h + (1 - eta_t) * TemporalAttention(h)        Eq. 2, eta_t starts at 1 (as the official code)

Departures from the official code (neuroclips-official-code.md §2.1-2.2), on purpose:

- temporal attention runs **within each clip's F frames**, in training and inference alike, with a
  sinusoidal **temporal position encoding**: the official code attends across the 40 clips of a training batch
  (240 frames) but over groups of 10 rows at inference, with no position encoding, so its frames are a set
  and the grouping depends on the batch size; here a clip's output does not depend on its batch;
- the paper's ``eta_1`` around the spatial layer is kept (the code has only the temporal ``eta``); it starts
  at 0, where the layer is exactly the code's ResNet + attention;
- the degenerate "channel-mixing" blocks over a length-1 sequence axis (a LayerNorm over one element, i.e. a
  learned constant) are dropped;
- attention uses query, key, value and output projections as the code does (the paper's Eq. 2 leaves values
  unprojected); one head as wide as the channels unless ``head_dim`` says otherwise.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import ResidualMLP, check_fmri, count_parameters, init_linear_from_ridge, voxel_weight_norms
from .checkpoint import CheckpointError, CheckpointKind, Checkpointed

CHECKPOINT_FORMAT = "neuroclips_core.perception"
CHECKPOINT_VERSION = 1


class PerceptionCheckpointError(CheckpointError):
    """A PR checkpoint is missing, of another kind, or made for another subject's voxel count."""


PERCEPTION_CHECKPOINT = CheckpointKind(
    format=CHECKPOINT_FORMAT, version=CHECKPOINT_VERSION, model_name="Perception Reconstructor", short_name="PR",
    train_hint="neuroclips_core.perception_run.train_perception(cfg)", error=PerceptionCheckpointError)


# ================================================================================================ config
@dataclass(frozen=True)
class PerceptionConfig:
    """Sizes of a :class:`PerceptionReconstructor`.  Build with :meth:`paper` or :meth:`sim`.

    Attributes:
        n_voxels: V, the subject's selected voxels (13447 / 14828 / 9114 for cc2017 subjects 1-3).
        n_frames: N_f, frames per clip (6: 3 FPS over 2 s).
        inception_hidden, inception_blocks: width and residual blocks of the Inception Extension's MLP.
        hidden, n_blocks: width and residual blocks of the MLP backbone.
        dropout: dropout of both MLPs; ``head_dropout`` after the projection to the coarse embedding.
        embed_channels, embed_size: the coarse spatial embedding (c, e, e).
        decoder_channels: channels of the Temporal Upsampling stages, coarse to fine; a 2x upsampling
            between consecutive stages, so the latent grid is ``embed_size * 2 ** (len - 1)``.
        layers_per_stage: spatial + temporal layers per stage (the official code: 2).
        spatial_attention: per stage, whether its spatial layers have self-attention over the H W positions
            (the middle layer follows the first stage).
        head_dim: attention head width; 0 = one head as wide as the channels (the official code).
        norm_groups: GroupNorm groups (reduced to a divisor of the channels where needed).
        latent_channels: the VAE's latent channels.
        token_dim: > 0 adds the token projector the official loss distils a teacher into: (e e) tokens of
            this width per frame; 0 = no projector (Eq. 1 needs none).
        linear_skip: add a frozen linear map fMRI -> latents (set by :meth:`PerceptionReconstructor.
            init_skip_from_ridge` to the ridge baseline's solution) to the decoder's output, which sits behind a
            gate started at 0: training starts from ridge's prediction and the network adds what it can.  Not in
            the paper or the official code (see :mod:`neuroclips_core.perception_run` for why the sim uses it).
        refiner_channels: > 0 ends the model with a :class:`LatentRefiner` of this width, a per-frame residual
            conv net on the predicted latents that is trained afterwards through the frozen VAE decoder
            (:mod:`neuroclips_core.perception_refine`); 0 = none (the paper and the official code).
    """

    n_voxels: int
    n_frames: int = 6
    inception_hidden: int = 256
    inception_blocks: int = 1
    hidden: int = 4096
    n_blocks: int = 4
    dropout: float = 0.15
    head_dropout: float = 0.3
    embed_channels: int = 64
    embed_size: int = 7
    decoder_channels: tuple = (128, 64, 32)
    layers_per_stage: int = 2
    spatial_attention: tuple = (True, True, True)
    head_dim: int = 0
    norm_groups: int = 32
    latent_channels: int = 4
    token_dim: int = 0
    linear_skip: bool = False
    refiner_channels: int = 0

    def __post_init__(self):
        object.__setattr__(self, "decoder_channels", tuple(int(c) for c in self.decoder_channels))
        object.__setattr__(self, "spatial_attention", tuple(bool(a) for a in self.spatial_attention))
        positive = ("n_voxels", "n_frames", "inception_hidden", "hidden", "embed_channels", "embed_size",
                    "layers_per_stage", "latent_channels")
        bad = [f"{k}={getattr(self, k)}" for k in positive if int(getattr(self, k)) < 1]
        if bad:
            raise ValueError(f"PerceptionConfig: expected positive sizes, found {', '.join(bad)}")
        if not self.decoder_channels:
            raise ValueError("PerceptionConfig: decoder_channels needs at least one stage")
        if len(self.spatial_attention) != len(self.decoder_channels):
            raise ValueError(f"PerceptionConfig: spatial_attention has {len(self.spatial_attention)} entries, "
                             f"expected one per stage of decoder_channels {self.decoder_channels}")
        for c in self.decoder_channels:
            if self.head_dim and c % self.head_dim:
                raise ValueError(f"PerceptionConfig: head_dim {self.head_dim} does not divide {c} channels")

    @property
    def latent_size(self) -> int:
        return self.embed_size * 2 ** (len(self.decoder_channels) - 1)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(C, s, s) of one frame's latent."""
        return (self.latent_channels, self.latent_size, self.latent_size)

    @classmethod
    def paper(cls, n_voxels: int = 13447, **overrides) -> "PerceptionConfig":
        """The official sizes: Inception Extension h 256, backbone 4096 x 4 blocks, 64 x 7 x 7 coarse embedding,
        stages (128, 64, 32) -> SD-VAE latents 4 x 28 x 28 of 224 px frames (~228 M parameters at V = 13447)."""
        return cls(n_voxels=n_voxels, **overrides)

    @classmethod
    def sim(cls, n_voxels: int, latent_shape: tuple[int, int, int] = (4, 16, 16), **overrides) -> "PerceptionConfig":
        """Sizes for the CPU and cc2017-sim: the same architecture, ~50x fewer parameters; latents of the VAE
        stand-in (4 x 16 x 16 of 64 px frames) by default, any (C, s, s) with s = e 2^k otherwise."""
        c, s, s2 = (int(x) for x in latent_shape)
        if s != s2:
            raise ValueError(f"PerceptionConfig.sim: expected square latents (C, s, s), found {latent_shape}")
        n_up = 2
        while n_up and s % 2 ** n_up:
            n_up -= 1
        base = dict(inception_hidden=128, hidden=512, n_blocks=1, embed_channels=32, embed_size=s // 2 ** n_up,
                    decoder_channels=(32, 16, 16)[:n_up + 1], spatial_attention=(True, False, False)[:n_up + 1],
                    layers_per_stage=1, latent_channels=c)
        return cls(n_voxels=n_voxels, **{**base, **overrides})

    def to_dict(self) -> dict:
        d = asdict(self)
        d["decoder_channels"], d["spatial_attention"] = list(self.decoder_channels), list(self.spatial_attention)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PerceptionConfig":
        return cls(**d)

    def with_voxels(self, n_voxels: int) -> "PerceptionConfig":
        return replace(self, n_voxels=int(n_voxels))


# ================================================================================================ blocks
def _groups(channels: int, wanted: int) -> int:
    return math.gcd(channels, wanted)


class InceptionExtension(nn.Module):
    """One fMRI sample -> ``n_frames`` pseudo-fMRIs: (B, V) -> (B, F, V).

    A shallow MLP (the paper's words; the official h = 256, one block) ending, as the official code does, in a
    GELU and dropout on the voxel-level output.
    """

    def __init__(self, n_voxels: int, n_frames: int, hidden: int, n_blocks: int, dropout: float):
        super().__init__()
        self.n_voxels, self.n_frames = n_voxels, n_frames
        self.lin0 = nn.Sequential(nn.Linear(n_voxels, hidden), nn.GELU(), nn.Dropout(dropout))
        self.blocks = nn.Sequential(*(ResidualMLP(hidden, dropout) for _ in range(n_blocks)))
        self.lin1 = nn.Sequential(nn.Linear(hidden, n_frames * n_voxels), nn.GELU(), nn.Dropout(dropout))

    def forward(self, fmri: torch.Tensor) -> torch.Tensor:
        return self.lin1(self.blocks(self.lin0(fmri))).view(-1, self.n_frames, self.n_voxels)


class ResBlock(nn.Module):
    """GN SiLU conv3x3 GN SiLU conv3x3 + shortcut: (N, C_in, H, W) -> (N, C_out, H, W)."""

    def __init__(self, c_in: int, c_out: int, groups: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.GroupNorm(_groups(c_in, groups), c_in), nn.SiLU(), nn.Conv2d(c_in, c_out, 3, padding=1),
            nn.GroupNorm(_groups(c_out, groups), c_out), nn.SiLU(), nn.Conv2d(c_out, c_out, 3, padding=1))
        self.shortcut = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1)

    def forward(self, x):
        return self.shortcut(x) + self.net(x)


class _Attention(nn.Module):
    """Multi-head self-attention over the middle axis of (N, L, C) with q, k, v and output projections."""

    def __init__(self, channels: int, head_dim: int):
        super().__init__()
        self.heads = channels // head_dim if head_dim else 1
        self.qkv = nn.Linear(channels, 3 * channels)
        self.out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, c = x.shape
        q, k, v = self.qkv(x).view(n, length, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)                       # (N, heads, L, c / heads)
        return self.out(y.transpose(1, 2).reshape(n, length, c))


class SpatialAttention(nn.Module):
    """h + Attn(GN(h)) over the H W positions of each frame: (N, C, H, W) -> (N, C, H, W)."""

    def __init__(self, channels: int, groups: int, head_dim: int):
        super().__init__()
        self.norm = nn.GroupNorm(_groups(channels, groups), channels)
        self.attn = _Attention(channels, head_dim)

    def forward(self, h):
        n, c, hh, ww = h.shape
        tokens = self.norm(h).flatten(2).transpose(1, 2)                   # (N, H W, C)
        return h + self.attn(tokens).transpose(1, 2).reshape(n, c, hh, ww)


def temporal_position_encoding(n_frames: int, channels: int, device=None, dtype=None) -> torch.Tensor:
    """Sinusoidal encoding of the frame index: (F, C) (sin on even channels, cos on odd, as in Transformers)."""
    pos = torch.arange(n_frames, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, channels, 2, device=device, dtype=torch.float32) / channels)
    pe = torch.zeros(n_frames, channels, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)[:, : channels // 2]
    return pe.to(dtype or torch.float32)


class TemporalAttention(nn.Module):
    """Attention across the F frames of each clip, at every spatial position (E'_Y of Eq. 2, without the residual).

    (B F, C, H, W) -> (B F, C, H, W).  Frames of one clip are consecutive rows (clip-major, as the backbone
    emits them); each of the B H W sequences holds one clip's F frames at one position, with the sinusoidal
    frame-index encoding added after the GroupNorm so the attention knows the frame order.
    """

    def __init__(self, channels: int, groups: int, head_dim: int):
        super().__init__()
        self.norm = nn.GroupNorm(_groups(channels, groups), channels)
        self.attn = _Attention(channels, head_dim)

    def forward(self, h: torch.Tensor, n_frames: int) -> torch.Tensor:
        bf, c, hh, ww = h.shape
        b = bf // n_frames
        # (B, F, C, H, W) -> (B H W, C, F): GroupNorm statistics over channel groups x frames, per position
        t = h.view(b, n_frames, c, hh, ww).permute(0, 3, 4, 2, 1).reshape(b * hh * ww, c, n_frames)
        t = self.norm(t).transpose(1, 2)                                   # (B H W, F, C)
        t = t + temporal_position_encoding(n_frames, c, t.device, t.dtype)
        y = self.attn(t)                                                   # (B H W, F, C)
        return y.view(b, hh, ww, n_frames, c).permute(0, 3, 4, 1, 2).reshape(bf, c, hh, ww)


class TemporalUpsamplingLayer(nn.Module):
    """Spatial layer, learnable residual mix, temporal attention, learnable residual mix (App. B.1).

    (B F, C_in, H, W) -> (B F, C_out, H, W).  ``eta_spatial`` starts at 0 (the spatial layer's output alone,
    as the official code), ``eta_temporal`` at 1 (temporal attention off at the start, as the official code;
    it is learned like every other weight).
    """

    def __init__(self, c_in: int, c_out: int, spatial_attention: bool, groups: int, head_dim: int):
        super().__init__()
        self.res = ResBlock(c_in, c_out, groups)
        self.spatial = SpatialAttention(c_out, groups, head_dim) if spatial_attention else None
        self.temporal = TemporalAttention(c_out, groups, head_dim)
        self.eta_spatial = nn.Parameter(torch.tensor(0.0))
        self.eta_temporal = nn.Parameter(torch.tensor(1.0))

    def forward(self, h: torch.Tensor, n_frames: int) -> torch.Tensor:
        s = self.res(h)
        if self.spatial is not None:
            s = self.spatial(s)
        h = self.eta_spatial * self.res.shortcut(h) + (1 - self.eta_spatial) * s
        return h + (1 - self.eta_temporal) * self.temporal(h, n_frames)


class TemporalUpsampling(nn.Module):
    """Coarse embedding (B F, c, e, e) -> latents (B F, C_lat, s, s), s = e 2^(stages - 1)."""

    def __init__(self, cfg: PerceptionConfig):
        super().__init__()
        ch, g, hd = cfg.decoder_channels, cfg.norm_groups, cfg.head_dim
        self.conv_in = nn.Conv2d(cfg.embed_channels, ch[0], 3, padding=1)
        self.mid = TemporalUpsamplingLayer(ch[0], ch[0], cfg.spatial_attention[0], g, hd)
        self.stages = nn.ModuleList()
        self.upsamplers = nn.ModuleList()
        c_prev = ch[0]
        for i, c in enumerate(ch):
            self.stages.append(nn.ModuleList(
                TemporalUpsamplingLayer(c_prev if j == 0 else c, c, cfg.spatial_attention[i], g, hd)
                for j in range(cfg.layers_per_stage)))
            c_prev = c
            if i < len(ch) - 1:
                self.upsamplers.append(nn.Sequential(nn.Upsample(scale_factor=2.0, mode="nearest"),
                                                     nn.Conv2d(c, c, 3, padding=1)))
        self.out = nn.Sequential(nn.GroupNorm(_groups(ch[-1], g), ch[-1]), nn.SiLU(),
                                 nn.Conv2d(ch[-1], cfg.latent_channels, 3, padding=1))

    def forward(self, b: torch.Tensor, n_frames: int) -> torch.Tensor:
        h = self.mid(self.conv_in(b), n_frames)
        for i, layers in enumerate(self.stages):
            for layer in layers:
                h = layer(h, n_frames)
            if i < len(self.upsamplers):
                h = self.upsamplers[i](h)
        return self.out(h)


class TokenProjector(nn.Module):
    """Coarse embedding (N, c, e, e) -> tokens (N, e e, D): the official code's 1x1-conv projector, the student
    of its soft token distillation (conv, GN, ReLU, conv, GN, ReLU, conv)."""

    def __init__(self, channels: int, dim: int, groups: int = 1):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(channels, dim, 1, bias=False), nn.GroupNorm(groups, dim), nn.ReLU(),
                                 nn.Conv2d(dim, dim, 1, bias=False), nn.GroupNorm(groups, dim), nn.ReLU(),
                                 nn.Conv2d(dim, dim, 1))

    def forward(self, b):
        return self.net(b).flatten(2).transpose(1, 2)


# ================================================================================================= model
class LatentRefiner(nn.Module):
    """Latents (N, C, s, s) -> latents + a residual correction: conv3x3 (C -> c) SiLU conv3x3 (c -> c) SiLU
    conv3x3 (c -> C), applied to every frame alike.

    The last conv starts at zero, so an untrained refiner is the identity.  It exists because averaging in the
    VAE's latent space is not averaging in pixel space: the regression-to-the-mean latents a decoder of noisy
    fMRI predicts decode to washed-out frames, and a correction learned through the decoder fixes part of that
    (measured in :mod:`neuroclips_core.perception_refine`).
    """

    def __init__(self, latent_channels: int, channels: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(latent_channels, channels, 3, padding=1), nn.SiLU(),
                                 nn.Conv2d(channels, channels, 3, padding=1), nn.SiLU(),
                                 nn.Conv2d(channels, latent_channels, 3, padding=1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return latents + self.net(latents)


class PerceptionReconstructor(nn.Module, Checkpointed):
    """fMRI (B, V) -> VAE latents (B, F, C_lat, s, s) of the clip's F frames (see the module docstring).

    ``save(path, **meta)`` and ``PerceptionReconstructor.load(path, n_voxels)`` (:class:`~.checkpoint.Checkpointed`)
    write and read its checkpoints.
    """

    checkpoint_kind = PERCEPTION_CHECKPOINT
    config_class = PerceptionConfig

    def __init__(self, config: PerceptionConfig):
        super().__init__()
        c = self.config = config
        self.inception = InceptionExtension(c.n_voxels, c.n_frames, c.inception_hidden, c.inception_blocks, c.dropout)
        self.ridge = nn.Linear(c.n_voxels, c.hidden)        # "ridge1" of the official code: a learned linear map
        self.backbone = nn.Sequential(*(ResidualMLP(c.hidden, c.dropout) for _ in range(c.n_blocks)))
        self.to_embedding = nn.Sequential(nn.Linear(c.hidden, c.embed_channels * c.embed_size ** 2),
                                          nn.Dropout(c.head_dropout))
        self.embed_norm = nn.GroupNorm(1, c.embed_channels)
        self.decoder = TemporalUpsampling(c)
        self.token_projector = TokenProjector(c.embed_channels, c.token_dim) if c.token_dim else None
        if c.linear_skip:
            # frozen: its weights are ridge's closed-form solution (penalty chosen on validation data), which
            # gradient steps on single repetitions would only pull towards overfitting
            self.skip = nn.Linear(c.n_voxels, c.n_frames * math.prod(c.latent_shape)).requires_grad_(False)
            self.decoder_gate = nn.Parameter(torch.zeros(()))   # ReZero: the network's path opens as it learns
        self.refiner = LatentRefiner(c.latent_channels, c.refiner_channels) if c.refiner_channels else None

    def embed(self, fmri: torch.Tensor) -> torch.Tensor:
        """fMRI (B, V) -> coarse spatial embeddings (B F, c, e, e), frames of a clip in consecutive rows."""
        c = self.config
        check_fmri(fmri, c.n_voxels, "PerceptionReconstructor")
        pseudo = self.inception(fmri)                                      # (B, F, V)
        x = self.backbone(self.ridge(pseudo.reshape(-1, c.n_voxels)))      # (B F, hidden)
        b = self.to_embedding(x).view(-1, c.embed_channels, c.embed_size, c.embed_size)
        return self.embed_norm(b)

    def forward(self, fmri: torch.Tensor, return_tokens: bool = False, skip_latents: torch.Tensor | None = None):
        """fMRI (B, V) -> latents (B, F, C_lat, s, s); with ``return_tokens`` also the projector's tokens
        (B, F, e e, token_dim) (needs ``token_dim`` > 0).

        ``skip_latents`` (B, F, C_lat, s, s) replaces the linear skip's output (needs ``linear_skip``): the
        refiner's training feeds out-of-fold ridge predictions there, so that it learns on inputs as wrong as
        the test set's, not on the training clips the skip was fitted to.
        """
        c = self.config
        b = self.embed(fmri)
        latents = self.decoder(b, c.n_frames).view(-1, c.n_frames, *c.latent_shape)
        if skip_latents is not None and not c.linear_skip:
            raise ValueError("PerceptionReconstructor: skip_latents needs PerceptionConfig(linear_skip=True)")
        if c.linear_skip:
            skip = skip_latents if skip_latents is not None else self.skip(fmri).view_as(latents)
            if tuple(skip.shape) != tuple(latents.shape):
                raise ValueError(f"PerceptionReconstructor: skip_latents must be {tuple(latents.shape)}, "
                                 f"found {tuple(skip.shape)}")
            latents = self.decoder_gate * latents + skip
        if self.refiner is not None:
            latents = self.refiner(latents.flatten(0, 1)).view_as(latents)
        if not return_tokens:
            return latents
        if self.token_projector is None:
            raise ValueError("PerceptionReconstructor: return_tokens needs a token projector; build the model "
                             "with PerceptionConfig(token_dim=D) (the official loss does)")
        tokens = self.token_projector(b)
        return latents, tokens.view(-1, c.n_frames, *tokens.shape[1:])

    def init_from_ridge(self, coef: torch.Tensor, fmri: torch.Tensor) -> None:
        """Start the Inception Extension's first layer in the subspace a closed-form ridge found predictive.

        ``coef`` (V, K): ridge weights fMRI -> the flattened target latents (K = F C s s); ``fmri`` (n, V): the
        training inputs (see :func:`~.blocks.init_linear_from_ridge`).  Not in the official code (random
        initialisation); the sim recipe uses it because a few CPU minutes of SGD from random weights do not reach
        what ridge's closed form gets from the same noisy data.
        """
        init_linear_from_ridge(self.inception.lin0[0], coef, fmri)

    @torch.no_grad()
    def init_skip_from_ridge(self, coef, intercept, x_mean) -> None:
        """Set the linear skip to a fitted ridge fMRI -> flattened latents: ``coef`` (V, K), ``intercept`` (K,),
        ``x_mean`` (V,) (the ridge's centring), K = F C s s; afterwards the untrained model predicts exactly
        what the ridge does (the decoder's gate starts at 0)."""
        if not self.config.linear_skip:
            raise ValueError("PerceptionReconstructor: init_skip_from_ridge needs PerceptionConfig(linear_skip=True)")
        coef, intercept, x_mean = (torch.as_tensor(a, dtype=torch.float64) for a in (coef, intercept, x_mean))
        want = (self.skip.in_features, self.skip.out_features)
        if tuple(coef.shape) != want:
            raise ValueError(f"init_skip_from_ridge: expected ridge weights (V, K) = {want}, found {tuple(coef.shape)}")
        self.skip.weight.copy_(coef.T)
        self.skip.bias.copy_(intercept - x_mean @ coef)

    @property
    def voxel_layer(self) -> nn.Linear:
        """The first layer that reads the voxels, Linear(V, hidden): the Inception Extension's ``lin0``, the
        paper's.  With ``linear_skip`` the frozen ridge path (``skip``) is a second linear map of the voxels, the
        ridge baseline's; chapter 07 reports its pattern beside this layer's."""
        return self.inception.lin0[0]

    def voxel_weights(self) -> torch.Tensor:
        """(V,) L2 norm of each voxel's input weights in :attr:`voxel_layer`: how much the model reads each
        voxel, for flat maps."""
        return voxel_weight_norms(self.voxel_layer)


def load_perception(path: str | os.PathLike, n_voxels: int | None = None, device: str | torch.device = "cpu",
                    subject: int | None = None) -> tuple[PerceptionReconstructor, dict]:
    """Load a checkpoint written by :meth:`PerceptionReconstructor.save` -> (model in eval mode, meta).

    Args:
        n_voxels: the voxel count of the subject the model will read; a checkpoint made for another count
            raises :class:`PerceptionCheckpointError` (a PR is trained per subject: its first layers are
            indexed by that subject's selected voxels).
        subject: only to name the subject in that error.
    """
    return PerceptionReconstructor.load(path, n_voxels=n_voxels, device=device, subject=subject)


@torch.no_grad()
def shape_table(model: PerceptionReconstructor, batch: int = 1) -> list[dict]:
    """One row per stage of a forward pass on ``batch`` random fMRI samples: ``{"stage", "output shape",
    "parameters"}`` (the chapter's architecture table).  Runs in eval mode on the model's device."""
    dec = model.decoder
    # (name, module whose output is recorded, modules whose parameters the row counts)
    stages = [("Inception Extension", model.inception, [model.inception]),
              ("ridge (V -> hidden)", model.ridge, [model.ridge]), ("MLP backbone", model.backbone, [model.backbone]),
              ("projection", model.to_embedding, [model.to_embedding]),
              ("coarse embedding (GroupNorm)", model.embed_norm, [model.embed_norm]),
              ("conv_in", dec.conv_in, [dec.conv_in]), ("middle layer", dec.mid, [dec.mid])]
    for i, layers in enumerate(dec.stages):
        stages.append((f"stage {i + 1} ({len(layers)} layer{'s' * (len(layers) > 1)})", layers[-1], [layers]))
        if i < len(dec.upsamplers):
            stages.append((f"upsample {i + 1}", dec.upsamplers[i], [dec.upsamplers[i]]))
    stages.append(("conv_out -> latents", dec.out, [dec.out]))
    if model.refiner is not None:
        stages.append(("latent refiner (per frame)", model.refiner, [model.refiner]))
    rows, hooks = [], []
    for name, module, counted in stages:
        n_params = sum(count_parameters(m) for m in counted)

        def hook(mod, args, out, name=name, n_params=n_params):
            rows.append({"stage": name, "output shape": tuple(out.shape), "parameters": n_params})
        hooks.append(module.register_forward_hook(hook))
    was_training = model.training
    try:
        model.eval()
        out = model(torch.randn(batch, model.config.n_voxels, device=next(model.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    rows.append({"stage": "latents (B, F, C, s, s)", "output shape": tuple(out.shape), "parameters": 0})
    return rows
