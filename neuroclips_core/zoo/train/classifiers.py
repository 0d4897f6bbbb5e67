"""Stand-ins for the two classifiers of the semantic N-way metrics: a ViT over frames, a VideoMAE over clips.

Both output the 64 sim class ids (``id2label`` = :data:`~neuroclips_core.data.sim_stimuli.CLASSES`) and expect
the preprocessing their processor (saved beside them) applies: resize to 64 px, rescale to [0, 1], mean 0.5,
std 0.5.  Training feeds ``(x - 0.5) / 0.5`` of 8-bit corpus frames, which is exactly what the processor makes
of the same frames given as uint8 (tests check it).

**Frame classifier.**  ViT, patch 8 (64 tokens a frame).  The sim's classes live in ~5-px texture and outline,
with no coarse cue (colour, size, position, motion all vary freely within a class, by design).  A ViT trained from
scratch learns that slowly: with the plain CLS loss it sat at chance for 400-650 steps in every probe here, while
the book's small CNN probe passes 0.85 in 2000 steps.  Probes on bags of patches (a per-patch MLP, pooled) show
why: non-overlapping 8-px patches must learn a phase-invariant texture detector one phase at a time, from one label
per 64 patches.  So the recipe gives the ViT two head starts for the length of training only, and the saved model
stays a plain ``ViTForImageClassification``:

1. **patch stem** (``stem_steps``): the ViT's first block, applied to one patch at a time (:func:`patch_stem`),
   learns to name the surface pattern of texture patches (:func:`~neuroclips_core.zoo.corpus.texture_patches`:
   the renderer's own patterns at random scale, rotation, phase and colour, one dense label per patch), through a
   linear head that is then dropped.  The block's attention starts silent, so the stem is exactly what the ViT's
   tokens hold when the ViT phase begins;
2. **teacher** (``teacher_steps``): a small grayscale CNN (:class:`TextureTeacher`) trains alone;
3. **ViT**: from the labels, from the frozen teacher's softened logits (KL at temperature ``kd_temperature``, the
   KD of Hinton et al.) and from its feature maps of three depths, average-pooled onto the ViT's 8 x 8 patch grid
   and regressed from the ViT's hidden states ``hint_layers`` through linear maps (FitNets hints).

Measured in probes (one thread each, two at a time, 512 held-out frames, the teacher of an earlier run):
per-patch pattern accuracy of the stem alone, 0.88 (9 classes) after 3000 steps (2.5 min); held-out ViT top-1
after 200 / 400 ViT steps: 0.04 / 0.11 with neither head start (an earlier recipe with Gabor-energy initialisation
and one hint), 0.13 / 0.22 with the stem, KD and one hint, 0.17 at 200 with the stem and three hints, 0.12 / 0.13
with the stem and labels alone.  The stem trained on patches cut from real corpus frames instead (dense labels
from the renderer's masks: pattern inside the object, shape on the outline) reached only 0.35 pattern and chance
shape accuracy: small objects leave few clean texture patches, and an 8-px piece of outline does not tell the
shape.  ViT steps cost 1.2 s on one thread and 0.75 s on two (batch 64); the teacher's 0.4 s; a stem step 0.1 s.

Measured on the full run that ships (seed 0, 2 threads, 2026-11-30, 101 min in all): the stem, 0.88 patch accuracy
after its 2500 steps (8 min); the teacher, 0.94 training top-1 after its 1500 (13 min); the ViT's training top-1
(running mean over 25 steps) 0.24 / 0.29 / 0.38 / 0.42 / 0.45 after 500 / 1000 / 1500 / 2000 / 2700 ViT steps at
the stable rate, then 0.58 / 0.66 / 0.69 through the final cosine decay (steps 7200-9000): the decay is worth as
much as the 2700 steps before it.  Held-out top-1 **0.711** (1024 frames, chance 0.016, on blurred frames 0.015);
on the VAE stand-in's round trips of held-out frames 0.451 against 0.697 on the same originals: the VAE's 4x
downsampling softens the 5-px texture the ViT reads.  Below the 0.9 target.  The ViT learns the pattern and
stalls on the outline: a probe on the outline alone (the ViT with the stem, plain CE on the 8 shapes, chance
0.125) reached 0.26 held-out after 500 steps, and the same (0.25) with position embeddings started as a 2-D
sin-cos table, so the grid's geometry is not what it lacks.

The task itself is learnable quickly, by a CNN: the teacher above, 1500 steps (10 min on one thread), names
**0.951** of 1024 held-out frames (shape 0.956, pattern 0.995).  It is the ViT of 8-px patches, the class the
role requires, that learns the outline slowly.

**Outline in the stem** (``stem_mask_weight``, off in the shipped config).  Besides naming the pattern of texture
patches, the stem can also draw where the object's edge runs through each patch: from the patches of
``stem_mask_frames`` corpus frames a step (every patch the outline crosses, as many from the rest), a linear head
on the stem's token predicts the object's share of each 2-px cell (:func:`patch_mask_targets`, binary
cross-entropy).  Measured with ``benchmarks/probe_frame_stem.py --mask-weight 1`` (the shipped recipe and schedule
otherwise, one thread, 2026-12-02): the stem reaches 0.971 cell accuracy beside 0.869 pattern accuracy; the ViT's
running training top-1 is 0.242 / 0.349 / 0.426 / 0.444 after 500 / 1000 / 1500 / 1750 ViT steps against the
shipped run's 0.24 / 0.29 / 0.38 / 0.42 (at 2000): a head start of about 400 steps, not a different slope.  Held
out after 1755 ViT steps: 0.455 (shape 0.496, pattern 0.898).  **Finer patches do not help** (the same probe on a
short schedule, ``--steps 5200 --decay 0.1154``: 1200 ViT steps, half of them decaying): 4-px patches (256 tokens,
hidden 96, 4 layers) follow the 8-px ViT's running top-1 step for step (0.286 against 0.282 after 600 ViT steps)
and end at the same held-out top-1 (0.492 against 0.489, 1024 frames) at 2.0x the cost of a step.  Still to try: a
longer stable phase, and VAE round trips among the training frames (the judge scores decoded frames).

**Video classifier.**  VideoMAE with the ViT's width, depth and heads, started from the trained frame classifier
inflated to tubelets (:func:`inflate_vit_to_videomae`) and fine-tuned on clips: from scratch, a video
transformer would spend its budget re-learning what the frame classifier already knows.  The inflated model is
still far from the frame classifier's own clip verdict: it mean-pools 512 tubelet tokens that attend across time
and sits on fixed sinusoidal positions, where the ViT read a CLS token over 64 patches with learned positions.  So
it also **distils** (``kd_weight``): the frozen frame classifier runs on each of the clip's 16 frames, its logits
are averaged over the frames, and the VideoMAE's logits are pulled to them (KL at ``kd_temperature``) beside the
labels.  That average is a strong teacher: on 256 held-out clips it names the class in 0.906 of them, where the
same ViT is right on 0.697 of single frames (the frames of a clip show the object at other places, sizes and
angles, so their errors partly cancel).

Measured (seed 0, 1 thread, 2026-12-01, 256 held-out clips): labels alone, 1200 steps (the model shipped until
then, 12.7 min on 2 threads), top-1 **0.637** (shape 0.637, pattern 0.992); with the distillation, 2400 steps in
44.5 min, **0.715** (shape 0.719, pattern 0.980).  Its training top-1 (running mean over 200 steps) was 0.55-0.59
through the stable phase and 0.69 at the end of the decay, with the distillation loss still falling (1.9 at step
400, 1.0 at 1800).  Shipped since 2026-12-02: the same recipe over 4000 steps (136 min on 1 thread, the other core
busy), top-1 **0.730** on the same 256 clips: 0.015 more, within their noise (one standard error is ~0.028).
The target is 0.8; the teacher's own clip verdict, 0.906, is the ceiling this distillation approaches.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ...data.sim_stimuli import CLASSES, N_CLASSES, PATTERNS, to_uint8
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
    """Plus the two head starts that get the ViT off its plateau (module docstring): a patch stem trained on
    texture patches, then distillation from a small CNN teacher."""

    stem_steps: int = 2500      # the first steps train the patch stem alone on texture patches (0: none) ...
    stem_batch: int = 2048      # ... this many patches a step ...
    stem_lr_scale: float = 2.0  # ... at this multiple of the rate
    stem_mask_weight: float = 0.0   # the stem also draws each patch's object mask at 2-px cells (0: not) ...
    stem_mask_frames: int = 16      # ... from the patches of this many corpus frames a step
    teacher_steps: int = 1500   # then the CNN teacher trains alone (0: no teacher, no distillation)
    teacher_lr_scale: float = 3.0
    kd_weight: float = 1.0      # soft-label distillation of the teacher's logits into the CLS logits ...
    kd_temperature: float = 2.0
    hint_weight: float = 1.0    # ... and of its feature maps into the patch tokens (FitNets hints):
    hint_layers: str = "1:early,3:mid,5:final"   # ViT hidden state (0: patch embeddings) : teacher stage


@dataclass(frozen=True)
class VideoClassifierConfig(ClassifierConfig):
    num_frames: int = corpus.CLIP_FRAMES
    tubelet_size: int = 2
    init_from_frame_classifier: bool = True
    kd_weight: float = 0.0         # distillation of the frame classifier's clip-mean logits (0: labels only) ...
    kd_temperature: float = 2.0    # ... at this temperature (needs init_from_frame_classifier's frozen ViT)


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


def clip_mean_frame_logits(classifier: Classifier, clips: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """A frame classifier's logits of every frame of clips (N, T, 3, S, S) in [0, 1], averaged over the T frames:
    (N, classes).  The frame classifier's verdict on a clip, and the video classifier's distillation target."""
    return frame_logits(classifier, _uint8_frames(clips.flatten(0, 1)), batch).unflatten(0, clips.shape[:2]).mean(1)


def predict_clips(classifier: Classifier, clips: torch.Tensor, batch: int = 32) -> torch.Tensor:
    """Class ids (N,) of clips (N, T, 3, S, S) in [0, 1], through the classifier's own processor."""
    return clip_logits(classifier, _uint8_frames(clips), batch).argmax(-1)


