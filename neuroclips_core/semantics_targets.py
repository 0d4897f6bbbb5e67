"""The Semantics Reconstructor's targets, computed once per stimulus set and cached, and the dataset serving them.

The SR regresses, for each clip, the CLIP image tokens of its keyframe, and Reftm aligns with the embedding of the
clip's caption.  Both depend only on the stimuli and the CLIP model, never on the subject, so they are encoded once
(:func:`~neuroclips_core.artifacts.cached_rows`) and every subject of the dataset reads the same files::

    runs/<profile>/cache/clip_tokens/<clip>-<keyframes>-<rows>.npy   float16 (n, T, C)  image tokens of keyframes
    runs/<profile>/cache/clip_text/<clip>-<captions>-<rows>.npy      float32 (n, D)     unit-norm caption embeddings

``<clip>`` is :func:`clip_fingerprint` (weights, model and preprocessing configs), ``<keyframes>`` the sha1 of the
keyframe pixels themselves (so another keyframe index, another store size or another dataset is another file),
``<rows>`` the sha1 of the store rows encoded.  The tokens are what unCLIP is conditioned on
(:func:`~neuroclips_core.zoo.unclip_sampling.image_tokens`: (64, 128) for the stand-in, (256, 1664) for ViT-bigG/14);
they are kept in float16 because at paper size the 4320 training keyframes take 3.7 GB even so (the official code
re-encodes them with bigG in every step instead, under fp16 autocast).

:class:`TokenClips` serves ``{"fmri": (V,), "tokens": (T, C), "text": (D,)}`` items of one split to the training
loop.
"""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import torch

from .artifacts import RowView, cached_rows, module_fingerprint
from .data.store import ClipDataset
from .pipelines.blurry import _progress, _to_unit
from .zoo.train.clip import embed_texts
from .zoo.unclip_sampling import image_tokens


def clip_fingerprint(clip) -> str:
    """sha1 of a CLIP bundle (:class:`~neuroclips_core.zoo.loaders.OpenClip`): its weights, its model config and
    its preprocessing (resize size, mean, std), everything the tokens and text embeddings depend on."""
    h = hashlib.sha1(module_fingerprint(clip.model).encode())
    h.update(json.dumps({"model": clip.model_cfg, "preprocess": clip.preprocess_cfg}, sort_keys=True,
                        default=str).encode())
    return h.hexdigest()


#: The stored frame (of the 6 per clip) that is the clip's keyframe: the SR's target, the blurry frame unCLIP starts
#: from and the frame the captions describe (2, as the official code; why: :mod:`neuroclips_core.semantics_run`).
KEYFRAME_INDEX = 2


def keyframes(frames: np.ndarray, keyframe_index: int) -> np.ndarray:
    """The keyframe of every clip, (N, H, W, 3) uint8, a view of ``frames`` (N, F, H, W, 3) (no copy)."""
    if not 0 <= keyframe_index < frames.shape[1]:
        raise ValueError(f"keyframe_index {keyframe_index} is not a frame of clips with {frames.shape[1]} frames "
                         f"(0..{frames.shape[1] - 1})")
    return frames[:, keyframe_index]


def encode_keyframe_tokens(clip, images: RowView | np.ndarray, batch_size: int = 64,
                           progress: bool = False) -> np.ndarray:
    """CLIP image tokens of uint8 images (n, H, W, 3) -> float16 (n, T, C) (:func:`image_tokens`)."""
    out = []
    for a in _progress(range(0, len(images), batch_size), progress, "CLIP keyframe tokens",
                       total=-(-len(images) // batch_size)):
        out.append(image_tokens(clip, _to_unit(images[a:a + batch_size]), batch=batch_size).half().numpy())
    return np.concatenate(out)


def cached_keyframe_tokens(clip, frames: np.ndarray, keyframe_index: int, cache_dir: str | os.PathLike,
                           rows: np.ndarray | None = None, clip_key: str | None = None, batch_size: int = 64,
                           progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Tokens float16 (len(rows), T, C) of the keyframes of ``frames`` (N, F, H, W, 3) at ``rows`` (default all),
    encoded once and then read from ``cache_dir``; returns ``(tokens, rows sorted)``.  ``clip_key``: the clip's
    :func:`clip_fingerprint` if already computed (it reads every weight)."""
    key = (clip_key or clip_fingerprint(clip))[:16]
    return cached_rows(lambda view: encode_keyframe_tokens(clip, view, batch_size, progress),
                       keyframes(frames, keyframe_index), cache_dir, key, rows)


def caption_embeddings(clip, captions, batch_size: int = 256) -> np.ndarray:
    """Unit-norm CLIP text embeddings float32 (n, D) of ``captions`` (n strings): the text tower's pooled,
    projected output (D = 1280 for ViT-bigG/14, 64 for the stand-in), Reftm's text side."""
    return embed_texts(clip.model, clip.tokenizer, [str(c) for c in captions], batch=batch_size).numpy()


def cached_caption_embeddings(clip, captions: list, cache_dir: str | os.PathLike, rows: np.ndarray | None = None,
                              clip_key: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`caption_embeddings` of ``captions[rows]``, computed once and then read from ``cache_dir``;
    returns ``(embeddings (len(rows), D), rows sorted)``."""
    key = (clip_key or clip_fingerprint(clip))[:16]
    texts = np.asarray(captions, dtype=str)
    return cached_rows(lambda view: caption_embeddings(clip, view[:]), texts, cache_dir, key, rows)


class RowTable:
    """Values computed for some store rows, looked up by store row: ``RowTable(values, rows)[row]``."""

    def __init__(self, values: np.ndarray, rows: np.ndarray):
        self.values = values
        self.position = {int(r): i for i, r in enumerate(rows)}

    def __getitem__(self, row: int) -> np.ndarray:
        if int(row) not in self.position:
            raise KeyError(f"store row {row} was not encoded (encoded: {len(self.position)} rows)")
        return self.values[self.position[int(row)]]


class TokenClips(torch.utils.data.Dataset):
    """A :class:`~neuroclips_core.data.store.ClipDataset` split (fMRI only) with each clip's SR targets.

    Items: ``{"fmri": float32 (V,), "tokens": float32 (T, C)}`` plus ``"text": float32 (D,)`` when caption
    embeddings are given.  ``subset`` keeps the first clips of the split (quick mode).  ``epoch`` is the epoch the
    training loop last announced (:meth:`set_epoch`): the SR objective reads it to switch BiMixCo to SoftCLIP.
    """

    def __init__(self, clips: ClipDataset, tokens: RowTable, text: RowTable | None = None,
                 subset: int | None = None):
        self.clips, self.tokens, self.text = clips, tokens, text
        self.n = len(clips) if subset is None else min(len(clips), int(subset))
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.clips.set_epoch(epoch)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        item = self.clips[i]
        row = item["index"]
        # np.array copies: cached values are read-only memmaps, and torch wants writable memory
        out = {"fmri": item["fmri"], "tokens": torch.from_numpy(np.array(self.tokens[row], np.float32))}
        if self.text is not None:
            out["text"] = torch.from_numpy(np.array(self.text[row], np.float32))
        return out
