"""Stand-ins for the two classifiers of the semantic N-way metrics: a ViT over frames, a VideoMAE over clips.

Both output the 64 sim class ids (``id2label`` = :data:`~neuroclips_core.data.sim_stimuli.CLASSES`) and expect
the preprocessing their processor (saved beside them) applies: resize to 64 px, rescale to [0, 1], mean 0.5,
std 0.5.  Training feeds ``(x - 0.5) / 0.5`` of 8-bit corpus frames, which is exactly what the processor makes
of the same frames given as uint8 (tests check it).

**Frame classifier.**  ViT, patch 8 (64 tokens a frame; patch 4 quadruples the cost and did not learn faster in
a probe).  The sim's classes live in ~5-px texture and outline, with no coarse cue (colour, size, position,
motion all vary freely within a class, by design), and a ViT trained from scratch with the plain CLS loss sat at
chance for 400-650 steps of 32-64 frames in every probe here (lr 3e-4 or 1e-3, patch 4 or 8), where the book's
small CNN probe is well above chance after 100.  Three stepping stones, none of which changes the saved model
(a plain ``ViTForImageClassification``), together got it moving after ~300 steps (CLS loss 4.16 -> 3.36, train
top-1 0.09 after 1100 steps of 64, still falling fast; each alone helped less):

- token labelling (:func:`token_labelling_loss`): the classifier also applied to every patch token on the
  object, so each object token learns the texture directly instead of through the CLS token's diluted average;
- a luminance DCT filter bank as the initial patch embedding (:func:`init_patch_embedding_dct`);
- a zoom curriculum: frames shown up to 2x closer (bigger objects, coarser texture), annealed to 1x
  (:func:`~neuroclips_core.zoo.corpus.frame_batch` ``zoom``).

**Video classifier.**  VideoMAE with the ViT's width, depth and heads, started from the trained frame classifier
inflated to tubelets (:func:`inflate_vit_to_videomae`) and fine-tuned on clips: from scratch, a video
transformer would spend its budget re-learning what the frame classifier already knows.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ...data.sim_stimuli import CLASSES, N_CLASSES, to_uint8
from .. import corpus
from ..loaders import Classifier, load_role
from ..tiny import _seeded
from .loop import Recipe, TrainConfig, TrainError, export_copy

IMAGE_SIZE = corpus.FRAME_SIZE
MEAN = STD = 0.5


@dataclass(frozen=True)
class ClassifierConfig(TrainConfig):
    """ViT/VideoMAE sizes (shared, so the video model can start from the frame model) and augmentation."""

    patch_size: int = 8
    hidden_size: int = 128
    layers: int = 6
    heads: int = 4
    intermediate_size: int = 512
    noise_aug: float = 0.03     # per-image Gaussian pixel noise, sigma ~ U(0, noise_aug): robustness to
    #                             reconstructions, far too weak to make blurred frames classifiable


@dataclass(frozen=True)
class FrameClassifierConfig(ClassifierConfig):
    """Plus the stepping stones that get a ViT off its plateau (see the module docstring)."""

    token_weight: float = 1.0   # weight of the token-labelling loss (0: CLS loss only)
    dct_init: bool = True       # start the patch embedding as a luminance DCT filter bank
    zoom: float = 2.0           # frames start up to this much closer (corpus zoom), annealed to 1 ...
    zoom_steps: int = 1500      # ... over this many steps (absolute, so lengthening a run keeps it; 0: never)


@dataclass(frozen=True)
class VideoClassifierConfig(ClassifierConfig):
    num_frames: int = corpus.CLIP_FRAMES
    tubelet_size: int = 2
    init_from_frame_classifier: bool = True


def _label_maps() -> dict:
    return dict(num_labels=N_CLASSES, id2label={i: name for i, name in enumerate(CLASSES)},
                label2id={name: i for i, name in enumerate(CLASSES)})


def normalise(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] pixels -> the classifiers' input (what their processors compute)."""
    return (x - MEAN) / STD


def _augment(x: torch.Tensor, sigma_max: float, generator: torch.Generator) -> torch.Tensor:
    """Add Gaussian noise of a random per-item strength to (B, ..., H, W) images in [0, 1]."""
    if sigma_max <= 0:
        return x
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    sigma = torch.rand(shape, generator=generator) * sigma_max
    return (x + sigma * torch.randn(x.shape, generator=generator)).clamp(0, 1)


