"""The VAE stand-in: a diffusers ``AutoencoderKL`` with a shallow latent space (64 x 64 x 3 <-> 16 x 16 x 4).

SD's VAE downsamples by 8; here 3 levels downsample by 4, because a 64-px frame at factor 8 would keep 8 x 8
latents, too few for the class's ~5-px texture, and a shallow latent space is where the CPU budget counts most
(issue 3: "pixel or shallow latent spaces where that serves").  Loss, as SD's VAE without its perceptual and
adversarial terms: L1 + L2 on pixels in [-1, 1], weighted up on the object (where the class lives and where a
plain pixel loss spends least, since the background is a smooth gradient), plus a small KL
(``kl_weight`` in SD's convention: per-image KL sum against per-pixel reconstruction sum).

``config.scaling_factor`` is set at export to 1 / std of the latents (posterior means) of corpus frames, so
``latents * scaling_factor`` has unit variance, as the diffusion models and the Perception Reconstructor assume.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ...data.sim_stimuli import to_uint8
from .. import corpus
from ..tiny import _seeded
from .loop import Recipe, TrainConfig, export_copy

IMAGE_SIZE = corpus.FRAME_SIZE


@dataclass(frozen=True)
class VaeConfig(TrainConfig):
    block_out_channels: tuple = (32, 64, 64)   # 3 levels: downsampling factor 4
    layers_per_block: int = 1
    latent_channels: int = 4
    norm_num_groups: int = 32
    l2_weight: float = 1.0
    object_weight: float = 3.0      # pixel-loss weight on the object relative to the background
    kl_weight: float = 1e-6         # SD's
    scale_batches: int = 4          # corpus batches (of ``batch`` frames) that estimate scaling_factor


def vae_encode(vae, images: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None):
    """Images (B, 3, S, S) in [0, 1] -> unscaled latents (B, 4, S/4, S/4) (posterior mean unless ``sample``)."""
    posterior = vae.encode(images * 2 - 1).latent_dist
    return posterior.sample(generator=generator) if sample else posterior.mode()


def vae_decode(vae, latents: torch.Tensor) -> torch.Tensor:
    """Unscaled latents -> images (B, 3, S, S) in [0, 1] (clamped)."""
    return ((vae.decode(latents).sample.float() + 1) / 2).clamp(0, 1)


@torch.no_grad()
def reconstruct(vae, images: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """Encode (posterior mean) and decode frames (N, 3, S, S) in [0, 1], quantised to 8 bits like stored frames."""
    device, dtype = vae.device, vae.dtype
    out = []
    for a in range(0, len(images), batch):
        rec = vae_decode(vae, vae_encode(vae, images[a:a + batch].to(device, dtype))).cpu()
        out.append(torch.from_numpy(to_uint8(rec.numpy())).float() / 255)
    return torch.cat(out)


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB) of images (N, ...) in [0, 1]."""
    mse = ((a - b) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return 10 * torch.log10(1 / mse)


def ssim(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Per-image SSIM of images (N, 3, S, S) in [0, 1] (scikit-image, colour channels averaged)."""
    from skimage.metrics import structural_similarity

    a, b = a.permute(0, 2, 3, 1).numpy(), b.permute(0, 2, 3, 1).numpy()
    return np.array([structural_similarity(x, y, channel_axis=-1, data_range=1.0) for x, y in zip(a, b)])


class VaeRecipe(Recipe):
    """``AutoencoderKL``: frames (B, 3, 64, 64) in [-1, 1] <-> latents (B, 4, 16, 16)."""

    role = "vae"
    config_class = VaeConfig

    @staticmethod
    def full_config() -> VaeConfig:
        return VaeConfig(steps=3000, batch=16, lr=5e-4, warmup=100, weight_decay=0.0, eval_size=512)

    @staticmethod
    def quick_config() -> VaeConfig:
        return VaeConfig(steps=4, batch=4, lr=5e-4, warmup=2, weight_decay=0.0, eval_size=16, scale_batches=1)

    def build(self):
        from diffusers import AutoencoderKL

        c = self.config
        n = len(c.block_out_channels)
        with _seeded(self.seed):
            return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * n,
                                 up_block_types=("UpDecoderBlock2D",) * n,
                                 block_out_channels=tuple(c.block_out_channels), layers_per_block=c.layers_per_block,
                                 latent_channels=c.latent_channels, norm_num_groups=c.norm_num_groups, sample_size=IMAGE_SIZE)

    def loss(self, model, step, generator):
        c = self.config
        b = corpus.frame_batch(self.seed, step, c.batch, "train", IMAGE_SIZE, with_masks=True)
        x = b.images.to(model.device) * 2 - 1
        posterior = model.encode(x).latent_dist
        rec = model.decode(posterior.sample(generator=generator)).sample.float()
        weight = (1 + (c.object_weight - 1) * b.masks.to(model.device, torch.float32))[:, None]
        err = rec - x
        l1 = (weight * err.abs()).mean() / weight.mean()
        l2 = (weight * err ** 2).mean() / weight.mean()
        kl = posterior.kl().float().mean() / x[0].numel()
        loss = l1 + c.l2_weight * l2 + c.kl_weight * kl
        psnr_db = 10 * torch.log10(4 / (err.detach() ** 2).mean())     # pixels span 2 in [-1, 1]
        parts = {"l1": l1, "l2": l2, "kl": kl, "psnr": psnr_db}
        return loss, {k: float(v.detach()) for k, v in parts.items()}

    @torch.no_grad()
    def latent_std(self, model) -> float:
        """Std of the posterior means of ``scale_batches`` training batches."""
        zs = [vae_encode(model, corpus.frame_batch(self.seed, k, self.config.batch, "train", IMAGE_SIZE)
                         .images.to(model.device)) for k in range(self.config.scale_batches)]
        return float(torch.cat(zs).float().std())

    def export(self, model):
        vae = export_copy(model, "float32")
        vae.register_to_config(scaling_factor=round(1 / self.latent_std(vae), 5))
        return export_copy(vae, self.config.save_dtype)

    def evaluate(self, loaded) -> dict:
        from ..loaders import load_role
        from .classifiers import predict_frames

        h = corpus.heldout_frames(self.seed, self.config.eval_size, IMAGE_SIZE)
        rec = reconstruct(loaded, h.images)
        metrics = {"psnr": float(psnr(rec, h.images).mean()), "ssim": float(ssim(rec, h.images).mean()),
                   "scaling_factor": float(loaded.config.scaling_factor), "n_eval": len(h.labels)}
        # the class must survive the round trip: judged by the frame classifier trained beside it, if any
        classifier_folder = self.out / "frame_classifier"
        if (classifier_folder / "config.json").is_file():
            classifier = load_role("frame_classifier", classifier_folder, dtype=torch.float32)
            metrics["classifier_top1_reconstructed"] = float((predict_frames(classifier, rec) == h.labels)
                                                             .float().mean())
            metrics["classifier_top1_original"] = float((predict_frames(classifier, h.images) == h.labels)
                                                        .float().mean())
        else:
            metrics["classifier_top1_reconstructed"] = None     # no frame classifier in the output folder
        return metrics
