"""Stand-ins for the two classifiers of the semantic N-way metrics: a ViT over frames, a VideoMAE over clips.

Both output the 64 sim class ids (``id2label`` = :data:`~neuroclips_core.data.sim_stimuli.CLASSES`) and expect
the preprocessing their processor (saved beside them) applies: resize to 64 px, rescale to [0, 1], mean 0.5,
std 0.5.  Training feeds ``(x - 0.5) / 0.5`` of 8-bit corpus frames, which is exactly what the processor makes
of the same frames given as uint8 (tests check it).

**Frame classifier.**  ViT, patch 8 (64 tokens a frame).  The sim's classes live in ~5-px texture and outline,
with no coarse cue (colour, size, position, motion all vary freely within a class, by design).  A ViT trained from
scratch learns that slowly: with the plain CLS loss it sat at chance for 400-650 steps in every probe here; with
token labelling, a DCT patch embedding and a zoom curriculum (an earlier version of this recipe) it reached 0.16
train top-1 after 3350 steps of 64 frames (~1.5 h of CPU), while the book's small CNN probe passes 0.85 in 2000
steps.  Probes on bags of patches (a per-patch MLP, pooled) show why: non-overlapping 8-px patches must learn a
phase-invariant texture detector one phase at a time (0.10 top-1 after 800 steps; 0.20 with 4-px patches at 2.5
times the cost).  So the recipe gives the ViT a CNN's head start for the length of training only, and the saved
model stays a plain ``ViTForImageClassification``:

1. the first layer starts by computing phase-invariant texture energies (:func:`init_texture_energy`:
   quadrature Gabor filters in the patch embedding, their rectified sums in the first MLP);
2. the first ``teacher_steps`` train a small grayscale CNN (:class:`TextureTeacher`) alone;
3. then the ViT learns from the labels, from the frozen teacher's softened logits (KL at temperature
   ``kd_temperature``, the KD of Hinton et al.) and from its early texture features: the teacher's second conv
   block, average-pooled onto the ViT's 8 x 8 patch grid, regressed from the ViT's hidden state ``hint_layer``
   through a linear map (a FitNets hint).

Measured in probes (one core, 512 held-out frames): the teacher alone, 0.92 top-1 after 1500 steps; the ViT after
300 distillation steps, 0.10 with the texture-energy start against 0.02 with the DCT start (which needed 1400).
Measured on a full run (seed 0, 1 thread, 2026-11-29, stopped at step 2884 for CPU): the teacher, 0.959 held-out
top-1 after its 1500 steps; the ViT after 1384 distillation steps, 0.328 held-out (agreeing with the teacher on
0.34), its training top-1 rising 0.22 -> 0.30 over steps 2125-2875 and slowing.  At that rate the remaining steps
will not bring the ViT to the 0.9 target: the distillation needs a faster student (next to try: a larger ViT-phase
LR, KD at a higher temperature with the hint on every layer, or 4-px patches on a narrower ViT).  ViT steps cost
1.2 s on one thread and 0.75 s on two (batch 64); the teacher's 0.4 s.

**Video classifier.**  VideoMAE with the ViT's width, depth and heads, started from the trained frame classifier
inflated to tubelets (:func:`inflate_vit_to_videomae`) and fine-tuned on clips: from scratch, a video
transformer would spend its budget re-learning what the frame classifier already knows.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ...data.sim_stimuli import CLASSES, N_CLASSES, to_uint8
from .. import corpus
from ..loaders import Classifier, load_role
from ..tiny import _seeded
from .loop import Recipe, TrainConfig, TrainError, export_copy, lr_factor

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
    """Plus the distillation from a small CNN teacher that gets the ViT off its plateau (module docstring)."""

    teacher_steps: int = 1500   # the first steps train the CNN teacher alone (0: no teacher, no distillation)
    teacher_lr_scale: float = 3.0
    kd_weight: float = 1.0      # soft-label distillation of the teacher's logits into the CLS logits ...
    kd_temperature: float = 2.0
    hint_weight: float = 1.0    # ... and of its early texture features into the patch tokens (FitNets hint)
    hint_layer: int = 1         # the ViT hidden state (0: patch embeddings) the hint is read from
    energy_init: bool = True    # start the first layer with phase-invariant texture energies


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
def frame_logits(classifier: Classifier, frames: np.ndarray, batch: int = 256) -> torch.Tensor:
    """Logits (N, classes) float32 (CPU) of uint8 frames (N, H, W, 3), through the classifier's own processor."""
    model, processor = classifier
    out = []
    for a in range(0, len(frames), batch):
        pixels = processor(images=list(frames[a:a + batch]), return_tensors="pt").pixel_values
        out.append(model(pixel_values=pixels.to(model.device, model.dtype)).logits.float().cpu())
    return torch.cat(out)


