"""What the diffusion stand-ins (unCLIP, text-to-video, SparseCtrl) share: scaled VAE latents and noised targets.

All three denoise in the VAE stand-in's latent space (64 x 64 x 3 frames <-> 16 x 16 x 4 latents, scaled by the
VAE's ``scaling_factor`` to unit variance, as SD's latent diffusion does) with SD's noise schedule: 1000 steps,
"scaled_linear" betas 0.00085 .. 0.012 (the schedule of unclip6, SD 1.5 and AnimateDiff).  Training draws a
timestep uniformly per item and regresses the scheduler's ``prediction_type`` target (epsilon, as the real
models do).

:func:`noised` and :func:`drop_condition` also serve the Semantics Reconstructor's diffusion prior
(:mod:`neuroclips_core.models.prior`: its own cosine schedule, x0 targets).
"""
from __future__ import annotations

import torch

#: SD's training noise schedule, shared by unclip6, SD 1.5 / RealisticVision and AnimateDiff
SD_SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")


def training_scheduler(prediction_type: str = "epsilon"):
    """A ``DDPMScheduler`` with SD's schedule: the forward process the stand-ins are trained under."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(**SD_SCHEDULE, prediction_type=prediction_type, clip_sample=False)


def encode_scaled(vae, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Images (B, 3, S, S) in [0, 1] -> latents (B, 4, S/4, S/4) x ``vae.config.scaling_factor``.

    Samples the posterior when a ``generator`` is given (training, as SD does), else takes its mean.
    """
    posterior = vae.encode(images.to(vae.device, vae.dtype) * 2 - 1).latent_dist
    z = posterior.sample(generator=generator) if generator is not None else posterior.mode()
    return z * vae.config.scaling_factor


def decode_scaled(vae, latents: torch.Tensor) -> torch.Tensor:
    """Scaled latents (B, 4, h, w) -> images (B, 3, 4h, 4w) in [0, 1] (clamped)."""
    images = vae.decode(latents.to(vae.device, vae.dtype) / vae.config.scaling_factor).sample.float()
    return ((images + 1) / 2).clamp(0, 1)


def noised(scheduler, x0: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One forward-process draw for a training step.

    Args:
        scheduler: the training scheduler (its ``alphas_cumprod`` and ``prediction_type``).
        x0: clean latents (B, ...) (for video (B, C, F, h, w): one timestep per clip, fresh noise per frame).
        generator: the step's generator (CPU), so a resumed run draws the same noise.

    Returns:
        ``(x_t, t, target)``: noisy latents like ``x0``, timesteps (B,) int64, and the regression target
        (the noise for ``epsilon``, the velocity for ``v_prediction``, ``x0`` itself for ``sample``).
    """
    t = torch.randint(0, scheduler.config.num_train_timesteps, (x0.shape[0],), generator=generator)
    noise = torch.randn(x0.shape, generator=generator).to(x0.device, x0.dtype)
    t = t.to(x0.device)
    x_t = scheduler.add_noise(x0, noise, t)
    if scheduler.config.prediction_type == "epsilon":
        return x_t, t, noise
    if scheduler.config.prediction_type == "v_prediction":
        return x_t, t, scheduler.get_velocity(x0, noise, t)
    if scheduler.config.prediction_type == "sample":
        return x_t, t, x0
    raise ValueError(f"unsupported prediction_type {scheduler.config.prediction_type!r} "
                     "(epsilon, v_prediction or sample)")


def drop_condition(cond: torch.Tensor, null: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Replace each item's condition (B, ...) by ``null`` (broadcastable to one item) with probability ``p``:
    the condition dropout classifier-free guidance needs at sampling time."""
    if p <= 0:
        return cond
    keep = (torch.rand(cond.shape[0], generator=generator) >= p).to(cond.device)
    keep = keep.view(-1, *([1] * (cond.ndim - 1)))
    return torch.where(keep, cond, null.to(cond.dtype).expand_as(cond))
