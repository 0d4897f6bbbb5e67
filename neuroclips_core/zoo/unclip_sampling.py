"""Keyframe generation with an unCLIP UNet: CLIP image tokens -> images, from pure noise or from a blurry start.

:func:`generate_keyframes` is the sampler of chapter 03 for both profiles: the real MindEye2 ``unclip6`` (SDXL
UNet, OpenCLIP bigG tokens (B, 256, 1664), 96 x 96 latents, a size/crop vector condition) and its stand-in
(:mod:`.train.unclip`: tokens (B, 64, 128), 16 x 16 latents, no vector).  It works with whatever scheduler the
:class:`~.loaders.UnClip` bundle carries (unclip6's Euler "trailing" schedule, or DDIM), on a private copy, so the
bundle's scheduler is never left in a half-run state.

Two starts:

- ``init_images=None``: pure Gaussian noise, as the official ``recon_keyframe.py`` does (strength is ignored).
- ``init_images`` given: img2img, NeuroClips' beta guidance as the paper describes it (the official code never
  implements it): the init image (e.g. the Perception Reconstructor's blurry first frame) is VAE-encoded, noised
  to the timestep that ``strength`` selects and denoised over only the remaining steps.  This is diffusers'
  img2img schedule (``StableDiffusionImg2ImgPipeline.get_timesteps``): of ``steps`` steps, the last
  ``int(steps * strength)`` run; ``strength=1`` starts at the first timestep (the init image survives only as
  what the largest noise level leaves of it), ``strength=0`` runs none and returns the init image's VAE round trip.

Classifier-free guidance: ``eps = eps_uncond + guidance_scale * (eps_cond - eps_uncond)`` with all-zero tokens as
the unconditional branch by default (the stand-in is trained with zeros as its dropped condition).  MindEye2
samples unclip6 with CFG 5.0 and a random-normal unconditional context, and maps its output through
``clamp(0.8 x + 0.2, 0, 1)``; pass ``uncond_tokens`` to reproduce the first and apply the second yourself: this
sampler returns the decoded images as they are.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .loaders import OpenClip, UnClip

#: MindEye2's classifier-free guidance scale for unclip6 (EulerEDM, 38 steps)
MINDEYE2_GUIDANCE = 5.0


@torch.no_grad()
def _encode_images(clip: OpenClip, images: torch.Tensor, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``encode_image`` of frames (N, 3, S, S) in [0, 1], resized and normalised as the model expects ->
    (pooled (N, embed_dim), tokens (N, T, C)), float32 on the CPU."""
    from .train.clip import clip_pixels      # here, not at the top: .train imports this module (its recipe)

    model, _, preprocess_cfg, _ = clip
    size = preprocess_cfg["size"]
    size = (size, size) if isinstance(size, int) else tuple(size)
    device, dtype = next(model.parameters()).device, next(model.parameters()).dtype
    pooled, tokens = [], []
    for a in range(0, len(images), batch):
        x = images[a:a + batch].float()
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
        p, t = model.encode_image(clip_pixels(x, preprocess_cfg).to(device, dtype))
        pooled.append(p.float().cpu())
        tokens.append(t.float().cpu())
    return torch.cat(pooled), torch.cat(tokens)


