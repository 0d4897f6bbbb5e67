"""The processed store (DESIGN.md §7): what chapter 01 writes and every later chapter reads.

One folder per subject, file names fixed (N clips, V selected voxels, H x W pixels)::

    voxel_indices.npy   int64 (V,)               indices into the 59412 cortical vertices (-1: unknown, release)
    fmri_train.npy      float32 (N_train, 2, V)  detrended, z-scored, delay-paired responses, both repetitions
    fmri_test.npy       float32 (N_test, 10, V)
    frames_train.npy    uint8 (N_train, 6, H, W, 3)   3 FPS frames of each 2 s clip (absent in fMRI-only stores)
    frames_test.npy     uint8 (N_test, 6, H, W, 3)
    captions_train.json, captions_test.json           lists of N strings (or null while not yet captioned)
    labels_train.npy, labels_test.npy                 int64 (N,) class per clip (cc2017-sim only)
    meta.json                                         how it was made (see prepare.py / release.py)

:class:`StoreWriter` builds a store in a temp folder beside the target and renames it into place only when
every array is complete; :class:`Store` opens one read-only (memory-mapped) and checks it is consistent;
:class:`ClipDataset` serves it to torch.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from pathlib import Path

import numpy as np

from .layout import CLIPS_PER_RUN, FRAMES_PER_CLIP, TEST_REPETITIONS, TRAIN_REPETITIONS

STORE_FORMAT = "neuroclips_core.store"
STORE_VERSION = 1
_REDO = ("re-create it with `python -m neuroclips_core prepare ...` (raw cc2017 layout) or "
         "`python -m neuroclips_core import-release ...` (the authors' preprocessed .pt files)")


class StoreError(ValueError):
    """A processed store is missing, incomplete or inconsistent."""


# ================================================================================================ writing
class ArrayFile:
    """A ``.npy`` file being filled block by block along its first axis.

    Blocks are written through ordinary file writes at computed offsets rather than through a memmap:
    dirty memmap pages count in the writer's resident memory until unmapped, plain writes do not, so a
    multi-GB store is written with only one block in memory.  Rows written are tracked so the store is
    committed only when every row has been filled.
    """

    def __init__(self, path: Path, shape: tuple[int, ...], dtype):
        self.path, self.shape, self.dtype = Path(path), tuple(int(s) for s in shape), np.dtype(dtype)
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": self.shape}
        self._file = open(self.path, "wb+")
        np.lib.format.write_array_header_2_0(self._file, header)
        self.offset = self._file.tell()
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        self._file.truncate(self.offset + self.row_bytes * self.shape[0])  # sparse until written
        self._written = np.zeros(self.shape[0], bool)

    def write(self, start: int, block: np.ndarray) -> None:
        """Write ``block`` (n, *shape[1:]) into rows ``start .. start+n-1`` (cast to the file's dtype)."""
        block = np.asarray(block)
        if block.shape[1:] != self.shape[1:] or start < 0 or start + len(block) > self.shape[0]:
            raise ValueError(f"{self.path.name}: block of shape {block.shape} at row {start} does not fit an "
                             f"array of shape {self.shape}")
        self._file.seek(self.offset + start * self.row_bytes)
        self._file.write(np.ascontiguousarray(block, dtype=self.dtype).data)
        self._written[start:start + len(block)] = True

    def __setitem__(self, rows: slice, block: np.ndarray) -> None:
        start, stop, step = rows.indices(self.shape[0])
        if step != 1 or stop - start != len(block):
            raise ValueError(f"{self.path.name}: only contiguous row slices of matching length can be written")
        self.write(start, block)

    @property
    def complete(self) -> bool:
        return bool(self._written.all())

    def missing_rows(self) -> np.ndarray:
        return np.flatnonzero(~self._written)

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


class StoreWriter:
    """Builds a store in ``.<name>.tmp-*`` beside ``out``; :meth:`commit` renames it to ``out``.

    Use as a context manager: a clean exit commits, an exception removes the temp folder and leaves any
    existing ``out`` untouched.  An existing ``out`` is replaced only if it is a store (has ``meta.json``) or
    an empty folder, so a mistyped ``--out`` never deletes unrelated data.
    """

    def __init__(self, out: str | Path):
        self.out = Path(out).absolute()
        check_replaceable(self.out)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.out.parent / f".{self.out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.tmp.mkdir()
        self._arrays: dict[str, ArrayFile] = {}
        self.committed = False

    def create_array(self, name: str, shape: tuple[int, ...], dtype) -> ArrayFile:
        """A ``name`` .npy of ``shape``/``dtype`` to be filled with :meth:`ArrayFile.write`."""
        arr = ArrayFile(self.tmp / name, shape, dtype)
        self._arrays[name] = arr
        return arr

    def save_array(self, name: str, array: np.ndarray) -> None:
        """Save a small array whole."""
        np.save(self.tmp / name, np.asarray(array), allow_pickle=False)

    def write_json(self, name: str, obj) -> None:
        with open(self.tmp / name, "w") as f:
            json.dump(obj, f, indent=1, default=_json_default)

    def commit(self) -> Path:
        """Check every array is complete, then move the folder to ``out`` (replacing an old store)."""
        for name, arr in self._arrays.items():
            arr.close()
            if not arr.complete:
                missing = arr.missing_rows()
                raise StoreError(f"{name}: {len(missing)} of {arr.shape[0]} rows never written (first {missing[0]});"
                                 " the store is incomplete and was not committed")
        if not (self.tmp / "meta.json").is_file():
            raise StoreError(f"{self.tmp}: meta.json was never written; the store was not committed")
        check_replaceable(self.out)
        if self.out.exists():
            # two renames: the old store is moved aside (still recoverable) before the new one takes its name
            old = self.out.parent / f".{self.out.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            os.rename(self.out, old)
            os.rename(self.tmp, self.out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(self.tmp, self.out)
        self.committed = True
        return self.out

    def abort(self) -> None:
        for arr in self._arrays.values():
            arr.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
            return
        try:
            self.commit()
        except BaseException:
            self.abort()
            raise


def check_replaceable(out: str | Path) -> None:
    """Raise :class:`StoreError` unless ``out`` is absent, an empty folder or a store (safe to replace)."""
    out = Path(out)
    if out.exists() and not (out.is_dir() and ((out / "meta.json").is_file() or not any(out.iterdir()))):
        raise StoreError(f"{out} exists and is not a processed store (no meta.json, not empty); refusing to "
                         "replace it. Choose another --out, or delete it yourself if it is disposable")


def _json_default(obj):
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def clip_ranges(segments: list[str], clips_per_segment: int = CLIPS_PER_RUN) -> dict[str, list[int]]:
    """``{segment: [first_clip, stop_clip)}`` for segments stored back to back in this order."""
    return {s: [i * clips_per_segment, (i + 1) * clips_per_segment] for i, s in enumerate(segments)}


# ================================================================================================ reading
class Store:
    """A processed store opened read-only; arrays are memory-mapped, so opening costs no memory.

    Attributes: ``path``, ``meta`` (dict), ``voxel_indices`` (V,), ``fmri_train`` (N_train, 2, V),
    ``fmri_test`` (N_test, 10, V), ``frames_train``/``frames_test`` (N, 6, H, W, 3) uint8 or ``None`` in an
    fMRI-only store, ``captions_train``/``captions_test`` (lists), ``labels_train``/``labels_test`` (N,)
    int64 or ``None`` (real data).
    """

    def __init__(self, path: Path, meta: dict, arrays: dict, captions: dict):
        self.path, self.meta = path, meta
        self.voxel_indices = arrays["voxel_indices"]
        self.fmri_train, self.fmri_test = arrays["fmri_train"], arrays["fmri_test"]
        self.frames_train, self.frames_test = arrays.get("frames_train"), arrays.get("frames_test")
        self.labels_train, self.labels_test = arrays.get("labels_train"), arrays.get("labels_test")
        self.captions_train, self.captions_test = captions["train"], captions["test"]

    # ------------------------------------------------------------------------------------------- open
    @classmethod
    def open(cls, path: str | Path) -> "Store":
        """Open and validate a store; raises :class:`StoreError` naming the bad file and the fix."""
        path = Path(path)
        if not path.is_dir():
            raise StoreError(f"{path}: no processed store here (folder missing); {_REDO}")
        meta_path = path / "meta.json"
        if not meta_path.is_file():
            raise StoreError(f"{meta_path}: missing, so {path} is not a complete processed store; {_REDO}")
        try:
            meta = json.loads(meta_path.read_text())
        except ValueError as exc:
            raise StoreError(f"{meta_path}: not valid JSON ({exc}); {_REDO}") from None
        if meta.get("format") != STORE_FORMAT:
            raise StoreError(f"{meta_path}: expected format {STORE_FORMAT!r}, found {meta.get('format')!r}; {_REDO}")

        def load(name, required=True):
            f = path / name
            if not f.is_file():
                if required:
                    raise StoreError(f"{f}: missing from the store; {_REDO}")
                return None
            try:
                return np.load(f, mmap_mode="r", allow_pickle=False)
            except Exception as exc:
                raise StoreError(f"{f}: unreadable ({type(exc).__name__}: {exc}); {_REDO}") from None

        with_frames, has_labels = bool(meta.get("with_frames", True)), bool(meta.get("has_labels", False))
        arrays = {n: load(n + ".npy") for n in ("voxel_indices", "fmri_train", "fmri_test")}
        for n in ("frames_train", "frames_test"):
            arrays[n] = load(n + ".npy", required=with_frames)
        for n in ("labels_train", "labels_test"):
            arrays[n] = load(n + ".npy", required=has_labels)
        captions = {}
        for split in ("train", "test"):
            f = path / f"captions_{split}.json"
            if not f.is_file():
                raise StoreError(f"{f}: missing from the store; {_REDO}")
            captions[split] = json.loads(f.read_text())
        _validate(path, meta, arrays, captions)
        return cls(path, meta, arrays, captions)

    # ----------------------------------------------------------------------------------------- views
    @property
    def n_voxels(self) -> int:
        return int(self.fmri_train.shape[2])

    @property
    def n_train(self) -> int:
        return int(self.fmri_train.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.fmri_test.shape[0])

    @property
    def has_frames(self) -> bool:
        return self.frames_train is not None

    @property
    def has_labels(self) -> bool:
        return self.labels_train is not None

    @property
    def voxel_indices_known(self) -> bool:
        return bool(self.meta.get("voxel_indices_known", True))

    @property
    def train_segments(self) -> list[str]:
        return list(self._train_ranges())

    def _train_ranges(self) -> dict[str, list[int]]:
        ranges = self.meta.get("train_clip_ranges")
        if ranges:
            return ranges
        # no segment information: treat contiguous blocks of 240 clips (one 8-min segment each) as segments
        n_blocks = math.ceil(self.n_train / CLIPS_PER_RUN)
        return {f"block{b + 1}": [b * CLIPS_PER_RUN, min((b + 1) * CLIPS_PER_RUN, self.n_train)]
                for b in range(n_blocks)}

    @property
    def segment_of_train_clip(self) -> np.ndarray:
        """str array (N_train,): the training segment (or 240-clip block) each training clip comes from."""
        out = np.empty(self.n_train, dtype=object)
        for name, (a, b) in self._train_ranges().items():
            out[a:b] = name
        return out.astype(str)

    def train_val_split(self, val_fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
        """Split the training clips into (train_idx, val_idx), by whole segments, never touching the test set.

        Validation takes the last ``ceil(val_fraction * n_segments)`` training segments (at least one, at
        most all but one).  Whole segments, because neighbouring clips share slow hemodynamic signal: a
        validation clip whose neighbour was trained on would flatter the model.
        """
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1); got {val_fraction}")
        ranges = self._train_ranges()
        names = list(ranges)
        if len(names) < 2:
            raise StoreError(f"{self.path}: only {len(names)} training segment(s); a whole-segment validation "
                             "split needs at least 2. Use more training segments (or no validation split)")
        n_val = min(max(1, math.ceil(val_fraction * len(names) - 1e-9)), len(names) - 1)
        def idx(segs):
            return np.concatenate([np.arange(*ranges[s]) for s in segs]).astype(np.int64)
        return idx(names[:-n_val]), idx(names[-n_val:])

    def __repr__(self) -> str:
        frames = "x".join(map(str, self.frames_train.shape[2:4])) if self.has_frames else "none"
        return (f"Store({self.path}, V={self.n_voxels}, train={self.n_train}, test={self.n_test}, "
                f"frames={frames}, labels={self.has_labels})")


def _validate(path: Path, meta: dict, a: dict, captions: dict) -> None:
    def fail(name, expected, found):
        raise StoreError(f"{path / name}: expected {expected}, found {found}; {_REDO}")

    vi, tr, te = a["voxel_indices"], a["fmri_train"], a["fmri_test"]
    if vi.ndim != 1 or not np.issubdtype(vi.dtype, np.integer):
        fail("voxel_indices.npy", "an integer array (V,)", f"{vi.dtype} {vi.shape}")
    v = len(vi)
    if tr.ndim != 3 or tr.shape[1:] != (TRAIN_REPETITIONS, v) or tr.dtype != np.float32:
        fail("fmri_train.npy", f"float32 (N_train, {TRAIN_REPETITIONS}, {v})", f"{tr.dtype} {tr.shape}")
    if te.ndim != 3 or te.shape[1:] != (TEST_REPETITIONS, v) or te.dtype != np.float32:
        fail("fmri_test.npy", f"float32 (N_test, {TEST_REPETITIONS}, {v})", f"{te.dtype} {te.shape}")
    n = {"train": tr.shape[0], "test": te.shape[0]}
    for split in ("train", "test"):
        if f"n_{split}" in meta and meta[f"n_{split}"] != n[split]:
            fail(f"fmri_{split}.npy", f"{meta[f'n_{split}']} clips (meta.json)", f"{n[split]}")
        fr = a.get(f"frames_{split}")
        if fr is not None:
            ok = fr.ndim == 5 and fr.shape[0] == n[split] and fr.shape[1] == FRAMES_PER_CLIP and fr.shape[4] == 3
            if not ok or fr.dtype != np.uint8:
                fail(f"frames_{split}.npy", f"uint8 ({n[split]}, {FRAMES_PER_CLIP}, H, W, 3)", f"{fr.dtype} {fr.shape}")
        lab = a.get(f"labels_{split}")
        if lab is not None and (lab.shape != (n[split],) or not np.issubdtype(lab.dtype, np.integer)):
            fail(f"labels_{split}.npy", f"integer ({n[split]},)", f"{lab.dtype} {lab.shape}")
        cap = captions[split]
        if not isinstance(cap, list) or len(cap) != n[split]:
            fail(f"captions_{split}.json", f"a list of {n[split]} captions",
                 f"{type(cap).__name__} of length {len(cap) if hasattr(cap, '__len__') else '?'}")
    if a.get("frames_train") is not None and a["frames_train"].shape[2:] != a["frames_test"].shape[2:]:
        fail("frames_test.npy", f"the frame size of frames_train.npy {a['frames_train'].shape[2:4]}",
             f"{a['frames_test'].shape[2:4]}")


# ================================================================================================== torch
def _torch_dataset_base():
    try:
        from torch.utils.data import Dataset
    except ImportError:  # pragma: no cover - torch is a hard dependency of the package
        return object
    return Dataset


class ClipDataset(_torch_dataset_base()):
    """One item per clip of a store split, as torch tensors.

    Args:
        store: a :class:`Store` or the path of one.
        split: ``"train"`` / ``"val"`` (whole training segments, see :meth:`Store.train_val_split`) or
            ``"test"``.
        repetition: ``"random"`` (one repetition drawn per item, reproducibly from ``seed``, the epoch set
            with :meth:`set_epoch`, and the clip index), ``"mean"`` (average of the repetitions, as the
            official code does for the 10 test repetitions) or an int (that repetition, 0-based).
            Default: ``"random"`` for train, ``"mean"`` for val and test.
        with_frames: also return the clip's frames.
        val_fraction: passed to :meth:`Store.train_val_split`.

    Items: ``{"fmri": float32 (V,), "frames": float32 (6, 3, H, W) in [0, 1], "label": int (-1 if the store
    has no labels), "index": int}`` where ``index`` is the clip's row in ``fmri_train``/``fmri_test``.
    """

    def __init__(self, store, split: str = "train", repetition: str | int | None = None, with_frames: bool = True,
                 seed: int = 0, val_fraction: float = 0.1):
        store = store if isinstance(store, Store) else Store.open(store)
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test'; got {split!r}")
        if repetition is None:
            repetition = "random" if split == "train" else "mean"
        n_rep = TEST_REPETITIONS if split == "test" else TRAIN_REPETITIONS
        if isinstance(repetition, str) and repetition not in ("random", "mean"):
            raise ValueError(f"repetition must be 'random', 'mean' or an int; got {repetition!r}")
        if not isinstance(repetition, str) and not 0 <= int(repetition) < n_rep:
            raise ValueError(f"repetition {repetition} out of range for the {split} split ({n_rep} repetitions)")
        if with_frames and not store.has_frames:
            raise StoreError(f"{store.path}: this store has no frames (prepared with with_frames=False); "
                             "use with_frames=False or re-run prepare with frames")
        self.store_path, self.split, self.repetition = store.path, split, repetition
        self.with_frames, self.seed, self.epoch = with_frames, int(seed), 0
        if split == "test":
            self.indices = np.arange(store.n_test, dtype=np.int64)
        else:
            train_idx, val_idx = store.train_val_split(val_fraction)
            self.indices = train_idx if split == "train" else val_idx
        self._store = store

    def set_epoch(self, epoch: int) -> None:
        """Change which repetition ``"random"`` draws (call once per epoch)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.indices)

    def __getstate__(self):
        # memmaps would be pickled as full in-memory copies for spawned DataLoader workers; reopen instead
        state = self.__dict__.copy()
        state["_store"] = None
        return state

    def __getitem__(self, i: int) -> dict:
        import torch

        if self._store is None:
            self._store = Store.open(self.store_path)
        s = self._store
        idx = int(self.indices[i])
        fmri_all = s.fmri_test if self.split == "test" else s.fmri_train
        labels = s.labels_test if self.split == "test" else s.labels_train
        if self.repetition == "mean":
            fmri = np.asarray(fmri_all[idx], dtype=np.float32).mean(axis=0)
        else:
            if self.repetition == "random":
                rep = int(np.random.default_rng([self.seed, self.epoch, idx]).integers(fmri_all.shape[1]))
            else:
                rep = int(self.repetition)
            fmri = np.array(fmri_all[idx, rep], dtype=np.float32)
        item = {"fmri": torch.from_numpy(fmri),
                "label": int(labels[idx]) if labels is not None else -1,
                "index": idx}
        if self.with_frames:
            frames = (s.frames_test if self.split == "test" else s.frames_train)[idx]  # (6, H, W, 3) uint8
            item["frames"] = torch.from_numpy(np.ascontiguousarray(frames.transpose(0, 3, 1, 2))).float() / 255.0
        return item