def _uint8_frames(images: torch.Tensor) -> np.ndarray:
    """(..., 3, S, S) float in [0, 1] -> (..., S, S, 3) uint8, the form a user hands to the processor."""
    return to_uint8(np.moveaxis(images.numpy(), -3, -1))


@torch.no_grad()
def predict_frames(classifier: Classifier, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Class ids (N,) of frames (N, 3, S, S) in [0, 1], through the classifier's own processor."""
    model, processor = classifier
    device, dtype = model.device, model.dtype
    out = []
    for a in range(0, len(images), batch):
        pixels = processor(images=list(_uint8_frames(images[a:a + batch])), return_tensors="pt").pixel_values
        out.append(model(pixel_values=pixels.to(device, dtype)).logits.argmax(-1).cpu())
    return torch.cat(out)


@torch.no_grad()
def predict_clips(classifier: Classifier, clips: torch.Tensor, batch: int = 32) -> torch.Tensor:
    """Class ids (N,) of clips (N, T, 3, S, S) in [0, 1], through the classifier's own processor."""
    model, processor = classifier
    device, dtype = model.device, model.dtype
    out = []
    for a in range(0, len(clips), batch):
        videos = [list(v) for v in _uint8_frames(clips[a:a + batch])]
        pixels = processor(videos, return_tensors="pt").pixel_values
        out.append(model(pixel_values=pixels.to(device, dtype)).logits.argmax(-1).cpu())
    return torch.cat(out)


def _classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict]:
    logits = logits.float()
    return F.cross_entropy(logits, labels), {"acc": float((logits.argmax(-1) == labels).float().mean())}


def dct_basis(n: int) -> torch.Tensor:
    """The n x n 2-D DCT-II basis, orthonormal: (n * n, n, n), lowest frequencies first (by u + v)."""
    k = torch.arange(n, dtype=torch.float64)
    c = torch.cos(torch.pi * (2 * k[None] + 1) * k[:, None] / (2 * n)) * torch.sqrt(torch.tensor(2.0 / n))
    c[0] /= torch.sqrt(torch.tensor(2.0))
    order = sorted(((u, v) for u in range(n) for v in range(n)), key=lambda uv: (uv[0] + uv[1], uv))
    return torch.stack([torch.outer(c[u], c[v]) for u, v in order]).float()


@torch.no_grad()
def init_patch_embedding_dct(projection: torch.nn.Conv2d) -> None:
    """Make the first p * p output channels of a (D, 3, p, p) patch embedding the luminance DCT of the patch.

    Why: the class lives in texture of period ~5 px, which an 8-px patch's randomly initialised projection
    mixes with colour and phase; a frequency basis exposes it linearly from the first step (the MLPs then only
    have to learn phase-invariant energies).  The other channels keep their random init; all stay trainable.
    """
    d, channels, p, _ = projection.weight.shape
    basis = dct_basis(p)[: min(d, p * p)]                       # (k, p, p)
    scale = projection.weight.std() * p                          # keep the init's output scale
    projection.weight[: len(basis)] = scale * basis[:, None].expand(-1, channels, -1, -1) / channels
    projection.bias[: len(basis)] = 0


def token_labelling_loss(token_logits: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor,
                         patch_size: int) -> torch.Tensor:
    """Cross-entropy of every patch token that lies mostly on the object against the image's class.

    Token labelling (Jiang et al. 2021, "All Tokens Matter"), with the model's own classifier applied to the
    patch tokens, so the saved model stays a plain ``ViTForImageClassification``.  The sim's classes live in
    fine texture and outline with no coarse cue to start from (by design); from the CLS token alone, a ViT
    trained from scratch stays at chance for hundreds of steps, because its uniform attention at initialisation
    averages the few object tokens with the background.  Supervising each object token directly makes every
    one of them learn the texture at once.

    Args:
        token_logits: (B, P, classes), tokens in raster order (P = (S / patch)^2).
        labels: (B,) class ids.
        masks: (B, S, S) bool, True on the object.
        patch_size: pixels per patch side.
    """
    cover = F.avg_pool2d(masks[:, None].float(), patch_size).flatten(1)      # (B, P): object fraction per patch
    on = cover >= 0.5
    if not on.any():
        return token_logits.sum() * 0.0
    per_token = F.cross_entropy(token_logits.transpose(1, 2), labels[:, None].expand_as(on), reduction="none")
    return per_token[on].mean()


