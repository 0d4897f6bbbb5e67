"""What the chapter drivers (:mod:`~neuroclips_core.perception_run`, :mod:`~neuroclips_core.semantics_run`) share.

- **Fingerprints** of what made an artifact: :func:`sha1_array` (an array, read in chunks), :func:`module_fingerprint`
  (a model's weights and config), :func:`store_fingerprint` (a processed store).
- **Encode-once caches**: :func:`cached_rows` runs an encoder (VAE latents, CLIP tokens, text embeddings) over rows of
  the stimuli once and keeps the result under ``runs/<profile>/cache/...``; the stimuli are the same for every
  subject, so the subjects of one dataset share it.
- **Run folders** reused only when their parameters match: :func:`start_run_dir`.
- **Splits and models** of a run: :func:`train_val_rows`, :func:`profile_role` (a zoo role of the run's profile).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .config import ConfigError, RunConfig
from .data.store import Store
from .pipelines.blurry import save_npy_atomic
from .train import write_json_atomic


# ============================================================================================ fingerprints
def sha1_array(a: np.ndarray, chunk_rows: int = 256) -> str:
    """sha1 of an array's dtype, shape and values, read ``chunk_rows`` rows at a time (memmaps and strided views
    are never copied whole)."""
    h = hashlib.sha1(f"{a.dtype}{a.shape}".encode())
    for s in range(0, len(a), chunk_rows):
        h.update(np.ascontiguousarray(a[s:s + chunk_rows]).data)
    return h.hexdigest()


def module_fingerprint(module: torch.nn.Module) -> str:
    """sha1 of a model's weights (and config, when it has one): which VAE made a set of latents."""
    h = hashlib.sha1()
    cfg = getattr(module, "config", None)
    if cfg is not None:
        # private entries (diffusers' "_use_default_values" is a list in set order, which changes from one Python
        # process to the next) would make the fingerprint, and so every reuse check, random
        items = dict(cfg) if isinstance(cfg, Mapping) else cfg.to_dict()   # diffusers' FrozenDict, transformers'
        public = {k: v for k, v in items.items() if not str(k).startswith("_")}
        h.update(json.dumps(public, sort_keys=True, default=str).encode())
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


def store_fingerprint(store: Store) -> str:
    """sha1 of the store's meta.json and voxel selection: a rebuilt or different store changes it."""
    h = hashlib.sha1((store.path / "meta.json").read_bytes())
    h.update(np.ascontiguousarray(store.voxel_indices).data)
    h.update(str(store.fmri_train.shape).encode())
    return h.hexdigest()


# ================================================================================================ caches
class RowView:
    """``items[rows]`` without the copy: what an encoder reads (``shape``, ``len``, slicing)."""

    def __init__(self, items: np.ndarray, rows: np.ndarray):
        self.items, self.rows = items, rows
        self.shape = (len(rows), *items.shape[1:])

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, sl: slice) -> np.ndarray:
        return np.asarray(self.items[self.rows[sl]])


