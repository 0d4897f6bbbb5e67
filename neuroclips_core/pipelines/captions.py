"""Captions (gamma guidance): the captioner describes each reconstructed keyframe -> the video model's prompt.

    captions = caption_images(captioner, keyframes)              # uint8 (N, H, W, 3) -> N strings
    write_captions(run_dir, captions, {"max_new_tokens": ..., ...})      # captions_test.json (a list of N strings)
    hits = caption_class_hits(captions, store.labels_test)       # bool (N,): the caption names the clip's class
    chance = random_caption_baseline(store.captions_train, store.labels_test, seed=0)   # blind-captioner rate

**Paper versus official code** (neuroclips-official-code.md §5).  The paper captions the reconstructed keyframe
with BLIP-2 (``blip2-opt-2.7b``); the official repository only captions ground-truth frames (``src/caption.py``:
``generate(**inputs)`` with no arguments, i.e. greedy decoding, no prompt, the default length of 20) and ships
no script for the keyframe captions its video stage reads.  :func:`caption_images` is that call on the
keyframes: greedy, one beam, no prompt by default, ``max_new_tokens`` explicit (20 reproduces the official
default; ``None`` keeps the model's saved generation settings, 24 for the stand-in).  It is the same generation
code the captioner stand-in is evaluated with (:func:`~neuroclips_core.zoo.train.captioner.caption_frames`).

**The GIT ablation (``fmri_caption``).**  The paper compares with MindEye2's GIT captions, decoded from the
fMRI-predicted image tokens themselves, never from a keyframe (GIT's image encoder is skipped and a trained
``CLIPConverter`` maps the 256 x 1664 bigG tokens to GIT's 257 x 1024 ViT-L layout).  :func:`caption_tokens`
is the analogue with the BLIP-2 captioner: the predicted tokens take the place of its vision tower's output,
and its Q-Former and language model do the rest.  That works for the sim stand-ins: the captioner's vision
tower (:mod:`~neuroclips_core.zoo.train.captioner`) and the CLIP's (:mod:`~neuroclips_core.zoo.train.clip`)
are the same frame-classifier ViT at the start of their training, so CLIP's 64 patch tokens are 128 wide like
the 65 tokens (CLS + 64 patches) the Q-Former cross-attends to; both towers were then fine-tuned at a fifth of
the learning rate, so they have drifted apart, and the CLS token is missing: how much that costs is measured
by captioning the *true* CLIP tokens (a ceiling the chapter reports).  For the paper's models it does not:
BLIP-2's EVA ViT-g gives 257 x 1408 tokens, bigG 256 x 1664, and no trained bigG -> EVA converter exists
(MindEye2's converts to GIT's ViT-L); pass one as ``converter`` or the call stops with the widths.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch

from ..data.sim_stimuli import CLASSES
from ..train import write_json_atomic
from ..zoo.train.captioner import caption_frames, generate_captions

CAPTIONS_FILE = "captions_test.json"           # DESIGN.md §7: semantics/captions_test.json, N strings
CAPTIONS_PARAMS_FILE = "captions_params.json"
FMRI_CAPTIONS_FILE = "fmri_captions_test.json"     # the fmri_caption (GIT-style) ablation's captions
OFFICIAL_MAX_NEW_TOKENS = 20                   # transformers' default max_length, which the official call keeps


def _check_frames(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images: expected uint8 (N, H, W, 3) keyframes, found {images.dtype} "
                         f"{tuple(images.shape)}")
    return images


def caption_images(captioner, images: np.ndarray, *, max_new_tokens: int | None = OFFICIAL_MAX_NEW_TOKENS,
                   prompt: str | None = None, batch: int = 64) -> list[str]:
    """Captions of keyframes, uint8 (N, H, W, 3) -> N strings, greedy and deterministic.

    Args:
        captioner: :class:`~neuroclips_core.zoo.loaders.Captioner` (``load_role("captioner", ...)``).
        images: the reconstructed keyframes (the captioner's processor resizes them).
        max_new_tokens: caption length cap (default the official 20; None: the model's generation settings).
        prompt: text the caption continues (None: no prompt, as the official BLIP-2 call).
        batch: images per ``generate`` call; it does not change the captions (one prompt, no padding).
    """
    return caption_frames(captioner, _check_frames(images), max_new_tokens, prompt=prompt, batch=batch)


class _TokensAsVisionOutput(torch.nn.Module):
    """Stands in for BLIP-2's vision tower: returns what it is given as ``last_hidden_state``."""

    def forward(self, pixel_values, return_dict=True, interpolate_pos_encoding=False):
        from transformers.modeling_outputs import BaseModelOutput

        return BaseModelOutput(last_hidden_state=pixel_values)


@contextlib.contextmanager
def _vision_replaced_by_tokens(model):
    """Within the block, ``model.generate(pixel_values=tokens)`` feeds ``tokens`` (B, T, C) to the Q-Former as if
    they were the vision tower's output; the library's own generate does the rest, so nothing of it is copied."""
    vision = model.vision_model
    model.vision_model = _TokensAsVisionOutput()
    try:
        yield
    finally:
        model.vision_model = vision


@torch.no_grad()
def caption_tokens(captioner, tokens, *, converter: Callable[[torch.Tensor], torch.Tensor] | None = None,
                   max_new_tokens: int | None = OFFICIAL_MAX_NEW_TOKENS, prompt: str | None = None,
                   batch: int = 64) -> list[str]:
    """Captions decoded from image tokens (the ``fmri_caption`` ablation: the prior's tokens, no keyframe).

    Args:
        captioner: the BLIP-2 :class:`~neuroclips_core.zoo.loaders.Captioner`.
        tokens: (N, T, C) float (torch or numpy): predicted (or true) CLIP image tokens.
        converter: maps a (B, T, C) batch to the vision tower's token layout (B, T', D); needed when C differs
            from the vision width D (the paper's models, see the module docstring).
        max_new_tokens, prompt, batch: as :func:`caption_images`.

    Raises:
        ValueError: tokens not 3-D, or (after ``converter``) not as wide as the Q-Former's image input.
    """
    model = captioner.model
    tokens = (torch.from_numpy(np.array(tokens)) if isinstance(tokens, np.ndarray) else tokens).float()
    width = model.config.qformer_config.encoder_hidden_size
    if tokens.ndim != 3:
        raise ValueError(f"tokens: expected (N, T, C) image tokens, found shape {tuple(tokens.shape)}")
    out = []
    with _vision_replaced_by_tokens(model):
        for a in range(0, len(tokens), batch):
            x = tokens[a:a + batch]
            x = converter(x) if converter is not None else x
            if x.ndim != 3 or x.shape[-1] != width:
                raise ValueError(f"tokens: the Q-Former reads image tokens (N, T, {width}) (its vision tower's "
                                 f"width), found {tuple(x.shape)}{' after the converter' if converter else ''}; "
                                 f"pass a converter to that width (none ships for the paper's bigG -> BLIP-2)")
            out += generate_captions(captioner, x, prompt, max_new_tokens)
    return out


def write_captions(run_dir: str | os.PathLike, captions: Sequence[str], meta: dict,
                   name: str = CAPTIONS_FILE) -> Path:
    """Write ``run_dir/<name>`` (a JSON list of N strings, the store's caption format) and, beside it,
    ``<stem>_params.json`` (``meta`` plus N; ``captions_params.json`` for the default name), each through a temp
    file and a rename; ``meta`` is checked to be JSON first, so a bad one replaces neither.  Returns the path."""
    captions = list(captions)
    if not all(isinstance(c, str) for c in captions):
        raise ValueError(f"captions: expected a list of strings, found {sorted({type(c).__name__ for c in captions})}")
    params = {**meta, "n": len(captions)}
    json.dumps(params)          # a meta that cannot be written fails here, before either file is replaced
    run_dir = Path(run_dir)
    path = write_json_atomic(run_dir / name, captions)
    params_name = CAPTIONS_PARAMS_FILE if name == CAPTIONS_FILE else f"{Path(name).stem}_params.json"
    write_json_atomic(run_dir / params_name, params)
    return path


# ------------------------------------------------------------------------------------------------ scoring
def _class_names(labels, class_names: Sequence[str]) -> list[str]:
    """Class ids (ints) or names -> names."""
    return [class_names[int(x)] if isinstance(x, (int, np.integer)) else str(x) for x in np.asarray(labels).tolist()]


def _names_class(caption: str, name: str) -> bool:
    # whole words only: the sim's class names are "<pattern> <shape>" and appear in a caption as such
    return re.search(rf"\b{re.escape(name.lower())}\b", caption.lower()) is not None


def caption_class_hits(captions: Sequence[str], labels, class_names: Sequence[str] = CLASSES) -> np.ndarray:
    """bool (N,): caption i names clip i's class (``labels``: N class ids into ``class_names``, or N names).

    In the sim's grammar ("a red speckled triangle moving left over a teal background") the class is the
    "<pattern> <shape>" phrase; a caption that names the shape with another pattern is a miss.
    """
    names = _class_names(labels, class_names)
    if len(names) != len(captions):
        raise ValueError(f"caption_class_hits: expected one label per caption ({len(captions)}), found {len(names)}")
    return np.array([_names_class(c, n) for c, n in zip(captions, names)], dtype=bool)


class CaptionBaseline(NamedTuple):
    """What captions of random training keyframes score on the test labels (chance for a blind captioner)."""

    rate: float          # mean hit rate over ``draws`` random assignments (seeded)
    se: float            # its standard error over the draws
    expected: float      # the exact expectation: mean over test clips of the fraction of training captions
    #                      naming that clip's class (= sum_c p_test(c) p_train(c) when each caption names one class)
    draws: int


def random_caption_baseline(train_captions: Sequence[str], test_labels, seed: int, draws: int = 200,
                            class_names: Sequence[str] = CLASSES) -> CaptionBaseline:
    """Hit rate of giving each test clip the caption of a uniformly random training clip.

    The issue's check ("captions name the right class at least twice as often as captions of a random training
    keyframe would") compares ``caption_class_hits(...).mean()`` with this ``rate`` (or ``expected``).
    """
    names = _class_names(test_labels, class_names)
    if not len(train_captions) or not names:
        raise ValueError(f"random_caption_baseline: expected training captions and test labels, found "
                         f"{len(train_captions)} and {len(names)}")
    classes = sorted(set(names))
    column = {c: j for j, c in enumerate(classes)}
    # names[j, k]: training caption j names test class k (computed once, then draws are lookups)
    named = np.array([[_names_class(t, c) for c in classes] for t in train_captions], dtype=bool)
    test_col = np.array([column[n] for n in names])
    rng = np.random.default_rng(seed)
    rates = np.array([named[rng.integers(len(train_captions), size=len(names)), test_col].mean()
                      for _ in range(draws)])
    return CaptionBaseline(float(rates.mean()), float(rates.std(ddof=1) / np.sqrt(draws)) if draws > 1 else 0.0,
                           float(named.mean(0)[test_col].mean()), draws)
