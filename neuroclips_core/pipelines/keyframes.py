"""Keyframes (beta guidance): predicted CLIP image tokens + the PR's blurry first frame -> unCLIP keyframes.

    config = KeyframeConfig.sim()                                     # or .paper(), or .sim(start="noise")
    starts = blurry_start_frames(blurry_videos, config)               # uint8 (N, 6, H, W, 3) -> (N, H, W, 3)
    keyframes = reconstruct_keyframes(unclip, vae, tokens, starts, config, config.clip_seeds(len(tokens)))
    write_keyframes(run_dir, keyframes, {"config": config.to_dict(), ...})   # keyframes_test.npy (N, H, W, 3) uint8

**Paper versus official code** (neuroclips-official-code.md §4, §11).  The paper's beta guidance feeds "V1's
embedding and the fMRI embedding" to SDXL unCLIP: the Perception Reconstructor's blurry first frame V1 shapes the
keyframe, the Semantics Reconstructor's tokens fill in what it is.  The official ``recon_keyframe.py`` never does
this: every keyframe starts from pure Gaussian noise and the blurry video is not read.  Here the paper's version
is the default and the official one a switch:

- ``start="blurry"``: img2img from V1 (:func:`~neuroclips_core.zoo.unclip_sampling.generate_keyframes`): V1 is
  VAE-encoded, noised to the level ``strength`` selects and denoised over the last ``int(steps * strength)`` of
  ``steps`` steps, conditioned on the tokens.  The paper gives no noise level and no public code has one
  (reference §12, question 7); 0.6 is the unCLIP stand-in's evaluated setting (``UnclipConfig.img2img_strength``),
  used for both profiles until chapter 03 measures the trade-off.
- ``start="noise"``: the official pure-noise start (``strength`` is ignored).

*Which blurry frame.*  The paper's V1 is the blurry video's first frame.  The keyframe the SR learns to predict is
stored frame :data:`~neuroclips_core.semantics_targets.KEYFRAME_INDEX` (2 of 6, as the official code: it lies in a
clip's majority shot far more often than frame 0), so by default unCLIP starts from the blurry frame of that same
index: layout and semantics then describe one moment.  ``blurry_frame=0`` is the paper's literal reading.

Official settings kept by :meth:`KeyframeConfig.paper`: unclip6 sampled with Euler (EDM) for 38 steps at
classifier-free guidance 5.0, a random-normal unconditional context (MindEye2's, not zeros), the vector condition
of size 768 x 768 and crop (0, 0), output mapped through ``clamp(0.8 x + 0.2, 0, 1)``, 768-px images resized to
the store's 256 px.  Not kept: the official offset noise (0.04) and its one seed (42) reset before every clip,
which gives every clip the same starting noise (§11); here clip i draws everything from its own seed.

**Sizes.**  unCLIP draws at its own size S = ``unet.config.sample_size`` x the VAE's downsampling (768 for
unclip6, 64 for the stand-in).  The blurry frame (the store's size, e.g. 256) is resized to S x S with bicubic
interpolation, and the keyframe back to the store's frame size with bicubic interpolation, antialiased when
shrinking (as PIL's and torchvision's antialiased resizes are; the official code also shrinks 768 -> 256, by a
method the reference does not record), then rounded to uint8.  Nothing is resized when the sizes agree (the
sim: 64 px both).

**Seeds.**  Every random number a keyframe uses (its starting noise, the random unconditional context) comes
from ``torch.Generator().manual_seed(seeds[i])`` alone, so a clip's keyframe depends on its seed, tokens and
blurry frame, never on its batch-mates or the batch size (up to float rounding of batched convolutions).
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..semantics_targets import KEYFRAME_INDEX
from ..train import write_json_atomic
from ..zoo.sgm_unclip import sgm_vector_condition
from ..zoo.unclip_sampling import MINDEYE2_GUIDANCE, generate_keyframes
from .blurry import _progress, _to_uint8, _to_unit, save_npy_atomic

KEYFRAMES_FILE = "keyframes_test.npy"          # DESIGN.md §7: semantics/keyframes_test.npy (N_test, H, W, 3) uint8
KEYFRAMES_PARAMS_FILE = "keyframes_params.json"
STARTS = ("blurry", "noise")
UNCONDS = ("zeros", "normal")
OUTPUT_MAPS = ("none", "mindeye2")
QUICK_STEPS = 6                                # quick mode (CI): the unCLIP chain's length


@dataclass(frozen=True)
class KeyframeConfig:
    """How keyframes are drawn.  :meth:`paper` has the official numbers, :meth:`sim` the stand-in's."""

    steps: int = 25                  # scheduler steps of a full (noise-start) run
    guidance_scale: float = 3.0      # classifier-free guidance (1: conditional branch only)
    start: str = "blurry"            # "blurry": img2img from the PR's frame (paper); "noise": official code
    strength: float = 0.6            # blurry start: fraction of the steps that run (1: from the top noise level)
    blurry_frame: int = KEYFRAME_INDEX  # the blurry frame of the keyframe's own index (the SR's target frame;
    #                                     the paper says "the first frame": see the module docstring)
    seed: int = 0                    # base seed; clip i's seed is :meth:`clip_seeds`' i-th
    uncond: str = "zeros"            # unconditional context: "zeros" (stand-in's dropped condition) or "normal"
    output_map: str = "none"         # "mindeye2": clamp(0.8 x + 0.2, 0, 1) of the decoded x in [-1, 1]
    batch: int = 16                  # keyframes per sampler call

    def __post_init__(self):
        if self.start not in STARTS:
            raise ValueError(f"KeyframeConfig.start: expected one of {STARTS}, found {self.start!r}")
        if self.uncond not in UNCONDS:
            raise ValueError(f"KeyframeConfig.uncond: expected one of {UNCONDS}, found {self.uncond!r}")
        if self.output_map not in OUTPUT_MAPS:
            raise ValueError(f"KeyframeConfig.output_map: expected one of {OUTPUT_MAPS}, found {self.output_map!r}")
        if not 0.0 <= self.strength <= 1.0:
            raise ValueError(f"KeyframeConfig.strength: expected a noise level in [0, 1] (1: start from the top "
                             f"noise level, 0: return the blurry frame's VAE round trip), found {self.strength}")
        if self.steps < 1 or self.batch < 1:
            raise ValueError(f"KeyframeConfig: steps and batch must be >= 1, found {self.steps} and {self.batch}")

    @classmethod
    def paper(cls, **overrides) -> "KeyframeConfig":
        """Official unclip6 sampling (38 Euler steps, CFG 5.0, random-normal unconditional context, MindEye2's
        output map, seed 42) with the paper's blurry start; ``start="noise"`` gives the official code's."""
        return cls(**{**dict(steps=38, guidance_scale=MINDEYE2_GUIDANCE, start="blurry", strength=0.6, seed=42,
                             uncond="normal", output_map="mindeye2", batch=8), **overrides})

    @classmethod
    def sim(cls, **overrides) -> "KeyframeConfig":
        """The unCLIP stand-in's evaluated settings (``UnclipConfig``: 25 steps, CFG 3.0, img2img strength 0.6,
        zeros as the null condition it was trained with) and its plain output."""
        return cls(**{**dict(steps=25, guidance_scale=3.0, start="blurry", strength=0.6, seed=0, uncond="zeros",
                             output_map="none", batch=32), **overrides})

    @classmethod
    def for_config(cls, cfg, **overrides) -> "KeyframeConfig":
        """The keyframe settings of a chapter run (a :class:`~neuroclips_core.config.RunConfig`): :meth:`sim` or
        :meth:`paper` by its profile, seeded by its seed, and in quick mode a 6-step chain (:data:`QUICK_STEPS`);
        ``overrides`` win.  Chapters 03 and 04 and :func:`~neuroclips_core.keyframes_run.reconstruct_semantics`
        take it, so they draw (and reuse) the same keyframes."""
        base = cls.sim if cfg.profile == "sim" else cls.paper
        return base(**{"seed": cfg.seed, **({"steps": QUICK_STEPS} if cfg.quick else {}), **overrides})

    def clip_seeds(self, n: int, first: int = 0) -> list[int]:
        """Seeds of clips ``first .. first + n - 1``: clip i's seed depends on ``(seed, i)`` only, so a subset run
        (``first`` > 0) gives the same keyframes as the full run for the same clips."""
        return [int(np.random.SeedSequence([self.seed, i]).generate_state(1)[0])
                for i in range(first, first + n)]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def blurry_start_frames(blurry_videos: np.ndarray, config: KeyframeConfig) -> np.ndarray:
    """The frame of each blurry video that seeds its keyframe: uint8 (N, F, H, W, 3) -> (N, H, W, 3)."""
    if blurry_videos.ndim != 5 or blurry_videos.shape[-1] != 3:
        raise ValueError(f"blurry videos: expected (N, F, H, W, 3) (perception/blurry_test.npy), "
                         f"found shape {tuple(blurry_videos.shape)}")
    if not 0 <= config.blurry_frame < blurry_videos.shape[1]:
        raise ValueError(f"KeyframeConfig.blurry_frame: expected an index below {blurry_videos.shape[1]} "
                         f"(frames per blurry video), found {config.blurry_frame}")
    return np.asarray(blurry_videos[:, config.blurry_frame])