@torch.no_grad()
def clip_logits(classifier: Classifier, clips: np.ndarray, batch: int = 32) -> torch.Tensor:
    """Logits (N, classes) float32 (CPU) of uint8 clips (N, T, H, W, 3), through the classifier's own processor.

    T must be the model's ``config.num_frames`` (VideoMAE's position table is sized for it; see
    :func:`videomae_for_num_frames`)."""
    model, processor = classifier
    out = []
    for a in range(0, len(clips), batch):
        pixels = processor([list(v) for v in clips[a:a + batch]], return_tensors="pt").pixel_values
        out.append(model(pixel_values=pixels.to(model.device, model.dtype)).logits.float().cpu())
    return torch.cat(out)


def frame_probabilities(classifier: Classifier, frames: np.ndarray, batch: int = 256) -> torch.Tensor:
    """Softmax probabilities (N, classes) of uint8 frames (N, H, W, 3): what the N-way test ranks."""
    return frame_logits(classifier, frames, batch).softmax(-1)


def clip_probabilities(classifier: Classifier, clips: np.ndarray, batch: int = 32) -> torch.Tensor:
    """Softmax probabilities (N, classes) of uint8 clips (N, T, H, W, 3): what the N-way test ranks."""
    return clip_logits(classifier, clips, batch).softmax(-1)


def videomae_for_num_frames(classifier: Classifier, num_frames: int) -> Classifier:
    """The same VideoMAE classifier for clips of ``num_frames`` frames (the processor is shared).

    What the field's video N-way does with ``from_pretrained(..., num_frames=6)`` (field-and-evaluation.md §2.3):
    VideoMAE's position embeddings are a fixed sinusoid table sized by ``config.num_frames``, not weights, so a
    model rebuilt with another frame count takes the same state dict.  Returns ``classifier`` itself when it
    already has ``num_frames``.
    """
    model, processor = classifier
    if model.config.num_frames == num_frames:
        return classifier
    if num_frames % model.config.tubelet_size:
        raise ValueError(f"video classifier: {num_frames} frames do not split into tubelets of "
                         f"{model.config.tubelet_size}; give a multiple of the tubelet size")
    config = type(model.config).from_dict({**model.config.to_dict(), "num_frames": num_frames})
    rebuilt = type(model)(config).to(model.device, model.dtype).eval()
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    return Classifier(rebuilt, processor)


def predict_frames(classifier: Classifier, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Class ids (N,) of frames (N, 3, S, S) in [0, 1], through the classifier's own processor."""
    return frame_logits(classifier, _uint8_frames(images), batch).argmax(-1)


def predict_clips(classifier: Classifier, clips: torch.Tensor, batch: int = 32) -> torch.Tensor:
    """Class ids (N,) of clips (N, T, 3, S, S) in [0, 1], through the classifier's own processor."""
    return clip_logits(classifier, _uint8_frames(clips), batch).argmax(-1)


def _classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict]:
    logits = logits.float()
    return F.cross_entropy(logits, labels), {"acc": float((logits.argmax(-1) == labels).float().mean())}


def quadrature_filters(p: int, periods=(3.5, 5.0, 7.0), orientations: int = 6) -> torch.Tensor:
    """Gabor filters of a p x p patch in quadrature pairs: (2 * len(periods) * orientations, p, p), zero mean,
    unit norm, ordered (period, orientation, phase 0 / phase pi/2), Gaussian envelope of sigma p / 3."""
    r = torch.arange(p, dtype=torch.float64) - (p - 1) / 2
    ys, xs = torch.meshgrid(r, r, indexing="ij")
    envelope = torch.exp(-(xs ** 2 + ys ** 2) / (2 * (p / 3) ** 2))
    out = []
    for period in periods:
        for k in range(orientations):
            u = xs * math.cos(math.pi * k / orientations) + ys * math.sin(math.pi * k / orientations)
            for phase in (0.0, math.pi / 2):
                f = envelope * torch.cos(2 * math.pi * u / period + phase)
                f = f - f.mean()
                out.append(f / f.norm())
    return torch.stack(out).float()


