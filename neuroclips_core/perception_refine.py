"""Stage 2 of the sim recipe: train the PR's :class:`~.models.perception.LatentRefiner` through the frozen VAE decoder.

Why.  Stage 1 (Eq. 1, latent MAE) and the closed-form ridge both fit the VAE's *latents*; with noisy fMRI the
best guess of a latent regresses towards the mean latent, and a mean of latents does not decode to a mean of
images.  Measured on cc2017-sim (seed 11, subject 1, validation clips, low-pass 4 px)::

    ridge fMRI -> VAE latents, decoded                     SSIM S2 0.7739   pixcorr 0.521
    ridge fMRI -> pixels (no VAE at all)                   SSIM S2 0.7836   pixcorr 0.579
    the same pixels through a VAE round trip               SSIM S2 0.7778   pixcorr 0.539
    ridge latents + a refiner trained here (300 steps)     SSIM S2 0.7768   pixcorr 0.548

so a linear read-out loses to the same read-out done in pixel space, and the loss is in how latents are decoded.
The refiner (a per-frame residual conv net on the latents, the identity when untrained) learns the correction
by a pixel loss through the decoder: ``mean((blur(D(refine(z_f))) - blur(x_f))**2)`` on one random frame ``f`` of
each clip, ``blur`` a Gaussian of ``blur_sigma`` pixels (the frames are low-passed after decoding anyway, so
texture errors should not drive it), ``D`` the frozen VAE decoder.

The refiner's inputs are **out-of-fold**: the ridge skip was fitted on the training clips, where its predictions
are far better than on unseen clips (validation MSE 0.39 out of fold against 0.21 in sample, subject 1), so a
refiner trained on in-sample predictions would learn to correct the wrong errors.  The training clips are cut
into ``folds`` parts; each part's skip latents come from a ridge (same penalty) fitted on the others, applied to
each repetition's fMRI.  Validation and test clips go through the model's own skip, as in use.

Only the refiner learns here (the stage-1 model is frozen and in eval mode); the same :func:`~.train.fit` loop
checkpoints every epoch, resumes and keeps the epoch with the lowest validation pixel loss.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .models.ridge import RidgeRegression
from .train import FitResult, FitSettings, fit


def out_of_fold_skip(fmri: np.ndarray, targets: np.ndarray, lam: float, folds: int = 5,
                     seed: int = 0) -> np.ndarray:
    """Ridge predictions for every training clip and repetition from ridges that never saw that clip.

    Args:
        fmri: (n, R, V) training clips' fMRI, R repetitions (the fit reads their mean, as the ridge skip does).
        targets: (n, K) flattened target latents.
        lam: the penalty (the full ridge's validation-chosen one, so folds differ from it only in data).
        folds: parts; each is predicted by a ridge fitted on the other ``folds - 1``.
    Returns:
        float32 (n, R, K).
    """
    fmri, targets = np.asarray(fmri, np.float32), np.asarray(targets, np.float32)
    n, reps = fmri.shape[:2]
    if folds < 2 or folds > n:
        raise ValueError(f"out_of_fold_skip: folds must be between 2 and the {n} clips, found {folds}")
    mean = fmri.mean(axis=1)
    out = np.empty((n, reps, targets.shape[1]), np.float32)
    for part in np.array_split(np.random.default_rng(seed).permutation(n), folds):
        keep = np.ones(n, bool)
        keep[part] = False
        ridge = RidgeRegression(lambdas=(float(lam),)).fit(mean[keep], targets[keep])
        for r in range(reps):
            out[part, r] = ridge.predict(fmri[part, r])
    return out


class RefineClips(torch.utils.data.Dataset):
    """Clips for the refiner: ``{"fmri" (V,), "skip" (F, C, s, s), "frame" (3, H, W) in [0, 1], "frame_index"}``.

    Training (``skip`` given): each epoch draws, per clip, one repetition (its fMRI and its out-of-fold skip
    latents) and one frame, from a seed derived from ``(seed, epoch)`` so a resumed run replays its draws.
    Validation (``skip`` None): the repetitions' mean fMRI, the model's own skip, frame ``row % F``.
    """

    def __init__(self, fmri: np.ndarray, frames: np.ndarray, skip: np.ndarray | None = None,
                 latent_shape: tuple | None = None, seed: int = 0):
        self.fmri, self.frames, self.skip, self.seed = fmri, frames, skip, seed
        self.latent_shape = latent_shape
        self.n, self.n_frames = len(fmri), frames.shape[1]
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        rng = np.random.default_rng([self.seed, epoch])
        self.rep = rng.integers(0, self.fmri.shape[1], self.n)
        self.frame_index = rng.integers(0, self.n_frames, self.n)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        if self.skip is None:
            fmri, f, skip = np.asarray(self.fmri[i], np.float32).mean(0), i % self.n_frames, None
        else:
            r, f = self.rep[i], self.frame_index[i]
            fmri, skip = np.asarray(self.fmri[i, r], np.float32), self.skip[i, r].reshape(self.latent_shape)
        frame = torch.from_numpy(np.asarray(self.frames[i, f])).permute(2, 0, 1).float() / 255
        item = {"fmri": torch.from_numpy(fmri), "frame": frame, "frame_index": int(f)}
        if skip is not None:
            item["skip"] = torch.from_numpy(np.ascontiguousarray(skip))
        return item


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian low-pass of (N, C, H, W), ``sigma`` pixels, edges replicated; 0 returns the input."""
    if sigma <= 0:
        return images
    radius = max(1, int(3 * sigma))
    x = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    c = images.shape[1]
    out = F.pad(images, (radius,) * 4, mode="replicate")
    out = F.conv2d(out, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(out, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


class RefinerStage(nn.Module):
    """What :func:`~.train.fit` trains in stage 2: the PR's refiner, with the frozen PR and VAE held unregistered
    (so checkpoints hold the refiner alone and ``train()`` never turns the PR's dropout back on)."""

    def __init__(self, model, vae):
        super().__init__()
        if model.refiner is None:
            raise ValueError("RefinerStage: the model has no refiner; build it with PerceptionConfig(refiner_channels=c)")
        self.refiner = model.refiner
        object.__setattr__(self, "pr", model.eval().requires_grad_(False))
        object.__setattr__(self, "vae", vae.eval().requires_grad_(False))
        self.refiner.requires_grad_(True)

    def decoded_frame(self, batch: dict) -> torch.Tensor:
        """The picked frame of each clip, refined and decoded: (B, 3, H, W) in [0, 1] (unclamped, for gradients)."""
        latents = self.pr(batch["fmri"], skip_latents=batch.get("skip"))          # (B, F, C, s, s), refined
        picked = latents[torch.arange(len(latents), device=latents.device), batch["frame_index"]]
        return (self.vae.decode(picked / self.vae.config.scaling_factor).sample + 1) / 2


def pixel_loss_fn(blur_sigma: float):
    """``loss_fn`` for :func:`~.train.fit`: MSE of low-passed decoded frames against low-passed true frames."""
    def loss_fn(stage: RefinerStage, batch: dict, generator) -> tuple[torch.Tensor, dict]:
        pred = gaussian_blur(stage.decoded_frame(batch), blur_sigma)
        loss = ((pred - gaussian_blur(batch["frame"], blur_sigma)) ** 2).mean()
        return loss, {"pixel_mse": float(loss.detach())}
    return loss_fn


def train_refiner(model, vae, train_set: RefineClips, val_set: RefineClips, settings: FitSettings, work_dir,
                  identity: dict, blur_sigma: float, device="cpu", progress: bool = True,
                  stop_after_epochs: int | None = None) -> FitResult:
    """Stage 2: fit the refiner of ``model`` (in place) by :func:`pixel_loss_fn` and return fit's result.

    ``model`` and ``vae`` must already be on ``device``; ``work_dir`` gets fit's ``last.pt``/``best.pt``/history.
    ``stop_after_epochs`` splits the run as in :func:`~.train.fit`.
    """
    stage = RefinerStage(model, vae)
    result = fit(stage, pixel_loss_fn(blur_sigma), train_set, val_set, settings, work_dir, identity=identity,
                 device=device, progress=progress, stop_after_epochs=stop_after_epochs)
    model.refiner.requires_grad_(False)
    return result