class FrameClassifierRecipe(Recipe):
    """``ViTForImageClassification`` + ``ViTImageProcessor``: frames (B, 3, 64, 64) -> logits (B, 64)."""

    role = "frame_classifier"
    config_class = FrameClassifierConfig

    @staticmethod
    def full_config() -> FrameClassifierConfig:
        return FrameClassifierConfig(steps=8000, batch=64, lr=1e-3, warmup=200, eval_size=1024)

    @staticmethod
    def quick_config() -> FrameClassifierConfig:
        return FrameClassifierConfig(steps=4, batch=16, lr=1e-3, warmup=2, eval_size=32, zoom_steps=2)

    def build(self):
        from transformers import ViTConfig, ViTForImageClassification

        c = self.config
        cfg = ViTConfig(image_size=IMAGE_SIZE, patch_size=c.patch_size, num_channels=3, hidden_size=c.hidden_size,
                        num_hidden_layers=c.layers, num_attention_heads=c.heads,
                        intermediate_size=c.intermediate_size, **_label_maps())
        with _seeded(self.seed):
            model = ViTForImageClassification(cfg)
        if c.dct_init:
            init_patch_embedding_dct(model.vit.embeddings.patch_embeddings.projection)
        return model

    def zoom_range(self, step: int) -> tuple[float, float] | None:
        """The corpus zoom of step ``step``: U(1, z), z falling linearly from ``zoom`` to 1 over ``zoom_steps``."""
        c = self.config
        if c.zoom <= 1 or step >= c.zoom_steps:
            return None
        return 1.0, 1.0 + (c.zoom - 1) * (1 - step / c.zoom_steps)

    def loss(self, model, step, generator):
        c = self.config
        b = corpus.frame_batch(self.seed, step, c.batch, "train", IMAGE_SIZE, with_masks=c.token_weight > 0,
                               zoom=self.zoom_range(step))
        x = normalise(_augment(b.images, c.noise_aug, generator)).to(model.device)
        labels = b.labels.to(model.device)
        if c.token_weight <= 0:
            return _classification_loss(model(pixel_values=x).logits, labels)
        # what ViTForImageClassification.forward does (classifier on the CLS token), keeping every token
        logits = model.classifier(model.vit(pixel_values=x).last_hidden_state).float()     # (B, 1 + P, classes)
        loss, parts = _classification_loss(logits[:, 0], labels)
        token_loss = token_labelling_loss(logits[:, 1:], labels, b.masks.to(model.device), c.patch_size)
        parts["token_loss"] = float(token_loss.detach())
        return loss + c.token_weight * token_loss, parts

    def export(self, model):
        from transformers import ViTImageProcessor

        processor = ViTImageProcessor(do_resize=True, size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
                                      image_mean=[MEAN] * 3, image_std=[STD] * 3)
        return Classifier(export_copy(model, self.config.save_dtype), processor)

    def evaluate(self, loaded) -> dict:
        from ...data.sim_checks import blur

        h = corpus.heldout_frames(self.seed, self.config.eval_size, IMAGE_SIZE)
        top1 = float((predict_frames(loaded, h.images) == h.labels).float().mean())
        # the sim's premise, seen by this classifier: a blur of sigma = width/16 leaves only chance
        blurred = torch.from_numpy(blur(h.images.permute(0, 2, 3, 1).numpy())).permute(0, 3, 1, 2)
        top1_blur = float((predict_frames(loaded, blurred) == h.labels).float().mean())
        return {"top1": top1, "top1_blurred": top1_blur, "chance": 1 / N_CLASSES, "n_eval": len(h.labels)}


