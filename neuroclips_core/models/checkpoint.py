"""Checkpoints of per-subject fMRI decoders: atomic writes, and loads that refuse another subject's voxel count.

A decoder's first layer is indexed by one subject's selected voxels, so a checkpoint records its voxel count
and loading it for data with another count is an error that names both counts and says what to do, never a
shape error deep inside ``load_state_dict``.  On disk a checkpoint is one ``torch.save`` dict::

    {"format": kind.format, "version": kind.version, "config": {...}, "n_voxels": V, "state_dict": {...},
     "meta": {...}}           meta: free keywords of the caller (subject, best epoch, scores, ...)
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn


class CheckpointError(ValueError):
    """A checkpoint is missing, of another kind, or made for another subject's voxel count."""


@dataclass(frozen=True)
class CheckpointKind:
    """What a checkpoint holds and how to talk about it in errors.

    Attributes:
        format: the ``"format"`` tag written into the file and required on load.
        version: the layout version written into the file.
        model_name: the model's name in messages ("Perception Reconstructor").
        short_name: its abbreviation in messages ("PR").
        train_hint: how to make one, ending in a call the user can run ("...train_perception(cfg)").
        error: the exception class raised (a :class:`CheckpointError`).
    """

    format: str
    version: int
    model_name: str
    short_name: str
    train_hint: str
    error: type = CheckpointError


def save_checkpoint(kind: CheckpointKind, path: str | os.PathLike, model: nn.Module, config: dict, n_voxels: int,
                    meta: dict) -> Path:
    """Write ``model``'s weights with its ``config`` (a dict) to ``path`` atomically (temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save({"format": kind.format, "version": kind.version, "config": config, "n_voxels": int(n_voxels),
                "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "meta": meta}, tmp)
    os.replace(tmp, path)
    return path


def read_checkpoint(kind: CheckpointKind, path: str | os.PathLike, n_voxels: int | None = None,
                    subject: int | None = None) -> dict:
    """The checkpoint dict at ``path``, after checking its kind and (if ``n_voxels`` is given) its voxel count.

    ``subject`` only names the subject in the voxel-count error.  Raises ``kind.error``.
    """
    path = Path(path)
    if not path.is_file():
        raise kind.error(f"{path}: no {kind.model_name} checkpoint there; train one with {kind.train_hint}")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(ckpt, dict) or ckpt.get("format") != kind.format:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise kind.error(f"{path}: expected a {kind.format!r} checkpoint, found {found!r}")
    found_v = int(ckpt["n_voxels"])
    if n_voxels is not None and int(n_voxels) != found_v:
        who = f"subject {subject}" if subject is not None else "the data given"
        made = ckpt.get("meta", {}).get("subject")
        raise kind.error(
            f"{path}: this {kind.model_name} was trained for {found_v} voxels"
            f"{f' (subject {made})' if made is not None else ''}, but {who} has {int(n_voxels)} selected voxels. "
            f"A {kind.short_name} reads one subject's voxel selection and cannot be moved to another: load the "
            f"checkpoint of {who} or train one for it ({kind.train_hint} with subject={subject if subject else 'N'}).")
    return ckpt


class Checkpointed:
    """Mixin of a per-subject decoder (an ``nn.Module`` whose ``config`` has ``n_voxels`` and ``to_dict()``, its
    class ``from_dict()``): :meth:`save` and :meth:`load`.  A subclass sets ``checkpoint_kind`` and
    ``config_class``."""

    checkpoint_kind: ClassVar[CheckpointKind]
    config_class: ClassVar[type]

    def save(self, path: str | os.PathLike, **meta) -> Path:
        """Write ``{format, version, config, n_voxels, state_dict, meta}`` to ``path`` atomically."""
        return save_checkpoint(self.checkpoint_kind, path, self, self.config.to_dict(), self.config.n_voxels, meta)

    @classmethod
    def load(cls, path: str | os.PathLike, n_voxels: int | None = None, device: str | torch.device = "cpu",
             subject: int | None = None):
        """Load a checkpoint written by :meth:`save` -> (model in eval mode on ``device``, meta).

        Args:
            n_voxels: the voxel count of the subject the model will read; a checkpoint made for another count
                raises ``checkpoint_kind.error`` naming both counts (the model's first layer is indexed by one
                subject's selected voxels).
            subject: only to name the subject in that error.
        """
        ckpt = read_checkpoint(cls.checkpoint_kind, path, n_voxels=n_voxels, subject=subject)
        model = cls(cls.config_class.from_dict(ckpt["config"]))
        model.load_state_dict(ckpt["state_dict"])
        return model.to(device).eval(), ckpt.get("meta", {})
