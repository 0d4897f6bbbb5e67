"""The Semantics Reconstructor (SR; paper §3.2, App. B.2): one fMRI sample -> CLIP image tokens of its keyframe.

Shapes (B clips, V voxels, T x C image tokens)::

    fmri (B, V)
     ridge            Linear(V, hidden)                        "fMRI low-dimensional processing" (Eq. 3)
     backbone         n_blocks x residual [LN Lin GELU Drop Lin] -> (B, hidden)
     backbone_linear  Linear(hidden, T C) -> (B, T, C)          "backbone": the fMRI embedding e_Y
     clip_proj        token-wise 3 x [LN GELU Lin(C, C)]  -> (B, T, C)   "clip_voxels"
    -> SemanticsOutput(backbone, clip_voxels)

``clip_voxels`` is what the contrastive losses compare with the keyframe's tokens and what the official
diffusion prior is conditioned on (neuroclips-official-code.md §3.5); ``backbone`` is MindEye2's conditioning.

The tokens are the ones the keyframe generator (unCLIP) is conditioned on, as
:func:`neuroclips_core.zoo.unclip_sampling.image_tokens` extracts them from frames: the CLIP image tower's patch
tokens after ``ln_post``, unprojected, CLS excluded.  :func:`clip_token_shape` reads (T, C) off a loaded CLIP.

=============  ==============================  ==========================================
size           ``paper()``                     ``sim()`` (cc2017-sim)
=============  ==============================  ==========================================
voxels V       13447 (subject 1)               the subject's (~6000)
hidden         4096, 4 blocks, dropout 0.15    1024, 2 blocks, dropout 0.15
tokens T x C   256 x 1664 (OpenCLIP ViT-bigG   64 x 128 (the CLIP stand-in, 64 px, patch 8:
               /14 at 224 px, patch 14)        an 8 x 8 grid of its width-128 tokens)
Reftm text     1280 (bigG's text embedding)    64 (the stand-in's joint embedding)
parameters     1.943 B                         ~18.8 M at V = 6000 (8.4 M of them backbone_linear)
=============  ==============================  ==========================================

Where this follows the official code (``src/Semantic.py`` = MindEye2's ``BrainNetwork``) and where the paper:

- the "ridge regression" is a learned ``Linear(V, hidden)`` with bias, trained by backprop, as in the official
  code; the paper's Eq. 3 (a closed-form ridge) is available as an *initialisation*,
  :meth:`SemanticsReconstructor.init_from_ridge`, off unless called;
- MindEye2's degenerate "channel-mixing" blocks over a length-1 sequence axis (a LayerNorm over one element, a
  learned constant) are dropped, as in the Perception Reconstructor; the blurry (low-level) head of
  ``BrainNetwork`` is off in the official SR and absent here;
- the MindEye2 NSD-pretrained backbone the official code starts from is not loaded here (it is trained for
  NSD subject 1 and loaded for every cc2017 subject); the training driver may load it into these same layer
  names (``backbone_linear``, ``clip_proj``) where the sizes match.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import NamedTuple

import torch
from torch import nn

from .blocks import ResidualMLP, check_fmri, init_linear_from_ridge, voxel_weight_norms
from .checkpoint import CheckpointError, CheckpointKind, Checkpointed
from .ridge import RidgeRegression

CHECKPOINT_FORMAT = "neuroclips_core.semantics"
CHECKPOINT_VERSION = 1


class SemanticsCheckpointError(CheckpointError):
    """An SR checkpoint is missing, of another kind, or made for another subject's voxel count."""


SEMANTICS_CHECKPOINT = CheckpointKind(
    format=CHECKPOINT_FORMAT, version=CHECKPOINT_VERSION, model_name="Semantics Reconstructor", short_name="SR",
    train_hint="the Semantics Reconstructor training of chapter 03 (book/03_semantics)",
    error=SemanticsCheckpointError)