def _classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict]:
    logits = logits.float()
    return F.cross_entropy(logits, labels), {"acc": float((logits.argmax(-1) == labels).float().mean())}


def encoder_layers(vit_model) -> torch.nn.ModuleList:
    """The transformer blocks of a ``ViTForImageClassification`` (``vit.layers`` or, in older transformers,
    ``vit.encoder.layer``)."""
    return vit_model.vit.layers if hasattr(vit_model.vit, "layers") else vit_model.vit.encoder.layer


def patch_stem(vit_model, patches: torch.Tensor) -> torch.Tensor:
    """What the ViT's first block makes of each patch on its own: (B, 3, p, p) pixels in [0, 1] -> (B, D).

    The patch embedding ``e`` (without position), then the first block's MLP on top, ``e + mlp(ln_after(e))``:
    exactly the first block's output token when its attention adds nothing, as at :meth:`FrameClassifierRecipe.
    build` (the attention's output projection starts at zero), and position embeddings are ignored (they start at
    ~0.02).  Training this function on texture patches is the stem phase.
    """
    projection = vit_model.vit.embeddings.patch_embeddings.projection        # Conv2d(3, D, p, stride p)
    e = projection(normalise(patches)).flatten(1)
    block = encoder_layers(vit_model)[0]
    return e + block.mlp(block.layernorm_after(e))


