"""Chapter 03's drawing driver (:mod:`neuroclips_core.keyframes_run`): its scores on known keyframes (perfect, shuffled)
with tiny random judges, its variant folders, and the errors it gives when chapter 02 or the SR have not run.
The whole driver runs end to end on the shipped stand-ins in the quick run of chapter 03 (tests/test_book.py)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from neuroclips_core.config import make_config
from neuroclips_core.keyframes_run import keyframes_dir, reconstruct_semantics, score_keyframes
from neuroclips_core.zoo import corpus, tiny

torch.set_num_threads(1)
N = 12


@pytest.fixture(scope="module")
def sim_keyframes():
    """uint8 (N, 64, 64, 3) held-out corpus keyframes with their labels and captions."""
    keys = corpus.heldout_keyframes(0, N)
    frames = np.round(keys.images.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)
    return frames, keys.labels.numpy(), keys.captions


@pytest.fixture(scope="module")
def judges():
    return tiny.tiny_frame_classifier(seed=0), tiny.tiny_clip(seed=0)


def _store(labels, train_captions):
    return SimpleNamespace(labels_test=labels, captions_train=train_captions)


def test_perfect_keyframes_score_at_the_top(sim_keyframes, judges):
    frames, labels, captions = sim_keyframes
    classifier, clip = judges
    other = corpus.heldout_keyframes(1, 64).captions          # training captions: another stream's clips
    s = score_keyframes(frames, frames, classifier=classifier, clip=clip, captions=captions,
                        store=_store(labels, other), seed=0)
    assert s["ssim_s2"] == pytest.approx(1.0) and s["pixcorr"] == pytest.approx(1.0)
    # identical frames: identical probabilities, so the ground truth's top-3 outrank every distractor
    assert s["n_way"]["50"]["mean"] == 1.0 and s["n_way"]["2"]["mean"] == 1.0
    assert s["n_way"]["50"]["chance"] == pytest.approx(0.058, abs=0.002)
    assert s["classifier_top1"] == 1.0
    assert s["identification"]["forward"] == 1.0 and s["identification"]["pool_size"] == N
    assert s["captions"]["class_named"] == 1.0          # the true captions name their own class
    assert 0 < s["captions"]["random_training_caption"] < 0.5


def test_shuffled_keyframes_lose_identification_and_layout(sim_keyframes, judges):
    frames, labels, captions = sim_keyframes
    classifier, clip = judges
    perfect = score_keyframes(frames, frames, classifier=classifier, clip=clip)
    shuffled = score_keyframes(np.roll(frames, 1, axis=0), frames, classifier=classifier, clip=clip)
    assert shuffled["identification"]["forward"] < 0.5
    assert shuffled["ssim_s2"] < perfect["ssim_s2"] - 0.1
    # (no 50-way check: a random tiny ViT ranks the classes nearly the same for every frame)
    assert "captions" not in shuffled                   # no captions given: none scored


def test_captions_scored_against_the_right_clips(sim_keyframes, judges):
    frames, labels, captions = sim_keyframes
    classifier, clip = judges
    store = _store(labels, corpus.heldout_keyframes(1, 64).captions)
    rolled = captions[1:] + captions[:1]                # each clip gets its neighbour's caption
    s = score_keyframes(frames, frames, classifier=classifier, clip=clip, captions=rolled, store=store)
    expected = np.mean([labels[(i + 1) % N] == labels[i] for i in range(N)])
    assert s["captions"]["class_named"] == pytest.approx(expected)


def test_fingerprints_of_transformers_and_diffusers_models():
    from neuroclips_core.artifacts import module_fingerprint

    captioner = tiny.tiny_captioner(seed=1).model           # a transformers config (to_dict), not a mapping
    assert module_fingerprint(captioner) == module_fingerprint(tiny.tiny_captioner(seed=1).model)
    assert module_fingerprint(captioner) != module_fingerprint(tiny.tiny_captioner(seed=2).model)
    assert module_fingerprint(tiny.tiny_vae(0)) != module_fingerprint(tiny.tiny_vae(1))     # diffusers' FrozenDict


def test_variant_folders(tmp_path):
    cfg = make_config(profile="sim", subject=2, quick=True, run_root=tmp_path / "runs", data_root=tmp_path / "d")
    assert keyframes_dir(cfg) == tmp_path / "runs" / "sim" / "subj02" / "semantics"
    assert keyframes_dir(cfg, 3, "start_noise") == tmp_path / "runs" / "sim" / "subj03" / "semantics" / "start_noise"
    for bad in ("../x", "Start", "a b"):
        with pytest.raises(ValueError, match="keyframe variant"):
            keyframes_dir(cfg, variant=bad)


def test_missing_perception_run_names_chapter_02(tmp_path):
    cfg = make_config(profile="sim", subject=1, quick=True, run_root=tmp_path / "runs", data_root=tmp_path / "d")
    with pytest.raises(FileNotFoundError, match=r"Perception Reconstructor run for subject 1.*chapter 02"):
        reconstruct_semantics(cfg, progress=False)