def unclip_image_size(unclip, vae) -> int:
    """The side (px) of the images unCLIP draws: latent size x the VAE's downsampling (unclip6 768, stand-in 64)."""
    return unclip.unet.config.sample_size * 2 ** (len(vae.config.block_out_channels) - 1)


def _resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, 3, h, w) in [0, 1] -> (B, 3, *size): bicubic, antialiased when shrinking, clamped; as is when equal."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return F.interpolate(images, size=size, mode="bicubic", antialias=True, align_corners=False).clamp_(0, 1)


def _vector(unet, size: int, n: int) -> torch.Tensor | None:
    """The size/crop vector condition unclip6 takes (MindEye2: original size = the drawn size, crop (0, 0)),
    or None for a UNet without one (the stand-in)."""
    if unet.config.class_embed_type is None:
        return None
    dim = unet.config.projection_class_embeddings_input_dim // 4          # 4 numbers, one sinusoid each
    return sgm_vector_condition(original_size=(size, size), crop_coords_top_left=(0, 0), dim=dim, batch_size=n)


def _check_inputs(unclip, tokens: torch.Tensor, blurry_frames, config: KeyframeConfig, seeds) -> None:
    width = unclip.unet.config.cross_attention_dim
    if tokens.ndim != 3 or tokens.shape[-1] != width:
        raise ValueError(f"tokens: expected (N, T, {width}) (N clips' image tokens, {width} = the unCLIP's "
                         f"cross-attention width), found shape {tuple(tokens.shape)}")
    n = len(tokens)
    if config.start == "blurry" and blurry_frames is None:
        raise ValueError("blurry_frames: start='blurry' needs the PR's frames (N, H, W, 3) uint8 "
                         "(blurry_start_frames); pass them, or use KeyframeConfig(start='noise')")
    if blurry_frames is not None:
        if blurry_frames.ndim != 4 or blurry_frames.shape[-1] != 3 or blurry_frames.dtype != np.uint8:
            raise ValueError(f"blurry_frames: expected uint8 (N, H, W, 3), found {blurry_frames.dtype} "
                             f"{tuple(blurry_frames.shape)}")
        if len(blurry_frames) != n:
            raise ValueError(f"blurry_frames: expected one per token set ({n}), found {len(blurry_frames)}")
    if len(seeds) != n:
        raise ValueError(f"seeds: expected one per clip ({n}), found {len(seeds)}")


