"""neuroclips_core.data.release: the authors' .pt release -> store, on tiny fake files."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from neuroclips_core.data.release import ReleaseError, import_release
from neuroclips_core.data.store import ClipDataset, Store
from neuroclips_core.data.video import resize_frames

N_TRAIN, N_TEST, V = 480, 240, 50


class Evil:
    """Unpickling this would run code; the caption loader must refuse it."""

    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('x')",))


def write_release(d, subject=1, n_train=N_TRAIN, n_test=N_TEST, v=V, v_test=None, train_hw=16, test_hw=20,
                  n_frames=6, captions=True):
    g = torch.Generator().manual_seed(0)
    d.mkdir(parents=True, exist_ok=True)
    t = {"train_fmri": torch.randn(n_train, 2, v, generator=g),
         "test_fmri": torch.randn(n_test, 10, v if v_test is None else v_test, generator=g),
         "train_frames": torch.rand(n_train, n_frames, 3, train_hw, train_hw, generator=g),
         "test_frames": torch.rand(n_test, 6, 3, test_hw, test_hw, generator=g)}
    torch.save(t["train_fmri"], d / f"subj0{subject}_train_fmri.pt")
    torch.save(t["test_fmri"], d / f"subj0{subject}_test_fmri.pt")
    torch.save(t["train_frames"], d / "GT_train_3fps.pt")
    torch.save(t["test_frames"], d / "GT_test_3fps.pt")
    if captions:
        torch.save(np.array([f"a scene {i}" for i in range(n_train)]), d / "GT_train_caption.pt")
        torch.save(np.array([f"test scene {i}" for i in range(n_test)]), d / "GT_test_caption.pt")
    return t


def test_import_round_trips(tmp_path):
    t = write_release(tmp_path / "rel")
    out = import_release(tmp_path / "rel", 1, tmp_path / "store", frame_size=16)
    s = Store.open(out)
    assert (s.n_train, s.n_test, s.n_voxels) == (N_TRAIN, N_TEST, V)
    np.testing.assert_array_equal(s.fmri_train, t["train_fmri"].numpy())
    np.testing.assert_array_equal(s.fmri_test, t["test_fmri"].numpy())
    # train frames already 16 px: exact quantisation of [0, 1] floats, channels moved last
    expected = np.rint(t["train_frames"].numpy() * 255).astype(np.uint8).transpose(0, 1, 3, 4, 2)
    np.testing.assert_array_equal(s.frames_train, expected)
    # test frames 20 px -> 16 px through the shared antialiased resize
    q = np.rint(t["test_frames"].numpy() * 255).astype(np.uint8).transpose(0, 1, 3, 4, 2)
    np.testing.assert_array_equal(s.frames_test, resize_frames(q, 16))
    assert s.captions_train[7] == "a scene 7" and s.captions_test[-1] == f"test scene {N_TEST - 1}"
    assert not s.voxel_indices_known and (s.voxel_indices == -1).all() and len(s.voxel_indices) == V
    assert s.meta["source"] == "release" and s.meta["voxel_indices_known"] is False
    assert s.labels_train is None
    tr, va = s.train_val_split(0.1)                      # no segment names: 240-clip blocks
    np.testing.assert_array_equal(va, np.arange(240, 480))
    item = ClipDataset(s, "test")[3]
    torch.testing.assert_close(item["fmri"], t["test_fmri"][3].mean(0))


def test_import_with_voxel_indices_and_without_captions(tmp_path):
    write_release(tmp_path / "rel", subject=2, captions=False)
    idx = np.arange(V) * 1000 + 5
    np.save(tmp_path / "idx.npy", idx)
    s = Store.open(import_release(tmp_path / "rel", 2, tmp_path / "store", frame_size=8,
                                  voxel_indices=tmp_path / "idx.npy"))
    np.testing.assert_array_equal(s.voxel_indices, idx)
    assert s.voxel_indices_known and s.frames_train.shape == (N_TRAIN, 6, 8, 8, 3)
    assert s.captions_train == [None] * N_TRAIN and "pending" in s.meta["captions"]


def test_bad_voxel_indices(tmp_path):
    write_release(tmp_path / "rel")
    np.save(tmp_path / "idx.npy", np.arange(V) + 59400)
    with pytest.raises(ReleaseError, match=r"idx\.npy: expected 50 distinct indices in 0\.\.59411"):
        import_release(tmp_path / "rel", 1, tmp_path / "store", voxel_indices=tmp_path / "idx.npy")
    np.save(tmp_path / "short.npy", np.arange(V - 1))
    with pytest.raises(ReleaseError, match=r"short\.npy: expected 50 integer vertex indices.*\(49,\)"):
        import_release(tmp_path / "rel", 1, tmp_path / "store", voxel_indices=tmp_path / "short.npy")
    assert not (tmp_path / "store").exists()


def test_mismatched_voxel_counts(tmp_path):
    write_release(tmp_path / "rel", v_test=49)
    with pytest.raises(ReleaseError, match=r"subj01_test_fmri\.pt: expected .*\(\*, 10, 50\), found \(240, 10, 49\)"):
        import_release(tmp_path / "rel", 1, tmp_path / "store")
    assert not (tmp_path / "store").exists()


def test_mismatched_frame_count_and_frames_per_clip(tmp_path):
    write_release(tmp_path / "rel", n_frames=5)
    with pytest.raises(ReleaseError,
                       match=r"GT_train_3fps\.pt: expected .*\(480, 6, 3, \*, \*\), found \(480, 5, 3, 16, 16\)"):
        import_release(tmp_path / "rel", 1, tmp_path / "store")
    torch.save(torch.rand(100, 6, 3, 16, 16), tmp_path / "rel" / "GT_train_3fps.pt")
    with pytest.raises(ReleaseError, match=r"GT_train_3fps\.pt: expected .*N_train=480.*found \(100, 6, 3, 16, 16\)"):
        import_release(tmp_path / "rel", 1, tmp_path / "store")


def test_wrong_repetition_axis(tmp_path):
    write_release(tmp_path / "rel")
    torch.save(torch.zeros(N_TRAIN, 3, V), tmp_path / "rel" / "subj01_train_fmri.pt")
    with pytest.raises(ReleaseError, match=r"subj01_train_fmri\.pt: expected .*\(\*, 2, \*\), found \(480, 3, 50\)"):
        import_release(tmp_path / "rel", 1, tmp_path / "store")


def test_missing_file_says_where_it_comes_from(tmp_path):
    write_release(tmp_path / "rel")
    (tmp_path / "rel" / "GT_test_3fps.pt").unlink()
    with pytest.raises(ReleaseError, match=r"GT_test_3fps\.pt: missing.*gongzx/cc2017_dataset"):
        import_release(tmp_path / "rel", 1, tmp_path / "store")
    with pytest.raises(ReleaseError, match=r"subj03_train_fmri\.pt: missing"):
        import_release(tmp_path / "rel", 3, tmp_path / "store")


def test_not_a_tensor(tmp_path):
    write_release(tmp_path / "rel")
    torch.save({"x": torch.zeros(3)}, tmp_path / "rel" / "subj01_train_fmri.pt")
    with pytest.raises(ReleaseError, match=r"subj01_train_fmri\.pt: expected a tensor, found dict"):
        import_release(tmp_path / "rel", 1, tmp_path / "store")


def test_caption_file_with_arbitrary_pickle_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_release(tmp_path / "rel")
    torch.save(Evil(), tmp_path / "rel" / "GT_test_caption.pt")
    with pytest.raises(ReleaseError, match=r"GT_test_caption\.pt: not a caption array"):
        import_release(tmp_path / "rel", 1, tmp_path / "store")
    assert not (tmp_path / "PWNED").exists()
    torch.save(np.array(["only one"]), tmp_path / "rel" / "GT_test_caption.pt")
    with pytest.raises(ReleaseError, match=r"GT_test_caption\.pt: expected 240 captions.*\(1,\)"):
        import_release(tmp_path / "rel", 1, tmp_path / "store")


def test_meta_is_json_with_release_facts(tmp_path):
    write_release(tmp_path / "rel")
    out = import_release(tmp_path / "rel", 1, tmp_path / "store", frame_size=16)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["source_frame_size"] == {"train": [16, 16], "test": [20, 20]}
    assert meta["release_files"]["train_fmri"] == "subj01_train_fmri.pt"
    assert meta["segments_known"] is False and meta["n_voxels"] == V


@pytest.mark.parametrize("saved", [np.array(["x", "yy"], dtype=object), np.array([b"x", b"yy"]), ["x", "yy"]])
def test_caption_formats(tmp_path, saved):
    from neuroclips_core.data.release import load_captions

    torch.save(saved, tmp_path / "c.pt")
    assert load_captions(tmp_path / "c.pt", 2) == ["x", "yy"]