@torch.no_grad()
def init_texture_energy(model, periods=(3.5, 5.0, 7.0), orientations: int = 6) -> int:
    """Start a ViT (``ViTForImageClassification``) with phase-invariant texture energies in its first layer.

    Why: the class lives in ~5-px texture at a random phase, and a patch embedding learns a phase-invariant
    detector for it slowly, one phase at a time (a bag of 8-px patches with a learned MLP: 0.10 top-1 after 800
    steps; with these energies: 0.26).  So, in the residual stream (of width D >= 3 n / 2, n = number of filters):

    - patch-embedding channels [0, n): a bank of quadrature Gabor filters on the patch's luminance
      (:func:`quadrature_filters`: periods around the pattern's, 6 orientations, 2 phases);
    - channels [n, 3n/2): zero in the embedding; the first layer's MLP writes there, per filter pair,
      gelu(a) + gelu(-a) + gelu(b) + gelu(-b) ~ |a| + |b| of the normalised responses (a, b): the pair's local
      energy, whatever the phase.

    Everything stays trainable; the other channels and units keep their random initialisation.  Returns n.
    """
    projection = model.vit.embeddings.patch_embeddings.projection          # Conv2d(3, D, p, stride p)
    p, width = projection.kernel_size[0], projection.out_channels
    bank = quadrature_filters(p, periods, orientations)
    n = len(bank)
    layer = model.vit.layers[0] if hasattr(model.vit, "layers") else model.vit.encoder.layer[0]
    fc1, fc2 = layer.mlp.fc1, layer.mlp.fc2
    if width < n + n // 2 or fc1.out_features < 2 * n:
        raise TrainError(f"frame_classifier: texture-energy init needs hidden_size >= {n + n // 2} and "
                         f"intermediate_size >= {2 * n}; found {width} and {fc1.out_features}")
    # inputs are (x - 0.5) / 0.5 per RGB channel: the mean over channels is the luminance in [-1, 1]
    projection.weight[:n] = bank[:, None].expand(-1, 3, -1, -1) / 3 * 0.5
    projection.bias[:n] = 0
    projection.weight[n:n + n // 2] = 0
    projection.bias[n:n + n // 2] = 0
    fc1.weight[:2 * n] = 0
    fc1.bias[:2 * n] = 0
    fc2.weight[:, :2 * n] = 0
    for k in range(n):
        fc1.weight[2 * k, k], fc1.weight[2 * k + 1, k] = 1.0, -1.0            # units gelu(a), gelu(-a)
        fc2.weight[n + k // 2, 2 * k] = fc2.weight[n + k // 2, 2 * k + 1] = 1.0  # summed per quadrature pair
    return n


class TextureTeacher(torch.nn.Module):
    """The frame classifier's CNN teacher (training only, never saved): grayscale frames -> class logits and
    early texture features.

    Grayscale because the class is outline and pattern, never colour.  Two conv blocks at half resolution find the
    texture; two pooled blocks and a global max over positions find the object wherever it is.
    """

    def __init__(self, n_classes: int = N_CLASSES):
        super().__init__()
        nn = torch.nn

        def block(i, o, k, s):
            return [nn.Conv2d(i, o, k, s, k // 2), nn.BatchNorm2d(o), nn.ReLU()]

        self.early = nn.Sequential(*block(1, 32, 5, 2), *block(32, 48, 3, 1))          # (B, 48, S/2, S/2)
        self.late = nn.Sequential(nn.MaxPool2d(2), *block(48, 64, 3, 1), nn.MaxPool2d(2), *block(64, 128, 3, 1))
        self.head = nn.Linear(128, n_classes)

    def forward(self, images: torch.Tensor, grid: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (B, 3, S, S) in [0, 1] -> logits (B, classes), texture features (B, grid * grid, 48) (the early
        features averaged over each cell of a grid x grid partition: one row per ViT patch, raster order)."""
        early = self.early(images.mean(1, keepdim=True) * 2 - 1)
        logits = self.head(self.late(early).amax((2, 3)))
        return logits, F.adaptive_avg_pool2d(early, grid).flatten(2).transpose(1, 2)


class _Distillation(torch.nn.Module):
    """What the frame-classifier run trains: the ViT (``student``, the only part saved), the CNN ``teacher`` and
    the ``hint`` map from ViT tokens to the teacher's texture features."""

    def __init__(self, student, teacher: TextureTeacher | None, hint: torch.nn.Linear | None):
        super().__init__()
        self.student, self.teacher, self.hint = student, teacher, hint


def _standardised(features: torch.Tensor) -> torch.Tensor:
    """(B, P, C) -> zero mean, unit variance per channel over the batch and positions (hint targets)."""
    return (features - features.mean((0, 1))) / (features.std((0, 1)) + 1e-4)


class FrameClassifierRecipe(Recipe):
    """``ViTForImageClassification`` + ``ViTImageProcessor``: frames (B, 3, 64, 64) -> logits (B, 64)."""

    role = "frame_classifier"
    config_class = FrameClassifierConfig

    @staticmethod
    def full_config() -> FrameClassifierConfig:
        return FrameClassifierConfig(steps=12000, batch=64, lr=1e-3, warmup=200, eval_size=1024, teacher_steps=1500)

    @staticmethod
    def quick_config() -> FrameClassifierConfig:
        return FrameClassifierConfig(steps=4, batch=16, lr=1e-3, warmup=2, eval_size=32, teacher_steps=2)

    def build(self):
        from transformers import ViTConfig, ViTForImageClassification

        c = self.config
        if not 0 <= c.teacher_steps < c.steps:
            raise TrainError(f"frame_classifier: teacher_steps must lie in [0, steps={c.steps}), found {c.teacher_steps}")
        cfg = ViTConfig(image_size=IMAGE_SIZE, patch_size=c.patch_size, num_channels=3, hidden_size=c.hidden_size,
                        num_hidden_layers=c.layers, num_attention_heads=c.heads,
                        intermediate_size=c.intermediate_size, **_label_maps())
        with _seeded(self.seed):
            student = ViTForImageClassification(cfg)
            teacher = TextureTeacher() if c.teacher_steps else None
            hint = torch.nn.Linear(c.hidden_size, 48) if c.teacher_steps and c.hint_weight else None
        if c.energy_init:
            init_texture_energy(student)
        return _Distillation(student, teacher, hint)

    def lr_scale(self, name: str, param: torch.nn.Parameter) -> float:
        return self.config.teacher_lr_scale if name.startswith("teacher.") else 1.0

    def lr_factor(self, step: int) -> float:
        """The teacher phase has its own warmup-stable-decay; the ViT phase warms up again, then follows the
        run's schedule (so its final decay stays where :func:`~.loop.decay_start` puts it)."""
        c = self.config
        if step < c.teacher_steps:
            return lr_factor(step, dataclasses.replace(c, steps=c.teacher_steps))
        if step - c.teacher_steps < c.warmup:
            return (step - c.teacher_steps + 1) / c.warmup
        return lr_factor(step, c)

    def loss(self, model, step, generator):
        c = self.config
        b = corpus.frame_batch(self.seed, step, c.batch, "train", IMAGE_SIZE)
        x = _augment(b.images, c.noise_aug, generator).to(model.student.device)
        labels = b.labels.to(x.device)
        if step < c.teacher_steps:
            model.teacher.train()
            flip = torch.rand(len(x), generator=generator) < 0.5        # a mirror image keeps its class
            x[flip.to(x.device)] = x[flip.to(x.device)].flip(-1)
            loss, parts = _classification_loss(model.teacher(x, 1)[0], labels)
            return loss, {"teacher_acc": parts["acc"]}
        grid = IMAGE_SIZE // c.patch_size
        out = model.student.vit(pixel_values=normalise(x), output_hidden_states=model.hint is not None)
        logits = model.student.classifier(out.last_hidden_state[:, 0]).float()   # what the ViT's forward does
        loss, parts = _classification_loss(logits, labels)
        if model.teacher is not None:
            model.teacher.eval()
            with torch.no_grad():
                t_logits, t_features = model.teacher(x, grid)
            t = c.kd_temperature
            kd = F.kl_div(F.log_softmax(logits / t, -1), F.softmax(t_logits.float() / t, -1),
                          reduction="batchmean") * t * t
            loss = loss + c.kd_weight * kd
            parts["kd"] = float(kd.detach())
            if model.hint is not None:
                tokens = out.hidden_states[c.hint_layer][:, 1:]                 # (B, grid * grid, D), no CLS
                hint = F.mse_loss(model.hint(tokens).float(), _standardised(t_features.float()))
                loss = loss + c.hint_weight * hint
                parts["hint"] = float(hint.detach())
        return loss, parts

    def export(self, model):
        from transformers import ViTImageProcessor

        processor = ViTImageProcessor(do_resize=True, size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
                                      image_mean=[MEAN] * 3, image_std=[STD] * 3)
        return Classifier(export_copy(model.student, self.config.save_dtype), processor)

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
