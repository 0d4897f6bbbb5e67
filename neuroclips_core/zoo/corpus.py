"""The stand-ins' pretraining corpus: simulated shots disjoint from cc2017-sim's stimuli, rendered on the fly.

As SD was never trained on cc2017, no stand-in ever sees a cc2017-sim stimulus.  cc2017-sim draws its shots
from ``SeedSequence([seed, 0, segment_code])`` (and its brain, noise and checks from ``[seed, subject, ...]``
and ``[seed, 7]``); the corpus draws from its own stream ``SeedSequence([seed, 0xC0FFEE, split, index])``,
which none of them uses, so its shots are independent draws of the same world (same classes, renderer and
motion statistics), never the same shots.

- ``split`` is :data:`TRAIN` (0) or :data:`HELDOUT` (1): held-out evaluation sets come from another stream.
- ``index`` numbers the batches, so batch ``index`` is a pure function of ``(seed, split, index)``: a training
  loop that resumes at step ``k`` sees exactly the batches a straight run would (no data-loader state).

Every item comes from its own 5-s shot (150 frames at 30 FPS) at a random moment, so a frame or a 2-s clip
never straddles a cut and its class is unambiguous.  Frames are quantised to 8 bits, as stored frames are.
Rendering costs ~0.2-0.5 ms per 64-px frame, small beside a training step.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from ..data.sim_stimuli import (PATTERNS, Shot, pattern_mask, random_color, render_frames, sample_shots, shot_state,
                                to_uint8)

CORPUS_STREAM = 0xC0FFEE          # the SeedSequence word that separates the corpus from cc2017-sim
TEXTURE_STREAM = 0x7E47           # ... and the texture patches from the shots
TRAIN, HELDOUT = 0, 1
SPLITS = {"train": TRAIN, "heldout": HELDOUT}
RAW_FPS = 30                      # the renderer's time base (cc2017's stimulus frame rate)
SHOT_FRAMES = 150                 # one 5-s shot per item
FRAME_SIZE = 64
CLIP_FRAMES = 16                  # 2 s at 8 FPS: the clip length the video models generate and classify
CLIP_FPS = 8


class FrameBatch(NamedTuple):
    """``images`` float32 (B, 3, S, S) in [0, 1]; ``labels`` int64 (B,) sim class ids; ``masks`` bool
    (B, S, S), True on the object (None unless asked for)."""

    images: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor | None = None


class ClipBatch(NamedTuple):
    """``clips`` float32 (B, T, 3, S, S) in [0, 1] (T = 16 frames at 8 FPS); ``labels`` int64 (B,);
    ``captions`` B strings (class, colour, motion actually seen, background); ``velocity`` float32 (B, 2),
    the object's mean velocity over the clip in frame widths per second (x right, y down)."""

    clips: torch.Tensor
    labels: torch.Tensor
    captions: list[str]
    velocity: torch.Tensor


def _split_code(split: str | int) -> int:
    if isinstance(split, str):
        if split not in SPLITS:
            raise ValueError(f"unknown corpus split {split!r}; expected one of {sorted(SPLITS)}")
        return SPLITS[split]
    return int(split)