class TextureTeacher(torch.nn.Module):
    """The frame classifier's CNN teacher (training only, never saved): grayscale frames -> class logits and
    feature maps of three depths.

    Grayscale because the class is outline and pattern, never colour.  Two conv blocks at half resolution find the
    texture (``early``); two pooled blocks (``mid``, ``final``) and a global max over positions find the object
    wherever it is.
    """

    STAGES = {"early": 48, "mid": 64, "final": 128}      # feature channels of each stage

    def __init__(self, n_classes: int = N_CLASSES):
        super().__init__()
        nn = torch.nn

        def block(i, o, k, s):
            return [nn.Conv2d(i, o, k, s, k // 2), nn.BatchNorm2d(o), nn.ReLU()]

        self.early = nn.Sequential(*block(1, 32, 5, 2), *block(32, 48, 3, 1))          # (B, 48, S/2, S/2)
        self.late = nn.Sequential(nn.MaxPool2d(2), *block(48, 64, 3, 1),              # mid: (B, 64, S/4, S/4)
                                  nn.MaxPool2d(2), *block(64, 128, 3, 1))             # final: (B, 128, S/8, S/8)
        self.head = nn.Linear(128, n_classes)

    def forward(self, images: torch.Tensor, grid: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Images (B, 3, S, S) in [0, 1] -> logits (B, classes), {stage: features (B, grid * grid, C)} (each
        stage's map averaged over each cell of a grid x grid partition: one row per ViT patch, raster order)."""
        early = self.early(images.mean(1, keepdim=True) * 2 - 1)
        mid = self.late[:4](early)
        final = self.late[4:](mid)
        logits = self.head(final.amax((2, 3)))
        maps = {"early": early, "mid": mid, "final": final}
        return logits, {k: F.adaptive_avg_pool2d(m, grid).flatten(2).transpose(1, 2) for k, m in maps.items()}


class _Distillation(torch.nn.Module):
    """What the frame-classifier run trains: the ViT (``student``, the only part saved), the stem's patch
    classifier ``stem_head`` and mask decoder ``mask_head``, the CNN ``teacher`` and the ``hints`` (one linear map
    per hinted ViT layer, from its tokens to the teacher's features)."""

    def __init__(self, student, stem_head, teacher: TextureTeacher | None, hints: torch.nn.ModuleList | None,
                 mask_head=None):
        super().__init__()
        self.student, self.stem_head, self.teacher, self.hints = student, stem_head, teacher, hints
        self.mask_head = mask_head


def patch_mask_targets(images: torch.Tensor, masks: torch.Tensor, patch: int, cell: int = 2,
                       generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Patches of frames and the object mask inside each, for the stem's outline target.

    Args:
        images: (B, 3, S, S) frames in [0, 1]; masks: (B, S, S) bool, True on the object (the renderer's).
        patch: the ViT's patch size; cell: the mask's resolution in pixels.
    Returns:
        patches (N, 3, patch, patch) and targets (N, (patch / cell) ** 2): the object's share of each cell.  Every
        patch the outline crosses is kept, and as many drawn from the rest (object inside, background), so the
        target is mostly about where the edge runs.
    """
    b, _, s, _ = images.shape
    g = s // patch
    pieces = images.unfold(2, patch, patch).unfold(3, patch, patch)             # (B, 3, g, g, p, p)
    pieces = pieces.permute(0, 2, 3, 1, 4, 5).reshape(b * g * g, 3, patch, patch)
    cells = F.avg_pool2d(masks[:, None].float(), cell)[:, 0]                      # (B, S/c, S/c)
    k = patch // cell
    targets = cells.unfold(1, k, k).unfold(2, k, k).reshape(b * g * g, k * k)
    share = targets.mean(1)
    edge = torch.nonzero((share > 0) & (share < 1))[:, 0]
    rest = torch.nonzero((share == 0) | (share == 1))[:, 0]
    rest = rest[torch.randperm(len(rest), generator=generator)[:max(len(edge), 1)]]
    keep = torch.cat([edge, rest])
    return pieces[keep], targets[keep]


def parse_hint_layers(spec: str, layers: int) -> list[tuple[int, str]]:
    """``"1:early,3:mid"`` -> [(1, "early"), (3, "mid")]: ViT hidden state (0 = patch embeddings, ``layers`` =
    the last block's output) and the teacher stage it is hinted with."""
    out = []
    for item in filter(None, (x.strip() for x in spec.split(","))):
        layer, _, stage = item.partition(":")
        if not layer.isdigit() or not 0 <= int(layer) <= layers or stage not in TextureTeacher.STAGES:
            raise TrainError(f"frame_classifier: hint {item!r} is not LAYER:STAGE with LAYER in 0..{layers} and "
                             f"STAGE one of {', '.join(TextureTeacher.STAGES)} (e.g. '1:early,3:mid,5:final')")
        out.append((int(layer), stage))
    return out


def _standardised(features: torch.Tensor) -> torch.Tensor:
    """(B, P, C) -> zero mean, unit variance per channel over the batch and positions (hint targets)."""
    return (features - features.mean((0, 1))) / (features.std((0, 1)) + 1e-4)


class FrameClassifierRecipe(Recipe):
    """``ViTForImageClassification`` + ``ViTImageProcessor``: frames (B, 3, 64, 64) -> logits (B, 64).

    Steps ``[0, stem_steps)`` train the patch stem, the next ``teacher_steps`` the teacher, the rest the ViT."""

    role = "frame_classifier"
    config_class = FrameClassifierConfig

    @staticmethod
    def full_config() -> FrameClassifierConfig:
        return FrameClassifierConfig(steps=9000, batch=64, lr=1e-3, warmup=200, eval_size=1024)

    @staticmethod
    def quick_config() -> FrameClassifierConfig:
        return FrameClassifierConfig(steps=6, batch=16, lr=1e-3, warmup=2, eval_size=32, stem_steps=2,
                                     stem_batch=64, teacher_steps=2)

    def _phases(self) -> tuple[int, int]:
        """(first teacher step, first ViT step)."""
        c = self.config
        return c.stem_steps, c.stem_steps + c.teacher_steps

    def build(self):
        from transformers import ViTConfig, ViTForImageClassification

        c = self.config
        teacher_start, vit_start = self._phases()
        if min(c.stem_steps, c.teacher_steps) < 0 or vit_start >= c.steps:
            raise TrainError(f"frame_classifier: stem_steps ({c.stem_steps}) + teacher_steps ({c.teacher_steps}) "
                             f"must be >= 0 each and leave ViT steps before steps={c.steps}")
        if c.stem_steps and c.stem_mask_weight and c.patch_size % 2:
            raise TrainError(f"frame_classifier: stem_mask_weight draws the mask at 2-px cells, which do not tile a "
                             f"patch of {c.patch_size} px; use an even patch_size or stem_mask_weight=0")
        hints = parse_hint_layers(c.hint_layers, c.layers) if c.teacher_steps and c.hint_weight else []
        cfg = ViTConfig(image_size=IMAGE_SIZE, patch_size=c.patch_size, num_channels=3, hidden_size=c.hidden_size,
                        num_hidden_layers=c.layers, num_attention_heads=c.heads,
                        intermediate_size=c.intermediate_size, **_label_maps())
        with _seeded(self.seed):
            student = ViTForImageClassification(cfg)
            stem_head = torch.nn.Linear(c.hidden_size, len(PATTERNS) + 1) if c.stem_steps else None
            mask_head = (torch.nn.Linear(c.hidden_size, (c.patch_size // 2) ** 2)
                         if c.stem_steps and c.stem_mask_weight else None)
            teacher = TextureTeacher() if c.teacher_steps else None
            hint_maps = torch.nn.ModuleList([torch.nn.Linear(c.hidden_size, TextureTeacher.STAGES[stage])
                                             for _, stage in hints]) if hints else None
        if c.stem_steps:
            # the first block's attention starts silent, so its output token is what the stem learned (patch_stem)
            attention = encoder_layers(student)[0].attention
            out_proj = attention.o_proj if hasattr(attention, "o_proj") else attention.output.dense
            with torch.no_grad():
                out_proj.weight.zero_()
                out_proj.bias.zero_()
        return _Distillation(student, stem_head, teacher, hint_maps, mask_head)

    def lr_scale(self, name: str, param: torch.nn.Parameter) -> float:
        return self.config.teacher_lr_scale if name.startswith("teacher.") else 1.0

    def lr_factor(self, step: int) -> float:
        """The stem and teacher phases each have their own warmup-stable-decay; the ViT phase warms up again, then
        follows the run's schedule (so its final decay stays where :func:`~.loop.decay_start` puts it)."""
        c = self.config
        teacher_start, vit_start = self._phases()
        if step < teacher_start:
            return c.stem_lr_scale * lr_factor(step, dataclasses.replace(c, steps=c.stem_steps))
        if step < vit_start:
            return lr_factor(step - teacher_start, dataclasses.replace(c, steps=c.teacher_steps))
        if step - vit_start < c.warmup:
            return (step - vit_start + 1) / c.warmup
        return lr_factor(step, c)

    def loss(self, model, step, generator):
        c = self.config
        teacher_start, vit_start = self._phases()
        device = model.student.device
        if step < teacher_start:                       # the stem: the first block, per patch, names the pattern
            b = corpus.texture_patches(self.seed, step, c.stem_batch, c.patch_size, IMAGE_SIZE)
            x = _augment(b.patches, c.noise_aug, generator).to(device)
            logits = model.stem_head(patch_stem(model.student, x))
            loss, parts = _classification_loss(logits, b.labels.to(device))
            parts = {"stem_acc": parts["acc"]}
            if model.mask_head is not None:            # ... and where the object's edge runs through the patch
                f = corpus.frame_batch(self.seed, step, c.stem_mask_frames, "train", IMAGE_SIZE, with_masks=True)
                patches, target = patch_mask_targets(f.images, f.masks, c.patch_size, generator=generator)
                x = _augment(patches, c.noise_aug, generator).to(device)
                mask_logits = model.mask_head(patch_stem(model.student, x)).float()
                target = target.to(device)
                mask_loss = F.binary_cross_entropy_with_logits(mask_logits, target)
                loss = loss + c.stem_mask_weight * mask_loss
                parts.update(mask=float(mask_loss.detach()),
                             mask_acc=float(((mask_logits > 0) == (target > 0.5)).float().mean()))
            return loss, parts
        b = corpus.frame_batch(self.seed, step, c.batch, "train", IMAGE_SIZE)
        x = _augment(b.images, c.noise_aug, generator).to(device)
        labels = b.labels.to(device)
        if step < vit_start:
            model.teacher.train()
            flip = torch.rand(len(x), generator=generator) < 0.5        # a mirror image keeps its class
            x[flip.to(device)] = x[flip.to(device)].flip(-1)
            loss, parts = _classification_loss(model.teacher(x, 1)[0], labels)
            return loss, {"teacher_acc": parts["acc"]}
        grid = IMAGE_SIZE // c.patch_size
        out = model.student.vit(pixel_values=normalise(x), output_hidden_states=model.hints is not None)
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
            if model.hints is not None:
                hint = sum(F.mse_loss(m(out.hidden_states[layer][:, 1:]).float(),     # tokens, no CLS
                                      _standardised(t_features[stage].float()))
                           for m, (layer, stage) in zip(model.hints, parse_hint_layers(c.hint_layers, c.layers)))
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
        return VideoClassifierConfig(steps=4000, batch=8, lr=3e-4, warmup=100, eval_size=256, kd_weight=1.0)

    @staticmethod
    def quick_config() -> VideoClassifierConfig:
        return VideoClassifierConfig(steps=4, batch=2, lr=3e-4, warmup=2, eval_size=8, kd_weight=1.0)

    def uses(self) -> tuple[str, ...]:
        return ("frame_classifier",) if self.config.init_from_frame_classifier else ()

    @functools.cached_property
    def frame_teacher(self):
        """The trained frame classifier's ViT (float32, frozen, eval): the teacher of ``kd_weight``."""
        self.require("frame_classifier")
        model = load_role("frame_classifier", self.role_folder("frame_classifier"), dtype=torch.float32).model
        return model.to(self.device).eval().requires_grad_(False)

    def build(self):
        from transformers import VideoMAEConfig, VideoMAEForVideoClassification

        c = self.config
        if c.kd_weight and not c.init_from_frame_classifier:
            raise TrainError("video_classifier: kd_weight > 0 distils the frame classifier, which "
                             "init_from_frame_classifier=False does not use; set kd_weight=0 or use it")
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
        c = self.config
        b = corpus.clip_batch(self.seed, step, c.batch, "train", IMAGE_SIZE, c.num_frames)
        x = normalise(_augment(b.clips, c.noise_aug, generator)).to(model.device)
        logits = model(pixel_values=x).logits.float()
        loss, parts = _classification_loss(logits, b.labels.to(model.device))
        if c.kd_weight:
            with torch.no_grad():        # the frame classifier on every frame, its logits averaged over the clip
                teacher = self.frame_teacher(pixel_values=x.flatten(0, 1)).logits.float()
                teacher = teacher.unflatten(0, x.shape[:2]).mean(1)
            t = c.kd_temperature
            kd = F.kl_div(F.log_softmax(logits / t, -1), F.softmax(teacher / t, -1), reduction="batchmean") * t * t
            loss = loss + c.kd_weight * kd
            parts.update(kd=float(kd.detach()),
                         teacher_acc=float((teacher.argmax(-1) == b.labels.to(model.device)).float().mean()))
        return loss, parts

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