def inflate_vit_to_videomae(vit, videomae) -> None:
    """Copy a ``ViTForImageClassification``'s weights into a ``VideoMAEForVideoClassification`` of the same
    width, depth, heads and patch size (in place).

    The 2-D patch embedding (D, 3, p, p) becomes a tubelet embedding (D, 3, t, p, p) repeated over time and
    divided by t, so a static clip gives the ViT's patch tokens.  The key bias is dropped (VideoMAE has none;
    it adds the same number to every logit of a query, which softmax ignores).  ViT's final layernorm becomes
    VideoMAE's ``fc_norm`` and its classifier is kept.  ViT's CLS token and learned position embeddings have no
    counterpart (VideoMAE mean-pools and uses fixed sinusoidal positions): fine-tuning adapts to that.
    """
    vc, mc = vit.config, videomae.config
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "patch_size",
                "num_labels"):
        if getattr(vc, key) != getattr(mc, key):
            raise TrainError(f"video_classifier: cannot start from the frame classifier: {key} is "
                             f"{getattr(vc, key)} in the ViT and {getattr(mc, key)} in the VideoMAE config; "
                             f"give both the same sizes or set init_from_frame_classifier=False.")
    src = vit.state_dict()
    t = mc.tubelet_size
    proj = "embeddings.patch_embeddings.projection"
    state = {f"videomae.{proj}.weight": src[f"vit.{proj}.weight"][:, :, None].repeat(1, 1, t, 1, 1) / t,
             f"videomae.{proj}.bias": src[f"vit.{proj}.bias"],
             "fc_norm.weight": src["vit.layernorm.weight"], "fc_norm.bias": src["vit.layernorm.bias"],
             "classifier.weight": src["classifier.weight"], "classifier.bias": src["classifier.bias"]}
    names = {"attention.q_proj.weight": "attention.attention.query.weight",
             "attention.q_proj.bias": "attention.attention.query.bias",
             "attention.k_proj.weight": "attention.attention.key.weight",
             "attention.v_proj.weight": "attention.attention.value.weight",
             "attention.v_proj.bias": "attention.attention.value.bias",
             "attention.o_proj.weight": "attention.output.dense.weight",
             "attention.o_proj.bias": "attention.output.dense.bias",
             "mlp.fc1.weight": "intermediate.dense.weight", "mlp.fc1.bias": "intermediate.dense.bias",
             "mlp.fc2.weight": "output.dense.weight", "mlp.fc2.bias": "output.dense.bias",
             **{f"{n}.{p}": f"{n}.{p}" for n in ("layernorm_before", "layernorm_after") for p in ("weight", "bias")}}
    for i in range(vc.num_hidden_layers):
        for a, b in names.items():
            state[f"videomae.encoder.layer.{i}.{b}"] = src[f"vit.layers.{i}.{a}"]
    videomae.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)


def _sha256(path: Path) -> str:     # still used by video.py until it moves to Recipe.uses()
    return hashlib.sha256(path.read_bytes()).hexdigest()


class VideoClassifierRecipe(Recipe):
    """``VideoMAEForVideoClassification`` + ``VideoMAEImageProcessor``: clips (B, 16, 3, 64, 64) -> logits (B, 64)."""

    role = "video_classifier"
    config_class = VideoClassifierConfig

    @staticmethod
    def full_config() -> VideoClassifierConfig:
        return VideoClassifierConfig(steps=1200, batch=8, lr=3e-4, warmup=100, eval_size=256)

    @staticmethod
    def quick_config() -> VideoClassifierConfig:
        return VideoClassifierConfig(steps=4, batch=2, lr=3e-4, warmup=2, eval_size=8)

    def uses(self) -> tuple[str, ...]:
        return ("frame_classifier",) if self.config.init_from_frame_classifier else ()

    def build(self):
        from transformers import VideoMAEConfig, VideoMAEForVideoClassification

        c = self.config
        cfg = VideoMAEConfig(image_size=IMAGE_SIZE, patch_size=c.patch_size, num_channels=3,
                             num_frames=c.num_frames, tubelet_size=c.tubelet_size, hidden_size=c.hidden_size,
                             num_hidden_layers=c.layers, num_attention_heads=c.heads,
                             intermediate_size=c.intermediate_size, use_mean_pooling=True, **_label_maps())
        with _seeded(self.seed):
            model = VideoMAEForVideoClassification(cfg)
        if c.init_from_frame_classifier:
            self.require("frame_classifier")
            inflate_vit_to_videomae(load_role("frame_classifier", self.role_folder("frame_classifier"),
                                              dtype=torch.float32).model, model)
        return model

    def loss(self, model, step, generator):
        b = corpus.clip_batch(self.seed, step, self.config.batch, "train", IMAGE_SIZE, self.config.num_frames)
        x = normalise(_augment(b.clips, self.config.noise_aug, generator)).to(model.device)
        return _classification_loss(model(pixel_values=x).logits, b.labels.to(model.device))

    def export(self, model):
        from transformers import VideoMAEImageProcessor

        processor = VideoMAEImageProcessor(do_resize=True, size={"shortest_edge": IMAGE_SIZE}, do_center_crop=True,
                                           crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
                                           image_mean=[MEAN] * 3, image_std=[STD] * 3)
        return Classifier(export_copy(model, self.config.save_dtype), processor)

    def evaluate(self, loaded) -> dict:
        h = corpus.heldout_clips(self.seed, self.config.eval_size, IMAGE_SIZE)
        top1 = float((predict_clips(loaded, h.clips) == h.labels).float().mean())
        return {"top1": top1, "chance": 1 / N_CLASSES, "n_eval": len(h.labels)}