def corpus_shots(seed: int, split: str | int, index: int, n: int) -> tuple[list[Shot], np.random.Generator]:
    """``n`` independent 5-s shots of corpus batch ``index`` (shot k covers frames [150 k, 150 k + 150)), and
    the batch's generator, positioned after them (for the moments sampled within the shots)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, CORPUS_STREAM, _split_code(split), index]))
    shots = sample_shots(rng, n * SHOT_FRAMES, fps=RAW_FPS, shot_seconds=(SHOT_FRAMES / RAW_FPS,) * 2)
    assert len(shots) == n, (len(shots), n)
    return shots, rng


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    """(..., S, S, 3) float in [0, 1] -> (..., 3, S, S) float32, quantised to 8 bits."""
    q = to_uint8(images)
    return torch.from_numpy(np.moveaxis(q, -1, -3).astype(np.float32) / 255.0)


def frame_batch(seed: int, index: int, batch: int, split: str | int = "train", size: int = FRAME_SIZE,
                with_masks: bool = False) -> FrameBatch:
    """Corpus batch ``index``: ``batch`` frames, each from its own shot at a random moment."""
    shots, rng = corpus_shots(seed, split, index, batch)
    frames = np.array([s.start + int(rng.integers(SHOT_FRAMES)) for s in shots])
    labels = torch.tensor([s.label for s in shots], dtype=torch.int64)
    if with_masks:
        images, masks, _ = render_frames(shots, frames, size, RAW_FPS, with_masks=True)
        return FrameBatch(_to_tensor(images), labels, torch.from_numpy(masks))
    return FrameBatch(_to_tensor(render_frames(shots, frames, size, RAW_FPS)), labels)


class PatchBatch(NamedTuple):
    """``patches`` float32 (B, 3, P, P) in [0, 1]; ``labels`` int64 (B,): the surface pattern's index in
    :data:`~neuroclips_core.data.sim_stimuli.PATTERNS`, or ``len(PATTERNS)`` for a background patch."""

    patches: torch.Tensor
    labels: torch.Tensor


def texture_patches(seed: int, index: int, n: int, patch: int = 8, size: int = FRAME_SIZE) -> PatchBatch:
    """Texture batch ``index``: ``n`` patches of ``patch`` x ``patch`` pixels, each covered by one surface pattern.

    The renderer's own patterns (:func:`~neuroclips_core.data.sim_stimuli.pattern_mask`), drawn at what a corpus
    object shows a ``size``-px frame: radius 0.13-0.32 of the width (so a period of ~3-8 px), any rotation and
    phase, the object's colour and its darker second colour; one patch in ``len(PATTERNS) + 1`` is a background
    gradient instead.  Quantised to 8 bits like the frames.  A pure function of ``(seed, index)``, from a stream
    of its own.  For the frame classifier's patch stem, which learns the patterns here from dense labels (a
    frame has one label for its 64 patches).
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, TEXTURE_STREAM, index]))
    n_classes = len(PATTERNS) + 1
    labels = rng.integers(0, n_classes, n)
    radius = rng.uniform(0.13, 0.32, n) * size                               # pixels per object-radius unit
    angle = rng.uniform(0, 2 * np.pi, n)
    offset = rng.uniform(-1, 1, (n, 2))
    r = np.arange(patch) + 0.5
    gy, gx = np.meshgrid(r, r, indexing="ij")
    ca, sa = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    dx, dy = gx[None] / radius[:, None, None], gy[None] / radius[:, None, None]
    u = ca * dx + sa * dy + offset[:, :1, None]
    v = -sa * dx + ca * dy + offset[:, 1:, None]
    dark = np.zeros((n, patch, patch), bool)
    for k, name in enumerate(PATTERNS):
        sel = labels == k
        if sel.any():
            dark[sel] = pattern_mask(name, u[sel], v[sel], int(rng.integers(2**31)))
    colour = np.array([random_color(rng) for _ in range(n)])
    second = colour * rng.uniform(0.15, 0.4, (n, 1))
    images = np.where(dark[..., None], second[:, None, None], colour[:, None, None])
    # backgrounds: a gentle two-colour gradient (the frame-wide gradient seen through one patch)
    bg = labels == len(PATTERNS)
    b0 = np.array([random_color(rng, sat=(0.1, 0.45), val=(0.25, 0.6)) for _ in range(n)])
    b1 = np.array([random_color(rng, sat=(0.1, 0.45), val=(0.25, 0.6)) for _ in range(n)])
    t = (np.cos(angle)[:, None, None] * gx + np.sin(angle)[:, None, None] * gy)[..., None] / size
    t = t - t.min((1, 2), keepdims=True) + rng.uniform(0, 0.8, (n, 1, 1, 1))
    images[bg] = ((1 - t) * b0[:, None, None] + t * b1[:, None, None])[bg]
    return PatchBatch(_to_tensor(np.clip(images, 0, 1)), torch.from_numpy(labels))


def clip_offsets(n_frames: int = CLIP_FRAMES, fps: int = CLIP_FPS) -> np.ndarray:
    """Raw 30 FPS frame offsets of a clip's ``n_frames`` at ``fps``: 0, 4, 8, 11, ..., 56 for 16 at 8 FPS."""
    return np.round(np.arange(n_frames) * RAW_FPS / fps).astype(int)


def clip_batch(seed: int, index: int, batch: int, split: str | int = "train", size: int = FRAME_SIZE,
               n_frames: int = CLIP_FRAMES, fps: int = CLIP_FPS) -> ClipBatch:
    """Corpus batch ``index``: ``batch`` clips of ``n_frames`` frames at ``fps``, each inside its own shot."""
    shots, starts, offsets = _clip_starts(seed, split, index, batch, n_frames, fps)
    frames = (starts[:, None] + offsets[None]).ravel()
    images = render_frames(shots, frames, size, RAW_FPS).reshape(batch, n_frames, size, size, 3)
    captions, velocity = _clip_captions(shots, starts, offsets)
    return ClipBatch(_to_tensor(images), torch.tensor([s.label for s in shots], dtype=torch.int64), captions,
                     velocity)