def cached_rows(encode: Callable[[RowView], np.ndarray], items: np.ndarray, cache_dir: str | os.PathLike,
                model_key: str, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``encode`` of ``items`` at ``rows``, computed once and kept in ``cache_dir``.

    Args:
        encode: ``encode(view) -> (len(view), ...)`` array, where ``view`` (a :class:`RowView`) serves
            ``items[rows]`` in slices.
        items: (N, ...) what is encoded (frames, keyframes, captions as a str array); may be a memmap.
        cache_dir: where ``<model_key>-<items sha1[:16]>-<rows sha1[:8]>.npy`` goes.
        model_key: names the encoder (e.g. the first 16 characters of its :func:`module_fingerprint`).
        rows: the rows to encode (default all); sorted here.

    Returns:
        ``(encoded (len(rows), ...), rows sorted)``: read from the cache (memory-mapped) when the same encoder
        already encoded the same rows of the same items, else encoded and saved (atomically).
    """
    rows = np.arange(len(items)) if rows is None else np.sort(np.asarray(rows, np.int64))
    path = Path(cache_dir) / f"{model_key}-{sha1_array(items)[:16]}-{sha1_array(rows)[:8]}.npy"
    if path.is_file():
        return np.load(path, mmap_mode="r"), rows
    encoded = np.asarray(encode(RowView(items, rows)))
    save_npy_atomic(path, encoded)
    return encoded, rows


# =========================================================================================== run folders
def start_run_dir(out: Path, params: dict, summary: str, required: tuple[str, ...], retrain: bool = False,
                  evaluation: dict | None = None) -> bool:
    """Get ``out`` ready for a run made by ``params`` (a JSON-able dict); True when a finished one is there.

    Finished = ``out/summary`` (a JSON file) records the same ``params`` (and the same ``evaluation``, when given)
    and every file in ``required`` exists: reuse it.  Otherwise ``out`` is cleared, unless ``params.json`` says a
    run of the same parameters is there (its training state resumes, or is reused when finished), and
    ``params.json`` is (re)written.  ``retrain`` always clears.  ``evaluation``: settings that change only what is
    computed after training (e.g. the low-pass widths to choose from), so changing them re-evaluates, never retrains.
    """
    if not retrain and (out / summary).is_file():
        done = json.loads((out / summary).read_text())
        if (done.get("params") == params and (evaluation is None or done.get("evaluation") == evaluation)
                and all((out / name).is_file() for name in required)):
            return True
    if retrain or not same_params(out, params):
        shutil.rmtree(out, ignore_errors=True)          # another run's artifacts and training state
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "params.json", params)
    return False


@dataclass
class StepResult:
    """What a driver's ``train_*`` made: its ``folder``, the ``subject``, the ``summary`` JSON it wrote (the PR's
    metrics.json, the SR's retrieval.json), the training ``history`` and whether a finished run was ``reused``."""

    folder: Path
    subject: int
    summary: dict
    history: dict
    reused: bool

    @property
    def checkpoint(self) -> Path:
        return self.folder / "checkpoint.pt"

    def array(self, name: str) -> np.ndarray:
        """The array ``folder/name`` (a .npy the step wrote), memory-mapped."""
        return np.load(self.folder / name, mmap_mode="r")


class StepRecipe:
    """Mixin of a driver's frozen run config (fields ``size`` and ``repetition``, classmethods ``quick`` and
    ``paper``): the ``sim`` recipe is the class defaults, :meth:`for_config` picks the recipe of a run config."""

    def check_choices(self) -> None:
        """Raise a ValueError naming the field unless ``size`` and ``repetition`` are among their choices."""
        for key, allowed in (("size", ("sim", "paper")), ("repetition", ("random", "mean"))):
            if getattr(self, key) not in allowed:
                raise ValueError(f"{type(self).__name__}.{key} must be one of {allowed}, found {getattr(self, key)!r}")

    @classmethod
    def sim(cls, **overrides):
        """The default sim recipe (cc2017-sim default preset, CPU, a few minutes on 2 cores): the defaults."""
        return cls(**overrides)

    @classmethod
    def for_config(cls, cfg: RunConfig, **overrides):
        """The recipe a chapter run uses: ``quick()``, ``sim()`` or ``paper()`` by ``cfg``."""
        if cfg.quick:
            return cls.quick(**overrides)
        return cls.sim(**overrides) if cfg.profile == "sim" else cls.paper(**overrides)


def step_dir(cfg: RunConfig, subject: int | None, step: str) -> Path:
    """``run_root/<profile>/subjNN/<step>``: where a step's artifacts go (DESIGN.md §7)."""
    return cfg.run_root / cfg.profile / f"subj{(subject or cfg.subject):02d}" / step


def read_finished_run(folder: Path, summary: str, what: str, how: str) -> tuple[dict, dict]:
    """``(summary JSON, history.json or {})`` of a finished run in ``folder``; a FileNotFoundError saying ``what``
    is missing and ``how`` to make it when ``folder/summary`` is not there."""
    if not (folder / summary).is_file():
        raise FileNotFoundError(f"{folder}: no finished {what}; run {how} first")
    history = json.loads((folder / "history.json").read_text()) if (folder / "history.json").is_file() else {}
    return json.loads((folder / summary).read_text()), history


def same_params(out: Path, params: dict) -> bool:
    """Whether ``out/params.json`` holds ``params``."""
    path = out / "params.json"
    return path.is_file() and json.loads(path.read_text()) == params


def json_clean(obj):
    """NaN and infinities -> None (strict JSON; e.g. the motion correlation of a video that never moves)."""
    if isinstance(obj, dict):
        return {k: json_clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_clean(v) for v in obj]
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


# ====================================================================================== splits and models
def train_val_rows(store: Store, val_fraction: float, max_train: int | None = None,
                   max_val: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sorted store rows of the training and validation splits (:meth:`~.data.store.Store.train_val_split`),
    the first ``max_train`` / ``max_val`` of each (quick mode; what the drivers' datasets serve)."""
    train_idx, val_idx = store.train_val_split(val_fraction)
    return np.sort(train_idx[:max_train]), np.sort(val_idx[:max_val])


def store_with_frames(cfg: RunConfig, subject: int, store: Store | None, why: str, progress: bool = True) -> Store:
    """The subject's processed store (``store``, or :func:`~.data.ensure.ensure_store`'s), which must hold the
    clips' frames; the error says ``why`` the step needs them."""
    if store is None:
        from .data.ensure import ensure_store

        store = ensure_store(cfg, subject, progress=progress)
    if not store.has_frames:
        raise ConfigError(f"{store.path}: {why} but this store has none; prepare it with frames (python -m "
                          "neuroclips_core prepare without --no-frames)")
    return store


def profile_role(cfg: RunConfig, role: str, device=None):
    """Zoo ``role`` of ``cfg``'s profile: the shipped stand-in (sim) or ``weights.yml``'s entry (paper; the file is
    ``cfg.extra["weights"]`` or ``$NEUROCLIPS_WEIGHTS``)."""
    device = device or cfg.torch_device()
    if cfg.profile == "sim":
        from .zoo import load_standin

        return load_standin(role, device=device)
    weights = cfg.extra.get("weights") or os.environ.get("NEUROCLIPS_WEIGHTS")
    if not weights:
        raise ConfigError(f"the paper profile needs the real {role!r} weights: pass weights=<weights.yml> to "
                          "make_config or set NEUROCLIPS_WEIGHTS (see neuroclips_core/zoo/weights.example.yml)")
    from .zoo import load_weights_file

    return load_weights_file(weights).load(role, device=str(device))