# ================================================================================================ config
@dataclass(frozen=True)
class SemanticsConfig:
    """Sizes of a :class:`SemanticsReconstructor`.  Build with :meth:`paper`, :meth:`sim` or :meth:`for_clip`.

    Attributes:
        n_voxels: V, the subject's selected voxels (13447 / 14828 / 9114 for cc2017 subjects 1-3).
        hidden, n_blocks, dropout: width, residual blocks and dropout of the backbone (4096, 4, 0.15).
        token_shape: (T, C), the CLIP image tokens predicted (256 x 1664 for ViT-bigG/14); also
            ``n_tokens`` and ``token_dim``.
        clip_projector: with the token-wise projector (the official SR); without it ``clip_voxels`` is
            ``backbone``.
        text_dim: width of the text embeddings the Reftm projector maps to (1280 for bigG).
    """

    n_voxels: int
    hidden: int = 4096
    n_blocks: int = 4
    dropout: float = 0.15
    token_shape: tuple = (256, 1664)
    clip_projector: bool = True
    text_dim: int = 1280

    def __post_init__(self):
        shape = tuple(int(n) for n in self.token_shape)
        if len(shape) != 2:
            raise ValueError(f"SemanticsConfig: expected token_shape (T, C), found {self.token_shape!r}")
        object.__setattr__(self, "token_shape", shape)
        positive = ("n_voxels", "hidden", "n_tokens", "token_dim", "text_dim")
        bad = [f"{k}={getattr(self, k)}" for k in positive if int(getattr(self, k)) < 1]
        if self.n_blocks < 0:
            bad.append(f"n_blocks={self.n_blocks}")
        if bad:
            raise ValueError(f"SemanticsConfig: expected positive sizes, found {', '.join(bad)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"SemanticsConfig: expected dropout in [0, 1), found {self.dropout}")

    @property
    def n_tokens(self) -> int:
        """T, image tokens per sample."""
        return self.token_shape[0]

    @property
    def token_dim(self) -> int:
        """C, the width of a token."""
        return self.token_shape[1]

    @classmethod
    def paper(cls, n_voxels: int = 13447, **overrides) -> "SemanticsConfig":
        """The official sizes: hidden 4096 x 4 blocks, 256 x 1664 OpenCLIP ViT-bigG/14 tokens (1.943 B parameters
        at V = 13447, 1.745 B of them ``backbone_linear``), Reftm to bigG's 1280-d text embedding."""
        return cls(n_voxels=n_voxels, **overrides)

    @classmethod
    def sim(cls, n_voxels: int, n_tokens: int | None = None, token_dim: int | None = None,
            text_dim: int | None = None, **overrides) -> "SemanticsConfig":
        """Sizes for the CPU and cc2017-sim: hidden 1024 x 2 blocks; tokens and text width by default those of the
        CLIP stand-in's architecture (:class:`~neuroclips_core.zoo.train.clip.ClipConfig`: 64 px frames, patch 8
        -> 64 tokens of width 128; joint embedding 64).  :meth:`for_clip` reads them off a loaded CLIP instead."""
        from ..zoo.train.clip import IMAGE_SIZE, ClipConfig   # here: the zoo is heavy and only this needs it

        standin = ((IMAGE_SIZE // ClipConfig.patch_size) ** 2, ClipConfig.vision_width, ClipConfig.embed_dim)
        t, c, text = (default if given is None else given
                      for default, given in zip(standin, (n_tokens, token_dim, text_dim)))
        return cls(n_voxels=n_voxels, **{"hidden": 1024, "n_blocks": 2, "token_shape": (t, c), "text_dim": text,
                                         **overrides})

    @classmethod
    def for_clip(cls, n_voxels: int, clip, size: str = "sim", **overrides) -> "SemanticsConfig":
        """Sizes (``"sim"`` or ``"paper"``) with the token shape and text width of a loaded CLIP bundle
        (:class:`~neuroclips_core.zoo.loaders.OpenClip`): the targets unCLIP is conditioned on, exactly."""
        if size not in ("sim", "paper"):
            raise ValueError(f"SemanticsConfig.for_clip: size must be 'sim' or 'paper', found {size!r}")
        sizes = {"token_shape": clip_token_shape(clip), "text_dim": int(clip.model_cfg["embed_dim"])}
        return (cls.sim if size == "sim" else cls.paper)(n_voxels, **{**sizes, **overrides})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SemanticsConfig":
        return cls(**d)

    def with_voxels(self, n_voxels: int) -> "SemanticsConfig":
        return replace(self, n_voxels=int(n_voxels))


def clip_token_shape(clip) -> tuple[int, int]:
    """(T, C) of the image tokens :func:`~neuroclips_core.zoo.unclip_sampling.image_tokens` gets from ``clip``
    (an :class:`~neuroclips_core.zoo.loaders.OpenClip`), measured on one blank frame so that it is exactly what
    the keyframe generator is conditioned on: (64, 128) for the stand-in, (256, 1664) for ViT-bigG/14."""
    from ..zoo.unclip_sampling import image_tokens

    size = clip.preprocess_cfg["size"]
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    _, n_tokens, token_dim = image_tokens(clip, torch.zeros(1, 3, h, w)).shape
    return int(n_tokens), int(token_dim)


# ================================================================================================ blocks
class ClipProjector(nn.Module):
    """Token-wise 3 x [LN GELU Linear(C, C)]: (B, T, C) -> (B, T, C).

    MindEye2's ``BrainNetwork.projector(C, C, h=C)`` (``clip_proj``), which the official SR keeps.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.net = nn.Sequential(*(layer for _ in range(3)
                                   for layer in (nn.LayerNorm(dim), nn.GELU(), nn.Linear(dim, dim))))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.net(tokens)


class ReftmProjector(nn.Module):
    """Reftm's projector (paper App. B.2, the official ``CLIPProj``): tokens (B, T, C) -> (B, text_dim).

    Mean over the T tokens, then one (C, text_dim) matrix ``proj``, no bias.  The official projector is
    pre-trained on MSCOCO and frozen during SR training (loaded from ``coco_tokens_avg_proj.pth``); here it
    starts random (N(0, 1/C), open_clip's projection scale) until trained or loaded.
    """

    def __init__(self, token_dim: int, text_dim: int):
        super().__init__()
        self.proj = nn.Parameter(torch.randn(token_dim, text_dim) * token_dim ** -0.5)

    @classmethod
    def from_config(cls, config: SemanticsConfig) -> "ReftmProjector":
        return cls(config.token_dim, config.text_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens.mean(1) @ self.proj


class SemanticsOutput(NamedTuple):
    """The SR's two outputs, (B, T, C) each."""

    backbone: torch.Tensor         # after backbone_linear: the fMRI embedding e_Y (MindEye2 conditions on it)
    clip_voxels: torch.Tensor      # after the clip projector: compared with the image tokens, conditions the prior


# ================================================================================================= model
class SemanticsReconstructor(nn.Module, Checkpointed):
    """fMRI (B, V) -> :class:`SemanticsOutput` of (B, T, C) CLIP image tokens (see the module docstring).

    ``save(path, **meta)`` writes a checkpoint atomically; ``SemanticsReconstructor.load(path, n_voxels, device,
    subject)`` (also :func:`load_semantics`) reads it back in eval mode, and raises
    :class:`SemanticsCheckpointError`, naming both counts, for a subject with another voxel count.
    """

    checkpoint_kind = SEMANTICS_CHECKPOINT
    config_class = SemanticsConfig

    def __init__(self, config: SemanticsConfig):
        super().__init__()
        c = self.config = config
        self.ridge = nn.Linear(c.n_voxels, c.hidden)      # the official "ridge": a learned linear map
        self.backbone = nn.Sequential(*(ResidualMLP(c.hidden, c.dropout) for _ in range(c.n_blocks)))
        self.backbone_linear = nn.Linear(c.hidden, c.n_tokens * c.token_dim)
        self.clip_proj = ClipProjector(c.token_dim) if c.clip_projector else None

    def forward(self, fmri: torch.Tensor) -> SemanticsOutput:
        """fMRI (B, V) -> (backbone (B, T, C), clip_voxels (B, T, C))."""
        c = self.config
        check_fmri(fmri, c.n_voxels, "SemanticsReconstructor")
        backbone = self.backbone_linear(self.backbone(self.ridge(fmri))).view(-1, c.n_tokens, c.token_dim)
        clip_voxels = backbone if self.clip_proj is None else self.clip_proj(backbone)
        return SemanticsOutput(backbone, clip_voxels)

    def init_from_ridge(self, fmri, targets, fmri_val=None, targets_val=None, **ridge_options) -> RidgeRegression:
        """Start the ridge layer from a closed-form ridge regression fMRI -> targets (the paper's Eq. 3).

        Args:
            fmri: (n, V) training fMRI; targets: (n, ...) what the ridge should predict, flattened per sample;
                the image tokens (n, T, C), or at paper size (where a V x T C ridge would take 46 GB) a reduction
                of them such as their mean over tokens (n, C).
            fmri_val, targets_val: a validation split to choose the penalty on (needed unless ``ridge_options``
                fixes one, ``lambdas=(value,)``).
            ridge_options: keyword arguments of :class:`~.ridge.RidgeRegression`.

        Returns the fitted ridge.  The layer's first ``min(hidden, V, K)`` units become the ridge solution's
        leading directions in voxel space, standardised on ``fmri`` (:func:`~.blocks.init_linear_from_ridge`).
        Eq. 3 writes the ridge as the model's first layer; the official code instead learns that layer from
        random weights, which this leaves the default.
        """
        def flat(t):
            return None if t is None else torch.as_tensor(t).reshape(len(t), -1)

        fmri = torch.as_tensor(fmri)
        ridge = RidgeRegression(**ridge_options).fit(fmri, flat(targets), flat(fmri_val), flat(targets_val))
        init_linear_from_ridge(self.ridge, ridge.coef_, fmri)
        return ridge

    @property
    def voxel_layer(self) -> nn.Linear:
        """The first layer that reads the voxels, Linear(V, hidden): the official "ridge"."""
        return self.ridge

    def voxel_weights(self) -> torch.Tensor:
        """(V,) L2 norm of each voxel's weights in the ridge layer: how much the SR reads each voxel (flat maps)."""
        return voxel_weight_norms(self.voxel_layer)


#: ``load_semantics(path, n_voxels=None, device="cpu", subject=None) -> (model in eval mode, meta)``
load_semantics = SemanticsReconstructor.load
