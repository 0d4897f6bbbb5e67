"""neuroclips_core.data.store: writing atomically, validating on open, splitting, and serving to torch."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from neuroclips_core.data.store import STORE_FORMAT, ClipDataset, Store, StoreError, StoreWriter, clip_ranges

V, H = 8, 8


def make_store(out, n_seg=5, n_test_seg=1, frames=True, labels=True, ranges=True, seed=0):
    """A small consistent store; fMRI value encodes (clip, repetition, voxel) for exact checks."""
    rng = np.random.default_rng(seed)
    train = [f"seg{i + 1}" for i in range(n_seg)]
    test = [f"test{i + 1}" for i in range(n_test_seg)]
    n_train, n_test = 240 * n_seg, 240 * n_test_seg
    with StoreWriter(out) as w:
        w.save_array("voxel_indices.npy", np.arange(V) * 7)
        for name, n, reps in (("fmri_train.npy", n_train, 2), ("fmri_test.npy", n_test, 10)):
            arr = w.create_array(name, (n, reps, V), np.float32)
            clip, rep, vox = np.meshgrid(np.arange(n), np.arange(reps), np.arange(V), indexing="ij")
            arr.write(0, (clip * 100 + rep * 10 + vox * 0.1).astype(np.float32))
        if frames:
            for name, n in (("frames_train.npy", n_train), ("frames_test.npy", n_test)):
                arr = w.create_array(name, (n, 6, H, H, 3), np.uint8)
                arr.write(0, rng.integers(0, 256, (n, 6, H, H, 3)).astype(np.uint8))
        if labels:
            w.save_array("labels_train.npy", np.arange(n_train) % 11)
            w.save_array("labels_test.npy", np.arange(n_test) % 13)
        w.write_json("captions_train.json", [f"c{i}" for i in range(n_train)])
        w.write_json("captions_test.json", [None] * n_test)
        w.write_json("meta.json", {"format": STORE_FORMAT, "n_train": n_train, "n_test": n_test,
                                   "with_frames": frames, "has_labels": labels,
                                   "train_clip_ranges": clip_ranges(train) if ranges else None,
                                   "test_clip_ranges": clip_ranges(test)})
    return Store.open(out)


# ------------------------------------------------------------------------------------------------ writer
def test_writer_commits_complete_store(tmp_path):
    s = make_store(tmp_path / "store")
    assert s.n_voxels == V and s.n_train == 1200 and s.n_test == 240
    assert isinstance(s.fmri_train, np.memmap) and not s.fmri_train.flags.writeable
    assert s.fmri_train[5, 1, 3] == pytest.approx(5 * 100 + 10 + 0.3)
    assert s.frames_train.shape == (1200, 6, H, H, 3) and s.labels_test[14] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["store"]          # no temp folder left


def test_writer_exception_leaves_no_store_and_no_temp(tmp_path):
    with pytest.raises(RuntimeError):
        with StoreWriter(tmp_path / "store") as w:
            w.create_array("fmri_train.npy", (10, 2, 3), np.float32).write(0, np.zeros((5, 2, 3)))
            raise RuntimeError("crash mid-write")
    assert list(tmp_path.iterdir()) == []


def test_writer_refuses_incomplete_arrays(tmp_path):
    with pytest.raises(StoreError, match=r"fmri_train\.npy: 5 of 10 rows never written"):
        with StoreWriter(tmp_path / "store") as w:
            w.create_array("fmri_train.npy", (10, 2, 3), np.float32).write(0, np.zeros((5, 2, 3)))
            w.write_json("meta.json", {"format": STORE_FORMAT})
    assert list(tmp_path.iterdir()) == []


def test_writer_replaces_old_store_only_on_success(tmp_path):
    out = tmp_path / "store"
    make_store(out, n_seg=2)
    with pytest.raises(RuntimeError):
        with StoreWriter(out) as w:
            w.write_json("meta.json", {"format": STORE_FORMAT})
            raise RuntimeError("crash")
    assert Store.open(out).n_train == 480                             # old store intact
    make_store(out, n_seg=3)
    assert Store.open(out).n_train == 720                             # replaced
    assert [p.name for p in tmp_path.iterdir()] == ["store"]


def test_writer_refuses_to_replace_a_folder_that_is_not_a_store(tmp_path):
    precious = tmp_path / "data"
    precious.mkdir()
    (precious / "thesis.tex").write_text("x")
    with pytest.raises(StoreError, match=r"data exists and is not a processed store"):
        StoreWriter(precious)
    assert (precious / "thesis.tex").exists()


def test_array_file_rejects_blocks_that_do_not_fit(tmp_path):
    with StoreWriter(tmp_path / "s") as w:
        arr = w.create_array("a.npy", (4, 3), np.float32)
        with pytest.raises(ValueError, match="does not fit"):
            arr.write(3, np.zeros((2, 3)))
        arr[0:4] = np.arange(12).reshape(4, 3)
        w.write_json("meta.json", {"format": STORE_FORMAT})
    np.testing.assert_array_equal(np.load(tmp_path / "s" / "a.npy"), np.arange(12).reshape(4, 3))


# ---------------------------------------------------------------------------------------------- validation
def test_open_missing_folder_and_meta(tmp_path):
    with pytest.raises(StoreError, match=r"nowhere.*re-create it with .*prepare"):
        Store.open(tmp_path / "nowhere")
    (tmp_path / "half").mkdir()
    with pytest.raises(StoreError, match=r"half/meta\.json: missing"):
        Store.open(tmp_path / "half")


def test_open_missing_file_named(tmp_path):
    make_store(tmp_path / "s")
    (tmp_path / "s" / "frames_test.npy").unlink()
    with pytest.raises(StoreError, match=r"frames_test\.npy: missing from the store.*prepare"):
        Store.open(tmp_path / "s")


def test_open_inconsistent_shapes_named(tmp_path):
    make_store(tmp_path / "s")
    np.save(tmp_path / "s" / "fmri_test.npy", np.zeros((240, 10, V - 1), np.float32))
    with pytest.raises(StoreError,
                       match=r"fmri_test\.npy: expected float32 \(N_test, 10, 8\), found float32 \(240, 10, 7\)"):
        Store.open(tmp_path / "s")
    make_store(tmp_path / "t")
    (tmp_path / "t" / "captions_train.json").write_text(json.dumps(["x"] * 5))
    with pytest.raises(StoreError, match=r"captions_train\.json: expected a list of 1200 captions"):
        Store.open(tmp_path / "t")


def test_fmri_only_store(tmp_path):
    s = make_store(tmp_path / "s", frames=False, labels=False)
    assert not s.has_frames and s.frames_train is None and not s.has_labels
    with pytest.raises(StoreError, match="no frames"):
        ClipDataset(s, "train")
    item = ClipDataset(s, "train", with_frames=False)[0]
    assert "frames" not in item and item["label"] == -1


# --------------------------------------------------------------------------------------------------- split
@pytest.mark.parametrize("frac,n_val", [(0.1, 1), (0.3, 2), (0.5, 3), (0.99, 4)])
def test_train_val_split_whole_segments(tmp_path, frac, n_val):
    s = make_store(tmp_path / "s", n_seg=5, frames=False)
    tr, va = s.train_val_split(frac)
    seg = s.segment_of_train_clip
    assert len(va) == 240 * n_val and len(tr) + len(va) == s.n_train
    assert not set(tr) & set(va)
    assert not set(seg[tr]) & set(seg[va])                           # no segment on both sides
    assert set(seg[va]) == {f"seg{i}" for i in range(6 - n_val, 6)}  # the last segments
    assert va.max() < s.n_train                                       # indices into training clips only


def test_split_without_segment_info_uses_240_blocks(tmp_path):
    s = make_store(tmp_path / "s", n_seg=3, frames=False, ranges=False)
    assert list(np.unique(s.segment_of_train_clip)) == ["block1", "block2", "block3"]
    tr, va = s.train_val_split(0.1)
    np.testing.assert_array_equal(va, np.arange(480, 720))


def test_split_needs_two_segments(tmp_path):
    s = make_store(tmp_path / "s", n_seg=1, frames=False)
    with pytest.raises(StoreError, match="at least 2"):
        s.train_val_split()
    with pytest.raises(ValueError):
        make_store(tmp_path / "t", n_seg=2, frames=False).train_val_split(1.0)


# ------------------------------------------------------------------------------------------------- dataset
def test_clip_dataset_items(tmp_path):
    s = make_store(tmp_path / "s", n_seg=5)
    ds = ClipDataset(s, "train", repetition=1)
    assert len(ds) == 960
    item = ds[3]
    assert item["index"] == 3 and item["label"] == 3
    assert item["fmri"].dtype == torch.float32 and item["fmri"].shape == (V,)
    torch.testing.assert_close(item["fmri"], torch.tensor(s.fmri_train[3, 1]))
    fr = item["frames"]
    assert fr.shape == (6, 3, H, H) and fr.dtype == torch.float32 and 0 <= fr.min() and fr.max() <= 1
    torch.testing.assert_close(fr, torch.tensor(s.frames_train[3]).permute(0, 3, 1, 2).float() / 255)

    val = ClipDataset(s, "val")
    assert val.repetition == "mean" and val[0]["index"] == 960
    torch.testing.assert_close(val[0]["fmri"], torch.tensor(s.fmri_train[960].mean(0)))

    test = ClipDataset(s, "test")
    assert len(test) == 240 and test.repetition == "mean"
    t0 = test[7]
    assert t0["label"] == 7 and t0["index"] == 7
    torch.testing.assert_close(t0["fmri"], torch.tensor(s.fmri_test[7].mean(0)))   # mean of the 10 repetitions


def test_random_repetition_is_reproducible_and_varies(tmp_path):
    s = make_store(tmp_path / "s", n_seg=2, frames=False)
    ds = ClipDataset(s, "train", with_frames=False, seed=3)

    def reps(d):
        return [int(round(float(d[i]["fmri"][0]) - 100 * d[i]["index"])) // 10 for i in range(200)]

    first = reps(ds)
    assert set(first) == {0, 1}                                            # both repetitions drawn
    assert reps(ClipDataset(s, "train", with_frames=False, seed=3)) == first  # same seed, same draws
    ds.set_epoch(1)
    assert reps(ds) != first


def test_dataset_rejects_bad_arguments(tmp_path):
    s = make_store(tmp_path / "s", n_seg=2, frames=False)
    with pytest.raises(ValueError, match="split"):
        ClipDataset(s, "validation", with_frames=False)
    with pytest.raises(ValueError, match="out of range"):
        ClipDataset(s, "train", repetition=2, with_frames=False)
    assert ClipDataset(s, "test", repetition=9, with_frames=False)[0]["fmri"][0] == pytest.approx(90)


def test_dataset_pickles_without_arrays_and_loads_in_batches(tmp_path):
    make_store(tmp_path / "s", n_seg=2)
    ds = ClipDataset(tmp_path / "s", "train")
    assert len(pickle.dumps(ds)) < 50_000          # memmaps are not copied into worker pickles
    clone = pickle.loads(pickle.dumps(ds))
    torch.testing.assert_close(clone[5]["frames"], ds[5]["frames"])
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["fmri"].shape == (4, V) and batch["frames"].shape == (4, 6, 3, H, H)
    assert batch["index"].tolist() == [0, 1, 2, 3]
