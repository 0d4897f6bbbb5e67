"""The authors' preprocessed release (Hugging Face dataset ``gongzx/cc2017_dataset``) -> processed store.

The release holds, per subject S, the already selected, detrended, z-scored and delay-paired responses and,
shared by all subjects, the 3 FPS ground-truth frames and BLIP-2 captions::

    subj0S_train_fmri.pt   (4320, 2, V)  float          subj0S_test_fmri.pt   (1200, 10, V) float
    GT_train_3fps.pt       (4320, 6, 3, 224, 224) float in [0, 1]
    GT_test_3fps.pt        (1200, 6, 3, H, W) float in [0, 1]
    GT_train_caption.pt, GT_test_caption.pt   numpy string arrays (4320,), (1200,)   (optional)

Big tensors are memory-mapped (``torch.load(mmap=True, weights_only=True)``) and copied into the store in
chunks, so importing never holds the 15 GB of training frames in memory.  Captions are numpy arrays pickled
inside the ``.pt``; they are unpickled with torch's weights-only unpickler allowing numpy array
reconstruction and nothing else.

What the release does not say: which of the 59412 cortical vertices its V columns are.  Unless an index
file is given, ``voxel_indices.npy`` is filled with -1 and ``meta.json`` has ``"voxel_indices_known":
false`` (flat maps are then unavailable).  Nor does it say which segment a clip came from; clips are in
segment order, so the store treats contiguous blocks of 240 clips as segments.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .layout import FRAMES_PER_CLIP, N_CORTEX, TEST_REPETITIONS, TRAIN_REPETITIONS
from .store import STORE_FORMAT, STORE_VERSION, StoreWriter, check_replaceable
from .video import resize_frames

RELEASE_SOURCE = "the Hugging Face dataset gongzx/cc2017_dataset"
_CHUNK_CLIPS = 32  # clips copied per chunk: 32 x 6 x 3 x 224 x 224 float32 = 115 MB


class ReleaseError(ValueError):
    """A file of the preprocessed release is missing, unreadable or has the wrong shape."""


def release_files(subject: int) -> dict[str, str]:
    """File names of the release for ``subject``: role -> name."""
    return {"train_fmri": f"subj0{subject}_train_fmri.pt", "test_fmri": f"subj0{subject}_test_fmri.pt",
            "train_frames": "GT_train_3fps.pt", "test_frames": "GT_test_3fps.pt",
            "train_captions": "GT_train_caption.pt", "test_captions": "GT_test_caption.pt"}


def _load_tensor(path: Path):
    import torch

    if not path.is_file():
        raise ReleaseError(f"{path}: missing; expected {path.name} from {RELEASE_SOURCE}. Download it into "
                           f"{path.parent}")
    try:
        obj = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except Exception as exc:
        raise ReleaseError(f"{path}: cannot be loaded as a tensor with torch.load(mmap=True, weights_only=True) "
                           f"({type(exc).__name__}: {exc}); expected a tensor saved with torch.save. Re-download "
                           f"it from {RELEASE_SOURCE}") from exc
    if not isinstance(obj, torch.Tensor):
        raise ReleaseError(f"{path}: expected a tensor, found {type(obj).__name__}")
    return obj


def _numpy_safe_globals() -> list:
    """The globals a pickled numpy array needs (numpy 1.x and 2.x module paths), and nothing else."""
    from numpy._core.multiarray import _reconstruct

    return [np.ndarray, np.dtype, np.dtypes.StrDType, np.dtypes.BytesDType, np.dtypes.ObjectDType,
            (_reconstruct, "numpy._core.multiarray._reconstruct"),
            (_reconstruct, "numpy.core.multiarray._reconstruct")]


def load_captions(path: Path, n: int) -> list[str]:
    """Captions saved as a numpy string array (or a list) with ``torch.save`` -> list of ``n`` str."""
    import torch

    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ReleaseError(f"{path}: not a caption array loadable without arbitrary unpickling "
                           f"({type(exc).__name__}: {str(exc)[:300]}); expected a numpy string array of {n} "
                           f"captions saved with torch.save. Re-download it from {RELEASE_SOURCE}") from exc
    arr = np.asarray(obj)
    if arr.size != n or arr.dtype.kind not in "USO":
        raise ReleaseError(f"{path}: expected {n} captions (a string array), found {arr.dtype} {arr.shape}")
    return [c.decode("utf-8") if isinstance(c, bytes) else str(c) for c in arr.reshape(-1)]


def _check_shape(path: Path, tensor, expected: tuple, what: str) -> None:
    """``expected`` holds ints or None (any size); raise ReleaseError naming file, expected and found."""
    found = tuple(tensor.shape)
    if len(found) != len(expected) or any(e is not None and e != f for e, f in zip(expected, found)):
        exp = "(" + ", ".join("*" if e is None else str(e) for e in expected) + ")"
        raise ReleaseError(f"{path}: expected {what} of shape {exp}, found {found}")


def _voxel_indices(voxel_indices, v: int) -> tuple[np.ndarray, bool, str | None]:
    if voxel_indices is None:
        return np.full(v, -1, np.int64), False, None
    source = str(voxel_indices) if isinstance(voxel_indices, (str, Path)) else "array"
    try:
        idx = np.load(voxel_indices) if isinstance(voxel_indices, (str, Path)) else np.asarray(voxel_indices)
    except Exception as exc:
        raise ReleaseError(f"{voxel_indices}: cannot load voxel indices ({exc}); expected a .npy of {v} ints") from exc
    if idx.shape != (v,) or not np.issubdtype(idx.dtype, np.integer):
        raise ReleaseError(f"{source}: expected {v} integer vertex indices (one per release column), found "
                           f"{idx.dtype} {idx.shape}")
    if idx.min() < 0 or idx.max() >= N_CORTEX or len(np.unique(idx)) != v:
        raise ReleaseError(f"{source}: expected {v} distinct indices in 0..{N_CORTEX - 1}, found range "
                           f"[{idx.min()}, {idx.max()}] with {len(np.unique(idx))} distinct")
    return idx.astype(np.int64), True, source


def _frames_to_uint8(chunk) -> np.ndarray:
    """(B, 6, 3, H, W) tensor, float in [0, 1] (or uint8) -> uint8 (B, 6, H, W, 3)."""
    import torch

    if chunk.dtype == torch.uint8:
        arr = chunk.numpy()
    else:
        arr = np.rint(chunk.float().clamp_(0.0, 1.0).numpy() * 255.0).astype(np.uint8)
    return arr.transpose(0, 1, 3, 4, 2)


def import_release(release_dir: str | Path, subject: int, out: str | Path, frame_size: int | None = None,
                   voxel_indices: str | Path | np.ndarray | None = None, progress: bool = False) -> Path:
    """Convert the authors' preprocessed release for ``subject`` into a processed store at ``out``.

    Args:
        release_dir: folder holding the ``.pt`` files listed in the module docstring.
        frame_size: stored frame side (frames are resized with antialiasing); default 224.
        voxel_indices: optional ``.npy`` path (or array) of the V vertex indices (into the 59412) of the
            release's columns; without it ``voxel_indices.npy`` is all -1 and meta says they are unknown.

    Raises :class:`ReleaseError` naming the file, expected and found shape, on any missing file or mismatch.
    Returns ``out``.
    """
    from tqdm.auto import tqdm

    from .. import __version__

    release_dir = Path(release_dir)
    check_replaceable(out)
    names = release_files(subject)
    paths = {k: release_dir / n for k, n in names.items()}
    ftr, fte = _load_tensor(paths["train_fmri"]), _load_tensor(paths["test_fmri"])
    _check_shape(paths["train_fmri"], ftr, (None, TRAIN_REPETITIONS, None), "training fMRI (N_train, 2, V)")
    _check_shape(paths["test_fmri"], fte, (None, TEST_REPETITIONS, ftr.shape[2]),
                 f"test fMRI (N_test, 10, V) with the V={ftr.shape[2]} of {names['train_fmri']}")
    n_train, n_test, v = ftr.shape[0], fte.shape[0], ftr.shape[2]
    gtr, gte = _load_tensor(paths["train_frames"]), _load_tensor(paths["test_frames"])
    _check_shape(paths["train_frames"], gtr, (n_train, FRAMES_PER_CLIP, 3, None, None),
                 f"training frames (N_train={n_train} as in {names['train_fmri']}, 6, 3, H, W)")
    _check_shape(paths["test_frames"], gte, (n_test, FRAMES_PER_CLIP, 3, None, None),
                 f"test frames (N_test={n_test} as in {names['test_fmri']}, 6, 3, H, W)")
    captions = {}
    for split, n in (("train", n_train), ("test", n_test)):
        p = paths[f"{split}_captions"]
        captions[split] = load_captions(p, n) if p.is_file() else [None] * n
    idx, known, idx_source = _voxel_indices(voxel_indices, v)
    size = int(frame_size or 224)

    bar = tqdm(total=2 * (n_train + n_test), desc=f"import release subject {subject}", unit="clip",
               disable=not progress)
    with StoreWriter(out) as w:
        w.save_array("voxel_indices.npy", idx)
        for name, src, reps in (("fmri_train.npy", ftr, TRAIN_REPETITIONS), ("fmri_test.npy", fte, TEST_REPETITIONS)):
            dst = w.create_array(name, (src.shape[0], reps, v), np.float32)
            for a in range(0, src.shape[0], _CHUNK_CLIPS):
                chunk = src[a:a + _CHUNK_CLIPS]
                dst.write(a, chunk.float().numpy())
                bar.update(len(chunk))
        for name, src in (("frames_train.npy", gtr), ("frames_test.npy", gte)):
            dst = w.create_array(name, (src.shape[0], FRAMES_PER_CLIP, size, size, 3), np.uint8)
            for a in range(0, src.shape[0], _CHUNK_CLIPS):
                chunk = src[a:a + _CHUNK_CLIPS]
                dst.write(a, resize_frames(_frames_to_uint8(chunk), size))
                bar.update(len(chunk))
        w.write_json("captions_train.json", captions["train"])
        w.write_json("captions_test.json", captions["test"])
        w.write_json("meta.json", {
            "format": STORE_FORMAT, "store_version": STORE_VERSION, "library_version": __version__,
            "source": "release", "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "subject": int(subject), "release_dir": str(release_dir.absolute()), "release_origin": RELEASE_SOURCE,
            "release_files": {k: n for k, n in names.items() if paths[k].is_file()},
            "dataset": "real", "n_train": int(n_train), "n_test": int(n_test), "n_voxels": int(v),
            "train_repetitions": TRAIN_REPETITIONS, "test_repetitions": TEST_REPETITIONS,
            "train_clip_ranges": None, "segments_known": False,
            "segments_note": "the release does not name the segment of each clip; clips are in segment order, so "
                             "contiguous blocks of 240 clips are treated as segments",
            "voxel_indices_known": known, "voxel_indices_source": idx_source,
            "voxel_indices_note": None if known else "the release does not say which of the 59412 cortical "
                                  "vertices its columns are; voxel_indices.npy is all -1",
            "delay_trs": None, "delay_note": "baked into the release by the authors' preprocessing (4 s per the paper)",
            "with_frames": True, "frame_size": size, "frames_per_clip": FRAMES_PER_CLIP, "frame_offsets": None,
            "source_frame_size": {"train": list(gtr.shape[3:]), "test": list(gte.shape[3:])},
            "has_labels": False,
            "captions": ("BLIP-2 captions of frame 2 from the release" if paths["train_captions"].is_file()
                         else "pending, produced by the captioner role (chapter 03)"),
        })
    bar.close()
    return Path(out)