def _clip_starts(seed: int, split: str | int, index: int, batch: int, n_frames: int, fps: int):
    """The shots of batch ``index``, each clip's first raw frame (B,) and the clip's raw frame offsets."""
    shots, rng = corpus_shots(seed, split, index, batch)
    offsets = clip_offsets(n_frames, fps)
    span = int(offsets[-1]) + 1
    starts = np.array([s.start + int(rng.integers(SHOT_FRAMES - span + 1)) for s in shots])
    return shots, starts, offsets


def _clip_captions(shots: list[Shot], starts: np.ndarray, offsets: np.ndarray) -> tuple[list[str], torch.Tensor]:
    """Each clip's caption and mean velocity (B, 2), from the motion actually seen over the clip (objects bounce
    off the edges), as cc2017-sim's clip captions describe it."""
    captions, velocity = [], []
    for shot, start in zip(shots, starts):
        centre = shot_state(shot, np.array([start, start + offsets[-1]]), RAW_FPS)["centre"]
        v = (centre[1] - centre[0]) / (offsets[-1] / RAW_FPS)
        captions.append(shot.caption(tuple(float(x) for x in v)))
        velocity.append(v)
    return captions, torch.tensor(np.array(velocity), dtype=torch.float32)


class KeyframeBatch(NamedTuple):
    """``images`` float32 (B, 3, S, S) in [0, 1]: the first frame (keyframe) of each clip; ``labels`` int64 (B,);
    ``captions`` the clip's caption (B strings, the motion over the clip's 2 s included); ``velocity`` (B, 2)."""

    images: torch.Tensor
    labels: torch.Tensor
    captions: list[str]
    velocity: torch.Tensor


def keyframe_batch(seed: int, index: int, batch: int, split: str | int = "train", size: int = FRAME_SIZE,
                   n_frames: int = CLIP_FRAMES, fps: int = CLIP_FPS) -> KeyframeBatch:
    """Corpus batch ``index`` as (keyframe, caption) pairs: the clips of :func:`clip_batch` (same shots, same
    starts, same captions) but only their first frame rendered, for the image-text models (CLIP, captioner,
    unCLIP), at 1/16 of the rendering cost."""
    shots, starts, offsets = _clip_starts(seed, split, index, batch, n_frames, fps)
    images = render_frames(shots, starts, size, RAW_FPS)
    captions, velocity = _clip_captions(shots, starts, offsets)
    return KeyframeBatch(_to_tensor(images), torch.tensor([s.label for s in shots], dtype=torch.int64), captions,
                         velocity)


def heldout_keyframes(seed: int, n: int, size: int = FRAME_SIZE, chunk: int = 256) -> KeyframeBatch:
    """The first ``n`` held-out (keyframe, caption) pairs: (n, 3, S, S), labels, captions, velocity."""
    parts = [keyframe_batch(seed, k, min(chunk, n - a), "heldout", size) for k, a in enumerate(range(0, n, chunk))]
    return KeyframeBatch(torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]),
                         [c for p in parts for c in p.captions], torch.cat([p.velocity for p in parts]))


def heldout_frames(seed: int, n: int, size: int = FRAME_SIZE, chunk: int = 256,
                   with_masks: bool = False) -> FrameBatch:
    """The first ``n`` held-out frames (the same ones for every ``chunk``-aligned ``n``): (n, 3, S, S)."""
    parts = [frame_batch(seed, k, min(chunk, n - a), "heldout", size, with_masks)
             for k, a in enumerate(range(0, n, chunk))]
    return FrameBatch(*(torch.cat(p) if p[0] is not None else None for p in zip(*parts)))


def heldout_clips(seed: int, n: int, size: int = FRAME_SIZE, chunk: int = 64) -> ClipBatch:
    """The first ``n`` held-out clips: (n, 16, 3, S, S), labels, captions, velocity."""
    parts = [clip_batch(seed, k, min(chunk, n - a), "heldout", size) for k, a in enumerate(range(0, n, chunk))]
    return ClipBatch(torch.cat([p.clips for p in parts]), torch.cat([p.labels for p in parts]),
                     [c for p in parts for c in p.captions], torch.cat([p.velocity for p in parts]))
