"""Blurry videos: frames <-> VAE latents, the PR's latents -> frames, and 3 FPS -> 8 FPS interpolation.

    encode_frames(vae, frames)          uint8 (N, F, H, W, 3)   -> scaled latents float32 (N, F, C, h, w)
    predict_latents(model, fmri)        float (N, V)            -> scaled latents float32 (N, F, C, h, w)
    decode_latents(vae, latents)        scaled latents          -> uint8 (N, F, H, W, 3)
    interpolate_frames(videos, 16)      (N, 6, H, W, 3)         -> (N, 16, H, W, 3) at 8 FPS
    save_npy_atomic(path, array)        write through a temp file and a rename (never half-written)

"Scaled" latents are the VAE's latents times its ``scaling_factor`` (:func:`~neuroclips_core.zoo.train.diffusion.
encode_scaled`, posterior mode), the space the PR predicts in.

**Interpolation (6 frames at 3 FPS -> 16 at 8 FPS).**  The official code (``neuroclips.py: cccat``,
neuroclips-official-code.md §2.6) keeps the 6 frames as outputs 0, 3, 6, 9, 12, 15 and fills two linear
in-betweens (weights 2/3 and 1/3; the code rounds them to .67/.33) in pixel space: 1 + 5 x 3 = 16 frames.  We
do the same, for two reasons: every blurry frame survives unchanged (the first one seeds the keyframe, and
evaluation at 3 FPS can take the anchors back exactly), and the guidance the video model receives matches the
official pipeline.  The price, accepted: the 6 frames sample the clip at (5 + 10 j) / 30 s, so spreading
them over the 16 output slots stretches 1.67 s of motion over 1.875 s (an 11 % slow-down, invisible in blur).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..zoo.train.diffusion import decode_scaled, encode_scaled


def _progress(iterable, progress: bool, desc: str, total: int | None = None):
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, disable=not progress, leave=False)


def _to_unit(frames: np.ndarray) -> torch.Tensor:
    """uint8 (n, H, W, 3) -> float (n, 3, H, W) in [0, 1]."""
    # np.array copies: a memmap's pages are read-only, and torch wants writable memory
    return torch.from_numpy(np.array(frames)).permute(0, 3, 1, 2).float().div_(255.0)


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    """float (n, 3, H, W) in [0, 1] -> uint8 (n, H, W, 3), rounded."""
    return images.clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


@torch.inference_mode()
def encode_frames(vae, frames: np.ndarray, batch_size: int = 64, progress: bool = False) -> np.ndarray:
    """Clips' frames, uint8 (N, F, H, W, 3) (a memmap is fine) -> scaled latents float32 (N, F, C, H/k, W/k)."""
    n, f = frames.shape[:2]
    out = None
    clips = max(1, batch_size // f)
    for a in _progress(range(0, n, clips), progress, "VAE encode", total=-(-n // clips)):
        z = encode_scaled(vae, _to_unit(np.asarray(frames[a:a + clips]).reshape(-1, *frames.shape[2:]))).float()
        z = z.view(-1, f, *z.shape[1:]).cpu().numpy()
        if out is None:
            out = np.empty((n, f, *z.shape[2:]), np.float32)
        out[a:a + clips] = z
    return out


@torch.inference_mode()
def predict_latents(model, fmri, batch_size: int = 64, device: str | torch.device | None = None) -> np.ndarray:
    """A PR (eval mode) on fMRI (N, V) -> scaled latents float32 (N, F, C, h, w).

    Clips are independent (temporal attention stays within a clip), so the batch size does not change them.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.eval()
    fmri = torch.from_numpy(np.array(fmri, dtype=np.float32))      # a copy: memmaps are read-only
    return torch.cat([model(fmri[a:a + batch_size].to(device)).float().cpu()
                      for a in range(0, len(fmri), batch_size)]).numpy()


@torch.inference_mode()
def decode_latents(vae, latents: np.ndarray, batch_size: int = 64, progress: bool = False) -> np.ndarray:
    """Scaled latents (N, F, C, h, w) -> blurry frames uint8 (N, F, H, W, 3)."""
    latents = torch.as_tensor(np.asarray(latents, dtype=np.float32))
    n, f = latents.shape[:2]
    flat = latents.reshape(n * f, *latents.shape[2:])
    chunks = [_to_uint8(decode_scaled(vae, flat[a:a + batch_size]))
              for a in _progress(range(0, n * f, batch_size), progress, "VAE decode", total=-(-n * f // batch_size))]
    frames = np.concatenate(chunks)
    return frames.reshape(n, f, *frames.shape[1:])


#: Gaussian widths (pixels) :func:`select_smoothing` tries; 0 = the decoded frames as they are.  The top, 4 px, is
#: width / 16 of the sim's 64-px frames: the blur that defines cc2017-sim's "blurry video" (it removes the class,
#: chapter 00).  Wider ones keep raising SSIM S2 for every method, but erase the motion the blurry video is for:
#: seed 12, subject 1, at 8 px the PR's motion correlation with the stimulus fell from 0.41 (no low-pass) to -0.06.
SMOOTHING_SIGMAS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0)


def smooth_videos(videos: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian low-pass of each frame of uint8 videos (N, F, H, W, 3), ``sigma`` pixels in H and W (not across
    frames or channels); ``sigma`` 0 returns the input."""
    from scipy.ndimage import gaussian_filter

    if sigma < 0:
        raise ValueError(f"smooth_videos: sigma must be >= 0 pixels, found {sigma}")
    if sigma == 0:
        return videos
    out = gaussian_filter(np.asarray(videos, np.float32), sigma=(0, 0, sigma, sigma, 0), mode="nearest")
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def select_smoothing(pred: np.ndarray, gt: np.ndarray, sigmas=SMOOTHING_SIGMAS, metric: str = "ssim_s2"
                     ) -> tuple[float, dict[float, float]]:
    """The low-pass width that maximises ``metric`` of ``pred`` against ``gt`` (uint8 (N, F, H, W, 3); validation
    clips, never the test set) -> (best sigma, {sigma: mean score}).

    Why: a prediction from noisy fMRI is right about layout and colour, not about fine texture, and every SSIM
    recipe penalises wrong texture more than missing texture (the mean training frame, texture-free, scores
    high).  The Perception Reconstructor is meant to output a blurry video, so the width of its blur is chosen
    like any other hyperparameter, on validation data; every method compared gets its own.
    """
    from ..metrics import frame_scores

    scores = {float(s): float(frame_scores(smooth_videos(pred, s), gt, (metric,))[metric].mean()) for s in sigmas}
    return max(scores, key=scores.get), scores


def interpolate_frames(videos: np.ndarray, n_out: int = 16) -> np.ndarray:
    """(N, F, H, W, 3) -> (N, n_out, H, W, 3), linear in pixel space, input frame j at output j (n_out-1)/(F-1).

    With F = 6 and n_out = 16 that is the official 3 -> 8 FPS up-conversion (module docstring): outputs 0, 3,
    ..., 15 are the input frames, the others 2/3 : 1/3 blends of their neighbours.  uint8 in, uint8 out (rounded).
    """
    videos = np.asarray(videos)
    if videos.ndim != 5:
        raise ValueError(f"interpolate_frames: expected videos (N, F, H, W, C), found shape {videos.shape}")
    f = videos.shape[1]
    if f < 2 or n_out < 2:
        raise ValueError(f"interpolate_frames: need at least 2 input and 2 output frames, found {f} -> {n_out}")
    pos = np.arange(n_out) * (f - 1) / (n_out - 1)                 # output k sits at input position pos[k]
    lo = np.minimum(np.floor(pos + 1e-9).astype(int), f - 2)
    w = (pos - lo).reshape(1, n_out, 1, 1, 1)
    x = videos.astype(np.float32)
    out = (1 - w) * x[:, lo] + w * x[:, lo + 1]
    if videos.dtype == np.uint8:
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out.astype(videos.dtype)


def save_npy_atomic(path: str | os.PathLike, array: np.ndarray) -> Path:
    """``np.save`` to a temp file beside ``path``, then rename: readers never see a half-written array."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.npy")
    try:
        np.save(tmp, np.asarray(array), allow_pickle=False)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