def image_tokens(clip: OpenClip, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """The CLIP image tokens unCLIP is conditioned on: frames (N, 3, S, S) in [0, 1] -> (N, T, C) float32 (CPU).

    Frames are resized (bicubic, antialiased) to the model's input size if they differ from it and normalised by
    the bundle's ``preprocess_cfg``; the tokens are ``encode_image``'s second output (patch tokens after
    ``ln_post``, unprojected): (N, 64, 128) for the stand-in, (N, 256, 1664) for ViT-bigG/14.
    """
    return _encode_images(clip, images, batch)[1]


def image_embeddings(clip: OpenClip, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """CLIP image embeddings (N, embed_dim) float32 (CPU), not normalised, of frames (N, 3, S, S) in [0, 1]:
    ``encode_image``'s pooled, projected output, after the same resizing and normalisation as
    :func:`image_tokens` (CLIP-pcc and retrieval compare them by cosine)."""
    return _encode_images(clip, images, batch)[0]


def img2img_timesteps(scheduler, steps: int, strength: float) -> torch.Tensor:
    """Set ``scheduler`` to ``steps`` steps and return the timesteps still to run.

    As diffusers' img2img pipelines do: the last ``int(steps * strength)`` of the ``steps`` timesteps run, and
    ``set_begin_index`` tells stateful schedulers (Euler) where the run starts, so ``add_noise`` and ``step``
    use that timestep's sigma.  ``strength=0`` leaves no timestep to run.
    """
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must lie in [0, 1] (1: start from noise, 0: keep the init image); got {strength}")
    scheduler.set_timesteps(steps)
    n_run = min(int(steps * strength), steps)
    start = (steps - n_run) * scheduler.order
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(start)
    return scheduler.timesteps[start:]


def _vector_condition(unet, vector: torch.Tensor | None, batch: int) -> torch.Tensor | None:
    """The UNet's ``class_labels`` (B, D), or None for a UNet without a vector condition."""
    embed_type = unet.config.class_embed_type
    if embed_type is None:
        if vector is not None:
            raise ValueError("this unCLIP UNet has no vector condition (class_embed_type is None); drop `vector`")
        return None
    if vector is None:
        raise ValueError(
            f"this unCLIP UNet takes a vector condition (class_embed_type {embed_type!r}, "
            f"{unet.config.projection_class_embeddings_input_dim} numbers), but no `vector` was given; for "
            f"unclip6 pass neuroclips_core.zoo.sgm_unclip.sgm_vector_condition() (size 768 x 768, crop 0, 0)")
    vector = vector.reshape(-1, vector.shape[-1])
    if vector.shape[0] not in (1, batch):
        raise ValueError(f"`vector` has {vector.shape[0]} rows; expected 1 or one per keyframe ({batch})")
    return vector.expand(batch, -1)


@torch.no_grad()
def generate_keyframes(unclip: UnClip, vae, tokens: torch.Tensor, *, init_images: torch.Tensor | None = None,
                       strength: float = 1.0, steps: int = 25, guidance_scale: float = MINDEYE2_GUIDANCE,
                       vector: torch.Tensor | None = None, uncond_tokens: torch.Tensor | None = None,
                       generator: torch.Generator | list[torch.Generator] | None = None,
                       batch: int = 64) -> torch.Tensor:
    """Keyframes from CLIP image tokens.

    Args:
        unclip: the :class:`~.loaders.UnClip` bundle (``unet``, ``scheduler``); the scheduler is copied, not run.
        vae: the ``AutoencoderKL`` whose scaled latents the UNet denoises (``config.scaling_factor``).
        tokens: (B, T, C) image tokens, C = ``unet.config.cross_attention_dim`` (true or predicted).
        init_images: None (start from pure noise) or (B, 3, S, S) in [0, 1] to start from (img2img).
        strength: with ``init_images``, the fraction of the ``steps`` that run (see the module docstring).
        steps: scheduler steps of a full (noise-start) run.
        guidance_scale: classifier-free guidance scale; 1 runs the conditional branch only.
        vector: (B or 1, D) vector condition, required exactly when ``unet.config.class_embed_type`` is set
            (unclip6: :func:`~.sgm_unclip.sgm_vector_condition`); used in both guidance branches.
        uncond_tokens: the unconditional branch's tokens, (B or 1, T, C); default all zeros.
        generator: CPU generator of the starting noise (and of any stochastic scheduler step): the same
            generator state gives the same images.  Or a list of B generators, one per keyframe: keyframe i's
            noise then comes from ``generator[i]`` alone, so neither ``batch`` nor its batch-mates change it.
        batch: keyframes per UNet call (with one generator, chunks are drawn from it in order).

    Returns:
        images (B, 3, S, S) float32 in [0, 1] on the CPU.  From noise, the latents are
        (B, 4, ``unet.config.sample_size``, same), so S = that x the VAE's downsampling factor (64 for the
        stand-in, 768 for unclip6); from ``init_images``, S is their size.
    """
    from .train.diffusion import decode_scaled     # here, not at the top: .train imports this module

    unet = unclip.unet
    if tokens.ndim != 3 or tokens.shape[-1] != unet.config.cross_attention_dim:
        raise ValueError(f"tokens must be (B, T, {unet.config.cross_attention_dim}) (the UNet's cross-attention "
                         f"width); got {tuple(tokens.shape)}")
    if init_images is not None and len(init_images) != len(tokens):
        raise ValueError(f"init_images has {len(init_images)} images for {len(tokens)} token sets; give one each")
    if isinstance(generator, (list, tuple)) and len(generator) != len(tokens):
        raise ValueError(f"generator: a list needs one generator per keyframe ({len(tokens)}); got {len(generator)}")
    vector = _vector_condition(unet, vector, len(tokens))
    if uncond_tokens is not None:
        uncond_tokens = uncond_tokens.expand_as(tokens) if len(uncond_tokens) == 1 else uncond_tokens
        if uncond_tokens.shape != tokens.shape:
            raise ValueError(f"uncond_tokens {tuple(uncond_tokens.shape)} must be (1 or B, T, C) like tokens "
                             f"{tuple(tokens.shape)}")
    scheduler = type(unclip.scheduler).from_config(unclip.scheduler.config)    # private, stateful copy
    out = []
    for a in range(0, len(tokens), batch):
        part = slice(a, a + batch)
        latents = _denoise(unet, scheduler, vae, tokens[part], None if uncond_tokens is None else uncond_tokens[part],
                           None if vector is None else vector[part], None if init_images is None else init_images[part],
                           strength, steps, guidance_scale,
                           generator[part] if isinstance(generator, (list, tuple)) else generator)
        out.append(decode_scaled(vae, latents).cpu())
    return torch.cat(out)


def _gaussian(shape: tuple, generator) -> torch.Tensor:
    """Standard normal (B, ...) on the CPU from one generator, or row i from ``generator[i]`` of a list."""
    if isinstance(generator, (list, tuple)):
        return torch.cat([torch.randn((1, *shape[1:]), generator=g) for g in generator])
    return torch.randn(shape, generator=generator)


def _denoise(unet, scheduler, vae, tokens, uncond_tokens, vector, init_images, strength, steps, guidance_scale,
             generator) -> torch.Tensor:
    """One chunk: the starting latents, then the scheduler loop with guidance.  Returns scaled latents (B, 4, h, w)."""
    from .train.diffusion import encode_scaled

    device, dtype = unet.device, unet.dtype
    b = len(tokens)
    if init_images is None:
        timesteps = img2img_timesteps(scheduler, steps, 1.0)
        size = unet.config.sample_size
        noise = _gaussian((b, unet.config.in_channels, size, size), generator)
        latents = noise.to(device) * scheduler.init_noise_sigma
    else:
        timesteps = img2img_timesteps(scheduler, steps, strength)
        latents = encode_scaled(vae, init_images).float().to(device)
        noise = _gaussian(tuple(latents.shape), generator).to(device)
        if len(timesteps):
            latents = scheduler.add_noise(latents, noise, timesteps[:1].repeat(b))
    guided = guidance_scale != 1.0
    context = tokens.to(device, dtype)
    if guided:
        null = torch.zeros_like(context) if uncond_tokens is None else uncond_tokens.to(device, dtype)
        context = torch.cat([context, null])
        vector = None if vector is None else torch.cat([vector, vector])
    if vector is not None:
        vector = vector.to(device, dtype)
    for t in timesteps:
        x = torch.cat([latents, latents]) if guided else latents
        x = scheduler.scale_model_input(x, t)
        eps = unet(x.to(dtype), t, encoder_hidden_states=context, class_labels=vector).sample.float()
        if guided:
            cond, uncond = eps.chunk(2)
            eps = uncond + guidance_scale * (cond - uncond)
        latents = scheduler.step(eps, t, latents, generator=generator).prev_sample
    return latents
