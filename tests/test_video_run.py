"""Chapter 04's driver (:mod:`neuroclips_core.video_run`): its scores on known videos (the truth itself, shuffled
clips, frozen frames) with tiny random judges, the seeds and folders of its variants, the side-by-side GIFs, and
the errors it gives when chapters 02 and 03 have not run.  The whole driver runs end to end on the shipped
stand-ins in the quick run of chapter 04 (tests/test_book.py)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from neuroclips_core.config import make_config
from neuroclips_core.metrics_semantic import aligned_frame_indices
from neuroclips_core.video_run import (VARIANTS, clip_seeds, generate_across_processes, generation_config,
                                       inference_dir, reconstruct_videos, score_videos, write_gifs)
from neuroclips_core.zoo import corpus, tiny

torch.set_num_threads(1)
N = 10


@pytest.fixture(scope="module")
def truth_and_videos():
    """uint8 ground truth (N, 6, 64, 64, 3) (6 frames of held-out corpus clips) and 16-frame videos whose aligned
    frames (0, 3, ..., 15) are exactly those 6, the frames between them their neighbours' copies."""
    clips = corpus.heldout_clips(0, N).clips                                # (N, 16, 3, 64, 64) in [0, 1]
    full = np.round(clips.permute(0, 1, 3, 4, 2).numpy() * 255).astype(np.uint8)
    idx = aligned_frame_indices(16, 6)
    truth = full[:, idx]
    videos = truth[:, np.minimum(np.arange(16) // 3, 5)]
    assert np.array_equal(videos[:, idx], truth)
    return truth, videos


@pytest.fixture(scope="module")
def judges():
    return dict(frame_classifier=tiny.tiny_frame_classifier(seed=0), video_classifier=tiny.tiny_video_classifier(
        seed=0), clip=tiny.tiny_clip(seed=0))


def test_the_truth_scores_at_the_top(truth_and_videos, judges):
    truth, videos = truth_and_videos
    s = score_videos(videos, truth, **judges, seed=0)
    assert s["ssim_s2"]["mean"] == pytest.approx(1.0) and s["ssim_s1"]["mean"] == pytest.approx(1.0)
    assert s["pixcorr"]["mean"] == pytest.approx(1.0)
    for key in ("frame_2way", "frame_50way", "video_2way", "video_50way"):
        assert s[key]["mean"] == 1.0, key             # identical inputs: the ground truth's top-3 outrank all
    assert s["frame_50way"]["chance"] == pytest.approx(3 / 52)
    assert s["n_clips"] == N and s["alignment"] == "anchors"
    assert set(s["per_clip"]) == {"ssim_s2", "psnr", "frame_50way", "video_50way", "clip_pcc"}
    assert all(len(v) == N for v in s["per_clip"].values())
    assert s["clip_similarity_to_truth"]["mean"] == pytest.approx(1.0, abs=1e-5)
    # CLIP-pcc on all 16 frames counts the repeated frames (cosine 1), so it is above the 6-frame one
    assert s["clip_pcc_adjacent"]["mean"] > s["clip_pcc_aligned"]["mean"]


def test_shuffled_and_frozen_videos_lose(truth_and_videos, judges):
    truth, videos = truth_and_videos
    perfect = score_videos(videos, truth, **judges, seed=0)
    shuffled = score_videos(np.roll(videos, 1, axis=0), truth, **judges, seed=0)
    assert shuffled["ssim_s2"]["mean"] < perfect["ssim_s2"]["mean"] - 0.1
    assert shuffled["clip_similarity_to_truth"]["mean"] < 0.999
    frozen = np.repeat(videos[:, :1], 16, axis=1)                           # frame 0 held: no motion at all
    s = score_videos(frozen, truth, **judges, seed=0)
    assert s["clip_pcc_adjacent"]["mean"] == pytest.approx(1.0, abs=1e-5)  # the smoothest video is a still one
    assert s["ssim_s2"]["mean"] < perfect["ssim_s2"]["mean"]


def test_videos_of_another_size_are_resized_and_bad_shapes_refused(truth_and_videos, judges):
    truth, videos = truth_and_videos
    big = np.repeat(np.repeat(videos, 2, axis=2), 2, axis=3)               # 128 px, the same content
    s = score_videos(big, truth, **judges, seed=0)
    assert s["ssim_s2"]["mean"] > 0.9
    with pytest.raises(ValueError, match=r"same N"):
        score_videos(videos[:3], truth, **judges)


def test_clip_seeds_depend_on_the_clip_and_the_run_seed_only():
    a = clip_seeds(0, 8)
    assert a[:5] == clip_seeds(0, 5) and len(set(a)) == 8 and all(s >= 0 for s in a)
    assert a != clip_seeds(1, 8)


def test_variants_folders_and_generation_config(tmp_path):
    cfg = make_config(profile="sim", subject=2, quick=False, run_root=tmp_path / "runs", data_root=tmp_path / "d")
    assert inference_dir(cfg) == tmp_path / "runs" / "sim" / "subj02" / "inference" / "full"
    assert inference_dir(cfg, 3, "no_blurry").parts[-3:] == ("subj03", "inference", "no_blurry")
    with pytest.raises(ValueError, match=r"expected one of full, no_keyframe, no_blurry, fmri_caption"):
        inference_dir(cfg, variant="no_caption")
    assert set(VARIANTS) == {"full", "no_keyframe", "no_blurry", "fmri_caption"}
    assert not VARIANTS["no_keyframe"].use_keyframe and not VARIANTS["no_blurry"].use_blurry
    sim = generation_config(cfg)
    assert (sim.height, sim.num_frames, sim.theta, sim.alpha_mode) == (64, 16, 0.3, "paper")
    quick = generation_config(make_config(profile="sim", quick=True, run_root=tmp_path / "r", data_root=tmp_path))
    assert quick.num_inference_steps < sim.num_inference_steps


class _FakeState:
    """accelerate's PartialState for process ``rank`` of ``size``, the others' parts already written (as they would
    be when ``wait_for_everyone`` returns)."""

    def __init__(self, rank, size, n, parts_dir, generate):
        import contextlib

        self.num_processes, self.process_index, self.is_main_process = size, rank, rank == 0
        self._shares = np.array_split(np.arange(n), size)
        self._others = [(k, generate(self._shares[k])) for k in range(size) if k != rank]
        self._parts_dir = parts_dir
        self.split_between_processes = lambda items: contextlib.nullcontext(list(self._shares[rank]))

    def wait_for_everyone(self):
        for k, part in self._others:
            np.save(self._parts_dir / f"rank{k}.npy", part)


def test_clips_split_across_processes_come_back_in_order(tmp_path):
    def generate(idx):                         # a video whose pixels say which clip it is
        return np.broadcast_to(np.asarray(idx, np.uint8)[:, None, None, None, None], (len(idx), 2, 1, 1, 3)).copy()

    whole = generate_across_processes(generate, 7, tmp_path, state=_FakeState(0, 1, 7, tmp_path, generate))
    assert whole[:, 0, 0, 0, 0].tolist() == list(range(7))
    main = generate_across_processes(generate, 7, tmp_path, state=_FakeState(0, 3, 7, tmp_path, generate))
    assert main[:, 0, 0, 0, 0].tolist() == list(range(7))
    assert not list(tmp_path.glob("rank*.npy"))                              # the parts are cleaned up
    other = generate_across_processes(generate, 7, tmp_path, state=_FakeState(2, 3, 7, tmp_path, generate))
    assert other is None


def test_gifs_show_four_panels(truth_and_videos, tmp_path):
    from PIL import Image

    truth, videos = truth_and_videos
    paths = write_gifs(tmp_path / "gifs", truth[:2], videos[:2], truth[:2, 0], videos[:2], scale=1)
    assert [p.name for p in paths] == ["clip_0000.gif", "clip_0001.gif"]
    with Image.open(paths[0]) as im:
        assert im.size[0] == 4 * 64 + 3 * 2
        # 16 frames at 8 FPS: 2 s (PIL merges repeated frames into longer ones, so count time, not frames)
        total = 0
        for k in range(im.n_frames):
            im.seek(k)
            total += im.info["duration"]
        assert total == pytest.approx(2000, abs=60)       # GIF delays are whole 10 ms


def test_missing_chapters_are_named(tmp_path):
    cfg = make_config(profile="sim", subject=1, quick=True, run_root=tmp_path / "runs", data_root=tmp_path / "d")
    with pytest.raises(FileNotFoundError, match=r"chapter 02"):
        reconstruct_videos(cfg, progress=False)


def test_n_test_clips_takes_all_the_first_n_or_the_quick_subset():
    from neuroclips_core.config import make_config
    from neuroclips_core.video_run import QUICK_TEST_CLIPS, n_test_clips

    full, quick = make_config(quick=False), make_config(quick=True)
    assert n_test_clips(full, 240) == 240 and n_test_clips(quick, 240) == QUICK_TEST_CLIPS
    assert n_test_clips(quick, 10) == 10                       # never more than the store has
    assert n_test_clips(full, 240, 50) == 50 and n_test_clips(full, 240, 500) == 240
    with pytest.raises(ValueError, match="positive number of test clips"):
        n_test_clips(full, 240, 0)


def test_no_keyframe_prompts_with_the_papers_generic_text(tmp_path):
    """Paper §6: without the keyframe its caption goes too, and every clip is prompted 'a smooth video'."""
    import json

    from neuroclips_core.config import make_config
    from neuroclips_core.video_run import GENERIC_PROMPT, VARIANTS, prompts_for

    cfg = make_config(run_root=tmp_path, data_root=tmp_path / "data")
    folder = tmp_path / "sim" / "subj01" / "semantics"
    folder.mkdir(parents=True)
    (folder / "retrieval.json").write_text(json.dumps({"n_test": 3}))
    (folder / "captions_test.json").write_text(json.dumps(["a", "b", "c"]))
    never = lambda: pytest.fail("the captioner is not needed")                        # noqa: E731
    assert prompts_for(cfg, 1, VARIANTS["no_keyframe"], never) == [GENERIC_PROMPT] * 3 == ["a smooth video"] * 3
    assert prompts_for(cfg, 1, VARIANTS["full"], never) == ["a", "b", "c"]


def test_a_run_from_before_n_clips_counts_all_its_clips(tmp_path):
    from neuroclips_core.video_run import VideoResult

    assert VideoResult(tmp_path, {"n_test": 240}, True).n_clips == 240
    assert VideoResult(tmp_path, {"n_test": 240, "n_clips": 24}, True).n_clips == 24


def test_only_a_judge_change_keeps_the_videos(truth_and_videos, judges, tmp_path):
    from neuroclips_core.video_run import METRICS_FILE, _Judges, _same_generation, _score_and_write

    params = {"variant": "full", "seed": 0, "config": {"theta": 0.3},
              "weights": {"unet": "u", "sparsectrl": "s", "vae": "v", "frame_classifier": "f",
                          "video_classifier": "m", "clip": "c"}}
    rejudged = {**params, "weights": {**params["weights"], "video_classifier": "m2", "clip": "c2"}}
    assert _same_generation(params, rejudged) and _same_generation(params, params)
    # anything that makes the videos (a generator's weights, the config, the seed) means generating again
    assert not _same_generation(params, {**params, "weights": {**params["weights"], "sparsectrl": "s2"}})
    assert not _same_generation(params, {**params, "config": {"theta": 0.5}})
    assert not _same_generation(params, {**params, "seed": 1})
    assert not _same_generation(None, params)

    truth, videos = truth_and_videos
    result = _score_and_write(tmp_path, videos, truth, _Judges(**judges), rejudged, {"generation_s": 9.0},
                              dict(subject=1, variant="full", what="w", n_test=N), 0)
    saved = json.loads((tmp_path / METRICS_FILE).read_text())
    assert saved == json.loads(json.dumps(result.summary)) and not result.reused
    assert saved["params"] == rejudged and saved["n_clips"] == N and saved["timings"]["generation_s"] == 9.0
    assert saved["scores"]["ssim_s2"]["mean"] == pytest.approx(1.0) and len(saved["per_clip"]["ssim_s2"]) == N