@torch.no_grad()
def reconstruct_keyframes(unclip, vae, tokens, blurry_frames: np.ndarray | None, config: KeyframeConfig,
                          seeds: Sequence[int], *, output_size: int | tuple[int, int] | None = None,
                          progress: bool = False) -> np.ndarray:
    """Keyframes from predicted (or true) CLIP image tokens, optionally started from the blurry frames.

    Args:
        unclip: :class:`~neuroclips_core.zoo.loaders.UnClip` (``load_role("unclip", ...)``).
        vae: the ``AutoencoderKL`` of its latent space (``load_role("vae", ...)``).
        tokens: (N, T, C) float (torch or numpy), C = ``unet.config.cross_attention_dim`` (stand-in (N, 64, 128),
            unclip6 (N, 256, 1664)): the diffusion prior's output.
        blurry_frames: uint8 (N, H, W, 3), the PR frame each keyframe starts from (:func:`blurry_start_frames`);
            required for ``start="blurry"``; with ``start="noise"`` only its size is used.
        config: :class:`KeyframeConfig`.
        seeds: one int per clip (:meth:`KeyframeConfig.clip_seeds`).
        output_size: side or (H, W) of the returned keyframes; default the blurry frames' size, else unCLIP's.
        progress: show a tqdm bar over batches.

    Returns:
        uint8 (N, H, W, 3) keyframes.

    Raises:
        ValueError: tokens not (N, T, cross-attention width); blurry frames missing, misshapen or not one per
        clip; not one seed per clip.
    """
    tokens = (torch.from_numpy(np.array(tokens)) if isinstance(tokens, np.ndarray) else tokens).float()
    seeds = list(seeds)
    _check_inputs(unclip, tokens, blurry_frames, config, seeds)
    size = unclip_image_size(unclip, vae)
    if output_size is None:
        output_size = tuple(blurry_frames.shape[1:3]) if blurry_frames is not None else (size, size)
    elif isinstance(output_size, int):
        output_size = (output_size, output_size)
    n = len(tokens)
    out = np.empty((n, *output_size, 3), np.uint8)
    for a in _progress(range(0, n, config.batch), progress, "keyframes", total=-(-n // config.batch)):
        part = slice(a, a + config.batch)
        generators = [torch.Generator().manual_seed(int(s)) for s in seeds[part]]
        cond = tokens[part]
        uncond = None
        if config.uncond == "normal":      # MindEye2's unconditional context: fresh N(0, 1) per clip
            uncond = torch.cat([torch.randn((1, *cond.shape[1:]), generator=g) for g in generators])
        init = None
        if config.start == "blurry":
            init = _resize(_to_unit(blurry_frames[part]), (size, size))
        images = generate_keyframes(unclip, vae, cond, init_images=init, strength=config.strength,
                                    steps=config.steps, guidance_scale=config.guidance_scale,
                                    vector=_vector(unclip.unet, size, len(cond)), uncond_tokens=uncond,
                                    generator=generators, batch=len(cond))
        if config.output_map == "mindeye2":
            # the sampler returned y = (x + 1) / 2 clamped; MindEye2's clamp(0.8 x + 0.2) is clamp(1.6 y - 0.6)
            images = (1.6 * images - 0.6).clamp_(0, 1)
        out[part] = _to_uint8(_resize(images, output_size))
    return out


def write_keyframes(run_dir: str | os.PathLike, keyframes: np.ndarray, meta: dict) -> Path:
    """Write ``run_dir/keyframes_test.npy`` (uint8 (N, H, W, 3)) and ``run_dir/keyframes_params.json`` (``meta``
    plus the array's shape), each through a temp file and a rename: a failed write leaves the previous files
    whole (``meta`` is checked to be JSON first, so a bad one replaces neither).  Returns the .npy path."""
    keyframes = np.asarray(keyframes)
    if keyframes.ndim != 4 or keyframes.shape[-1] != 3 or keyframes.dtype != np.uint8:
        raise ValueError(f"keyframes: expected uint8 (N, H, W, 3), found {keyframes.dtype} {tuple(keyframes.shape)}")
    params = {**meta, "shape": list(keyframes.shape)}
    json.dumps(params)          # a meta that cannot be written fails here, before either file is replaced
    run_dir = Path(run_dir)
    path = save_npy_atomic(run_dir / KEYFRAMES_FILE, keyframes)
    write_json_atomic(run_dir / KEYFRAMES_PARAMS_FILE, params)
    return path
