"""Alpha guidance: where the blurry video enters the video diffusion chain (paper Eq. 5, and the official code).

    alpha_noising(theta, scheduler, steps, mode)   -> AlphaNoising(signal, noise, t_start, t_blurry)
    alpha_start_latents(z_blurry, eps, noising)    -> z_T = signal * z_blurry + noise * eps

**The paper (§3.3, Eq. 5).**  The blurry video is taken as an intermediate noisy video at step theta * T of the
forward process, and pushed forward the rest of the way, from theta * T to T:

    z_T = sqrt(abar_T / abar_{theta T}) z_blurry + sqrt(1 - abar_T / abar_{theta T}) eps,   abar_k = prod_{t<=k} alpha_t

then the reverse process runs the *whole* chain from T back to 0.  theta = 0 takes the blurry video for a clean
one (abar_0 = 1: ordinary forward noising to T, the weakest guidance); theta = 1 takes it for the noise itself
(z_T = z_blurry, no noise added, the strongest).  The weight of the blurry latents grows with theta; the two
coefficients are the sine and cosine of one angle (their squares sum to 1), so z_T has unit variance when the
blurry latents do (what the VAE's ``scaling_factor`` aims at).

**Which discrete T.**  A 25-step DDIM chain does not start at t = 1000: with AnimateDiff's scheduler ("leading"
spacing, ``steps_offset`` 1) its first timestep is 961 (diffusers' 0-based index; ``alphas_cumprod[961]`` is the
paper's abar_962).  z_T is fed to the UNet at that timestep, so it must carry that noise level: we take T = the
chain's first timestep (1-based: ``t_start + 1``) and theta * T rounded.  At theta = 0.3 that gives a blurry
weight of 0.071; the 0.058 of neuroclips-official-code.md §6.3 is the same formula with T = 1000, which
mismatches the chain by 39 steps.  (With "trailing" spacing the chain starts at 999 and the two agree.)

**The official code** (``pipeline_neuroclips.py``, reference §6.3) computes a start step from ``low_strength`` =
theta but then noises the blurry latents with ``scheduler.add_noise`` at the chain's *first* timestep (961) and
denoises over all 25 steps: theta is dead code.  That is exactly Eq. 5 at theta = 0 (weight sqrt(abar_961) =
0.0498).  ``mode="official"`` reproduces it; ``mode="paper"`` (our default) honours theta.  Neither truncates
the chain into img2img: the reference warns that starting at ``timesteps[18]`` gives a much blurrier output.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch

ALPHA_MODES = ("paper", "official")


class AlphaNoising(NamedTuple):
    """How alpha guidance builds the chain's starting latents: ``z_T = signal * z_blurry + noise * eps``."""

    signal: float     # sqrt(abar_T / abar_{theta T}): the blurry latents' weight in z_T
    noise: float      # sqrt(1 - abar_T / abar_{theta T}): the noise's weight
    t_start: int      # the scheduler timestep (0-based) the full DDIM chain starts from; abar_T = alphas_cumprod[it]
    t_blurry: int     # theta * T, 1-based (0: the blurry latents taken as clean; t_start + 1: as pure noise)


def check_alpha_mode(mode: str) -> None:
    """Raise ValueError unless ``mode`` is one of :data:`ALPHA_MODES`."""
    if mode not in ALPHA_MODES:
        raise ValueError(f"alpha_mode: expected one of {ALPHA_MODES}, found {mode!r}")


def check_theta(theta: float) -> None:
    """Raise ValueError unless 0 <= theta <= 1 (Eq. 5's theta is a fraction of the forward process)."""
    if not (isinstance(theta, (int, float)) and 0.0 <= float(theta) <= 1.0):
        raise ValueError(f"theta: expected a number in [0, 1] (the blurry video's place in the forward process, "
                         f"paper Eq. 5), found {theta!r}")


def first_timestep(scheduler, num_inference_steps: int) -> int:
    """The first (noisiest) timestep of ``scheduler``'s chain of ``num_inference_steps`` (its state untouched)."""
    copy = type(scheduler).from_config(scheduler.config)
    copy.set_timesteps(num_inference_steps)
    return int(copy.timesteps[0])


def alpha_noising(theta: float, scheduler, num_inference_steps: int, mode: str = "paper") -> AlphaNoising:
    """The coefficients of Eq. 5 for one theta (pure: plot them over theta for a chapter).

    Args:
        theta: the blurry video's place in the forward process, in [0, 1] (paper: 0.3).  Ignored by
            ``mode="official"``, as in the official code.
        scheduler: a diffusers scheduler with ``alphas_cumprod`` (AnimateDiff's DDIM); not modified.
        num_inference_steps: the chain's length, which fixes its first timestep (25 -> 961).
        mode: ``"paper"`` (Eq. 5 with theta) or ``"official"`` (noised to the chain's first timestep, i.e. theta = 0).

    Returns:
        :class:`AlphaNoising`; at theta = 0 (and in official mode) ``signal = sqrt(alphas_cumprod[t_start])``, at
        theta = 1 ``signal = 1, noise = 0``.
    """
    check_alpha_mode(mode)
    check_theta(theta)
    t_start = first_timestep(scheduler, num_inference_steps)
    alphas_cumprod = scheduler.alphas_cumprod.double()
    abar_T = float(alphas_cumprod[t_start])
    # official: scheduler.add_noise(z_blurry, eps, timesteps[0]), whatever low_strength says
    t_blurry = 0 if mode == "official" else round(float(theta) * (t_start + 1))
    # abar_k with k 1-based: the empty product (1) at k = 0, alphas_cumprod[k - 1] otherwise
    abar_blurry = 1.0 if t_blurry == 0 else float(alphas_cumprod[t_blurry - 1])
    ratio = min(abar_T / abar_blurry, 1.0)
    return AlphaNoising(math.sqrt(ratio), math.sqrt(1.0 - ratio), t_start, t_blurry)


def alpha_start_latents(z_blurry: torch.Tensor, eps: torch.Tensor, noising: AlphaNoising) -> torch.Tensor:
    """Eq. 5: the chain's starting latents from the blurry latents and the noise (same shape, e.g. (B, 4, F, h, w))."""
    return noising.signal * z_blurry + noising.noise * eps
