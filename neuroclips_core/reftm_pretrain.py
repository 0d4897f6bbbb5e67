"""Pre-training of the Reftm projector on (keyframe, caption) pairs of the pretraining corpus, then frozen.

Reftm (paper §3.2, App. B.2) aligns the SR's image-token output with the embedding of the clip's caption through a
projector, the official ``CLIPProj``: mean over the T tokens, then one (C, D) matrix
(:class:`~neuroclips_core.models.semantics.ReftmProjector`).  The authors fine-tuned theirs for 20 epochs on MSCOCO
(image -> text top-1 from 81.3 % to 95.2 %) and froze it; no code or data pipeline for that is in their repository.
Here, as the stand-ins never see cc2017-sim, the pairs come from the pretraining corpus
(:func:`~neuroclips_core.zoo.corpus.keyframe_batch`: a keyframe and its clip's caption), never from the dataset:

    image side   CLIP image tokens of the keyframe (:func:`~neuroclips_core.zoo.unclip_sampling.image_tokens`),
                 mean over tokens (C,), computed once (the projector only sees that mean)
    text side    the caption's unit-norm CLIP text embedding (D,)
                 (:func:`~neuroclips_core.semantics_targets.caption_embeddings`, the same as in SR training)
    loss         bidirectional InfoNCE at tau 0.1 (the official ``mixco_nce`` without mixing), trained by
                 :func:`~neuroclips_core.train.fit` (AdamW + OneCycle), the epoch kept by the loss on held-out pairs

Reported: image -> text top-1 on other held-out pairs, in batches of ``eval_batch`` (a hit when the best caption is
the keyframe's own caption text; :func:`~neuroclips_core.zoo.train.clip.retrieval_scores`), before (the random
start) and after.  The official projector starts from an unknown point; ours starts at N(0, 1/C).

The result is saved to ``runs/<profile>/cache/reftm/<clip>-<settings>.pt`` and reused by every subject and run with
the same CLIP and settings.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .models.losses import bimixco_nce
from .models.semantics import ReftmProjector
from .semantics_targets import caption_embeddings, clip_fingerprint
from .train import FitSettings, _atomic_save, fit
from .zoo import corpus
from .zoo.train.clip import retrieval_scores
from .zoo.unclip_sampling import image_tokens

#: corpus batch indices of the held-out pairs that are reported (the validation pairs start at index 0)
EVAL_FIRST_BATCH = 1000


@dataclass(frozen=True)
class ReftmPretrainConfig:
    """How the Reftm projector is pre-trained (all of it goes into the cache key).

    Attributes:
        n_pairs: training pairs (corpus ``"train"`` split).
        val_pairs: held-out pairs the kept epoch is chosen on (corpus ``"heldout"`` split, batches from 0).
        eval_pairs, eval_batch: held-out pairs reported before and after (batches from :data:`EVAL_FIRST_BATCH`),
            scored in batches of ``eval_batch`` (chance about 1 / eval_batch).
        epochs, batch_size, lr: optimisation (AdamW + OneCycle; the authors: 20 epochs).
        temperature: InfoNCE's tau (0.1, the official Reftm loss).
        seed: corpus stream and initial projector.
        chunk: pairs rendered and encoded at once.
    """

    n_pairs: int = 4096
    val_pairs: int = 512
    eval_pairs: int = 1000
    eval_batch: int = 100
    epochs: int = 20
    batch_size: int = 256
    lr: float = 1e-2
    temperature: float = 0.1
    seed: int = 0
    chunk: int = 256

    def __post_init__(self):
        if self.eval_pairs < self.eval_batch or self.eval_pairs % self.eval_batch:
            raise ValueError(f"ReftmPretrainConfig: eval_pairs ({self.eval_pairs}) must be a positive multiple of "
                             f"eval_batch ({self.eval_batch}): retrieval is scored in whole batches")
        if min(self.n_pairs, self.val_pairs, self.epochs, self.batch_size, self.chunk) < 1:
            raise ValueError(f"ReftmPretrainConfig: sizes must be >= 1, found {self}")

    @classmethod
    def quick(cls, **overrides) -> "ReftmPretrainConfig":
        """Tests and quick runs: 512 pairs, 8 epochs, 200 held-out pairs reported in batches of 100."""
        return cls(**{"n_pairs": 512, "val_pairs": 128, "eval_pairs": 200, "epochs": 8, "batch_size": 128,
                      **overrides})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def key(self) -> str:
        return hashlib.sha1(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:8]


@dataclass
class CorpusPairs:
    """Encoded (keyframe, caption) pairs: ``tokens`` float32 (n, 1, C) (mean image token), ``text`` float32
    (n, D) unit-norm, ``labels`` int64 (n,), ``captions`` n strings."""

    tokens: torch.Tensor
    text: torch.Tensor
    labels: torch.Tensor
    captions: list

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, i: int) -> dict:
        return {"tokens": self.tokens[i], "text": self.text[i]}


def corpus_pairs(clip, seed: int, split: str, n: int, first_batch: int = 0, chunk: int = 256) -> CorpusPairs:
    """``n`` corpus pairs of ``split`` from batch index ``first_batch`` on, through ``clip`` (:class:`CorpusPairs`)."""
    parts = []
    for k, a in enumerate(range(0, n, chunk)):
        b = corpus.keyframe_batch(seed, first_batch + k, min(chunk, n - a), split)
        mean_token = image_tokens(clip, b.images).mean(1, keepdim=True)
        parts.append((mean_token, torch.from_numpy(caption_embeddings(clip, b.captions)), b.labels, b.captions))
    tokens, text, labels, captions = zip(*parts)
    return CorpusPairs(torch.cat(tokens), torch.cat(text), torch.cat(labels), [c for cs in captions for c in cs])


@torch.no_grad()
def image_to_text_top1(projector: ReftmProjector, pairs: CorpusPairs, batch: int) -> float:
    """Image -> caption top-1 of ``projector`` on ``pairs``, in consecutive batches of ``batch`` pairs."""
    image = torch.nn.functional.normalize(projector.eval()(pairs.tokens).float(), dim=-1)
    return retrieval_scores(image, pairs.text, pairs.labels, pairs.captions, batch)["i2t_top1"]


def caption_chance(captions: list, batch: int) -> float:
    """Image -> text top-1 of a random retriever in consecutive batches of ``batch``: an item's own caption text
    may occur more than once in its batch, and any copy counts as a hit."""
    hits = [captions[a:a + batch].count(text) / batch for a in range(0, len(captions) - batch + 1, batch)
            for text in captions[a:a + batch]]
    return float(np.mean(hits))


@dataclass
class ReftmPretrainResult:
    """The frozen projector and what pre-training measured (image -> text top-1 before and after, its chance)."""

    projector: ReftmProjector
    path: Path
    before: float
    after: float
    chance: float
    config: dict
    reused: bool

    def summary(self) -> dict:
        """JSON-able: where it is, the settings and the retrieval before and after."""
        return {"path": str(self.path), "config": self.config, "i2t_top1_before": self.before,
                "i2t_top1_after": self.after, "chance": self.chance, "eval_batch": self.config["eval_batch"]}


def reftm_path(cache_dir: str | os.PathLike, clip_key: str, config: ReftmPretrainConfig) -> Path:
    return Path(cache_dir) / f"{clip_key[:16]}-{config.key()}.pt"


def _load(path: Path, reused: bool) -> ReftmPretrainResult:
    saved = torch.load(path, map_location="cpu", weights_only=False)
    proj = saved["proj"]
    projector = ReftmProjector(*proj.shape)
    projector.load_state_dict({"proj": proj})
    projector.requires_grad_(False).eval()
    return ReftmPretrainResult(projector, path, saved["before"], saved["after"], saved["chance"], saved["config"],
                               reused)


def pretrain_reftm(clip, cache_dir: str | os.PathLike, config: ReftmPretrainConfig | None = None, *,
                   clip_key: str | None = None, device="cpu", progress: bool = False,
                   retrain: bool = False) -> ReftmPretrainResult:
    """Pre-train (or reuse) the Reftm projector for ``clip`` (an :class:`~neuroclips_core.zoo.loaders.OpenClip`).

    The projector maps the mean of ``clip``'s image tokens (width C) to its text embedding (width D =
    ``model_cfg["embed_dim"]``).  Returns a :class:`ReftmPretrainResult` with the projector frozen, in eval mode,
    on the CPU.  ``clip_key``: :func:`~neuroclips_core.semantics_targets.clip_fingerprint` if already computed.
    """
    config = config or ReftmPretrainConfig()
    clip_key = clip_key or clip_fingerprint(clip)
    path = reftm_path(cache_dir, clip_key, config)
    if path.is_file() and not retrain:
        return _load(path, reused=True)
    c = config
    t0 = time.monotonic()
    train = corpus_pairs(clip, c.seed, "train", c.n_pairs, 0, c.chunk)
    val = corpus_pairs(clip, c.seed, "heldout", c.val_pairs, 0, c.chunk)
    report = corpus_pairs(clip, c.seed, "heldout", c.eval_pairs, EVAL_FIRST_BATCH, c.chunk)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(c.seed)
        projector = ReftmProjector(train.tokens.shape[-1], train.text.shape[-1])
    before = image_to_text_top1(projector, report, c.eval_batch)

    def loss_fn(model, batch, generator):
        return bimixco_nce(model(batch["tokens"]), batch["text"], c.temperature), {}

    work = path.with_suffix(".train")
    if retrain:
        shutil.rmtree(work, ignore_errors=True)
    settings = FitSettings(epochs=c.epochs, batch_size=c.batch_size, lr=c.lr, seed=c.seed)
    result = fit(projector, loss_fn, train, val, settings, work, identity={"reftm": c.to_dict(), "clip": clip_key},
                 device=device, progress=progress)
    projector = result.model.cpu()
    after = image_to_text_top1(projector, report, c.eval_batch)
    chance = caption_chance(report.captions, c.eval_batch)
    _atomic_save({"proj": projector.proj.detach().cpu(), "config": c.to_dict(), "clip": clip_key, "before": before,
                  "after": after, "chance": chance, "best_epoch": result.best_epoch,
                  "seconds": round(time.monotonic() - t0, 1)}, path)
    shutil.rmtree(work, ignore_errors=True)            # the training state is not needed once the result is saved
    return _load(path, reused=False)
