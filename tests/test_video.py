"""neuroclips_core.data.video: which frames a clip keeps, resizing, and every way a stimulus file can be bad."""
from __future__ import annotations

import numpy as np
import pytest

from neuroclips_core.data.video import VideoError, VideoWriter, read_clip_frames, resize_frames, write_video


def _indexed_frames(n_clips: int, size: int = 16) -> np.ndarray:
    """Frame i of clip k: left half grey 60*k, right half grey 4*(i % 60); coarse levels survive H.264."""
    frames = np.zeros((n_clips * 60, size, size, 3), np.uint8)
    for i in range(n_clips * 60):
        k, off = divmod(i, 60)
        frames[i, :, : size // 2] = 60 * k
        frames[i, :, size // 2:] = 4 * off
    return frames


def _decode_index(frame: np.ndarray) -> tuple[int, int]:
    h, w, _ = frame.shape
    left = frame[2:-2, 2: w // 2 - 2].mean()
    right = frame[2:-2, w // 2 + 2: -2].mean()
    return int(round(left / 60)), int(round(right / 4))


def test_read_clip_frames_keeps_frame_60k_plus_offset(tmp_path):
    path = write_video(tmp_path / "seg.mp4", _indexed_frames(3), crf=0)
    frames = read_clip_frames(path, n_clips=3)
    assert frames.shape == (3, 6, 16, 16, 3) and frames.dtype == np.uint8
    for k in range(3):
        for j, off in enumerate((5, 15, 25, 35, 45, 55)):
            assert _decode_index(frames[k, j]) == (k, off)


def test_read_clip_frames_custom_offsets_and_extra_frames_ignored(tmp_path):
    path = write_video(tmp_path / "seg.mp4", _indexed_frames(3), crf=0)
    frames = read_clip_frames(path, n_clips=2, offsets=(0, 59))   # 180 frames present, 120 needed
    assert frames.shape == (2, 2, 16, 16, 3)
    assert [_decode_index(frames[k, j]) for k in range(2) for j in range(2)] == [(0, 0), (0, 59), (1, 0), (1, 59)]
    with pytest.raises(ValueError, match="offsets"):
        read_clip_frames(path, n_clips=1, offsets=(60,))


def test_read_clip_frames_resizes_with_antialiasing(tmp_path):
    # a 1-pixel checkerboard averages to mid-grey when shrunk with antialiasing (point sampling keeps 0/255)
    board = ((np.indices((32, 32)).sum(0) % 2) * 255).astype(np.uint8)
    frames = np.repeat(np.repeat(board[None, :, :, None], 3, axis=3), 60, axis=0)
    path = write_video(tmp_path / "board.mp4", frames, crf=0)
    small = read_clip_frames(path, n_clips=1, size=8)
    assert small.shape == (1, 6, 8, 8, 3)
    assert abs(small.astype(float).mean() - 127.5) < 20 and small.std() < 20


def test_resize_frames_centre_crops_non_square():
    frames = np.zeros((2, 8, 16, 3), np.uint8)
    frames[:, :, 4:12] = 200            # the central 8x8 square is bright, the sides dark
    out = resize_frames(frames, 4)
    assert out.shape == (2, 4, 4, 3)
    assert out.min() > 190              # only the centre square survives the crop
    assert resize_frames(out, 4) is out  # already the requested size: untouched


def test_missing_video(tmp_path):
    with pytest.raises(VideoError, match=r"seg9\.mp4.*not found.*30 FPS"):
        read_clip_frames(tmp_path / "seg9.mp4")


def test_corrupt_video_random_bytes(tmp_path):
    path = tmp_path / "seg1.mp4"
    path.write_bytes(np.random.default_rng(0).bytes(20000))
    with pytest.raises(VideoError, match=r"seg1\.mp4.*not a decodable video.*expected an mp4"):
        read_clip_frames(path, n_clips=2)


def test_truncated_video_too_few_frames(tmp_path):
    path = write_video(tmp_path / "short.mp4", _indexed_frames(2))   # 120 frames, 3 clips asked
    with pytest.raises(VideoError, match=r"short\.mp4.*truncated.*found 120 frames, expected at least 180"):
        read_clip_frames(path, n_clips=3)


def test_truncated_video_cut_bytes(tmp_path):
    good = write_video(tmp_path / "good.mp4", _indexed_frames(2))
    cut = tmp_path / "cut.mp4"
    data = good.read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(VideoError, match=r"cut\.mp4"):
        read_clip_frames(cut, n_clips=2)


def test_wrong_frame_rate(tmp_path):
    path = write_video(tmp_path / "pal.mp4", _indexed_frames(2), fps=25)
    with pytest.raises(VideoError, match=r"pal\.mp4.*expected 30 FPS.*found 25 FPS"):
        read_clip_frames(path, n_clips=1)


def test_writer_is_atomic_and_streams(tmp_path):
    path = tmp_path / "out.mp4"
    frames = _indexed_frames(2)
    with VideoWriter(path, fps=30, size=16, crf=0) as w:
        for a in range(0, len(frames), 7):            # uneven batches, single frames allowed
            w.write(frames[a:a + 7])
        assert not path.exists()                      # nothing under the real name before a clean exit
    assert w.n_frames == 120
    assert _decode_index(read_clip_frames(path, n_clips=2)[1, 2]) == (1, 25)
    before = path.read_bytes()
    with pytest.raises(RuntimeError):
        with VideoWriter(path, fps=30, size=16) as w:
            w.write(frames[:10])
            raise RuntimeError("simulated crash")
    assert path.read_bytes() == before                # old file intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]   # temp file removed


def test_writer_rejects_odd_sizes_and_wrong_dtype(tmp_path):
    with pytest.raises(ValueError, match="even"):
        VideoWriter(tmp_path / "odd.mp4", size=(15, 16))
    with pytest.raises(ValueError, match="even"):
        write_video(tmp_path / "odd.mp4", np.zeros((2, 15, 16, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "f.mp4", np.zeros((2, 16, 16, 3), np.float32))
    assert not any(tmp_path.iterdir())
