"""Keyframes (beta guidance) and captions (gamma guidance) on tiny random models saved and loaded as roles."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from neuroclips_core.data.sim_stimuli import CLASSES, sample_shots
from neuroclips_core.pipelines import captions as cap
from neuroclips_core.pipelines import keyframes as kf
from neuroclips_core.pipelines.blurry import _to_unit
from neuroclips_core.semantics_run import SemanticsRunConfig
from neuroclips_core.zoo import tiny
from neuroclips_core.zoo.loaders import load_role, save_role
from neuroclips_core.zoo.train.diffusion import encode_scaled

N = 4
STEPS = 20


def _smooth_frames(n: int, size: int = 64) -> np.ndarray:
    """uint8 (n, size, size, 3): blurry-looking gradients, a different one per clip."""
    x = np.linspace(0, 1, size)
    frames = [np.stack([np.outer(x, np.ones(size)) * (i + 1) / n, np.outer(np.ones(size), x),
                        np.full((size, size), 0.2 + 0.1 * i)], -1) for i in range(n)]
    return np.round(np.stack(frames) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """unCLIP + VAE + captioner through save_role / load_role (the real layouts).

    The tiny VAE's scaling factor is set so that its scaled latents have unit variance, as a trained VAE's
    ``scaling_factor`` does: otherwise any noise level swamps the init latents and strength means nothing.
    """
    root = tmp_path_factory.mktemp("roles")
    vae = tiny.tiny_vae()
    with torch.no_grad():
        z = encode_scaled(vae, _to_unit(_smooth_frames(N)))
    vae.register_to_config(scaling_factor=float(vae.config.scaling_factor / z.std()))
    save_role("vae", vae, root / "vae")
    save_role("unclip", tiny.tiny_unclip(), root / "unclip")
    save_role("captioner", tiny.tiny_captioner(seed=1), root / "captioner")
    return (load_role("unclip", root / "unclip"), load_role("vae", root / "vae"),
            load_role("captioner", root / "captioner"))


@pytest.fixture(scope="module")
def tokens():
    return torch.randn(N, *tiny.TINY_CLIP_TOKENS, generator=torch.Generator().manual_seed(0))


def _keyframes(models, tokens, frames=None, seeds=None, **config):
    unclip, vae, _ = models
    config = kf.KeyframeConfig.sim(**{"steps": STEPS, **config})
    frames = _smooth_frames(N) if frames is None else frames
    return kf.reconstruct_keyframes(unclip, vae, tokens, frames, config, seeds or config.clip_seeds(len(tokens)))


# ------------------------------------------------------------------------------------------------ config
def test_paper_and_sim_configs():
    paper = kf.KeyframeConfig.paper()
    assert (paper.steps, paper.guidance_scale, paper.start, paper.uncond, paper.output_map) == \
        (38, 5.0, "blurry", "normal", "mindeye2")
    assert kf.KeyframeConfig.paper(start="noise").start == "noise"
    sim = kf.KeyframeConfig.sim()
    assert (sim.steps, sim.guidance_scale, sim.uncond, sim.output_map) == (25, 3.0, "zeros", "none")
    # unCLIP starts from the blurry frame of the SR's keyframe index, so both describe the same moment
    assert sim.blurry_frame == paper.blurry_frame == SemanticsRunConfig.sim().keyframe_index == 2
    with pytest.raises(ValueError, match=r"start: expected one of \('blurry', 'noise'\), found 'img'"):
        kf.KeyframeConfig(start="img")
    with pytest.raises(ValueError, match=r"strength: expected a noise level in \[0, 1\].*found 1.5"):
        kf.KeyframeConfig(strength=1.5)
    # clip i's seed depends on (seed, i) only: a subset run reproduces the full run's clips
    seeds = sim.clip_seeds(6)
    assert len(set(seeds)) == 6 and sim.clip_seeds(2, first=4) == seeds[4:]
    assert kf.KeyframeConfig.sim(seed=1).clip_seeds(6) != seeds
    videos = np.zeros((3, 6, 8, 8, 3), np.uint8)
    videos[:, 2] = 7
    assert (kf.blurry_start_frames(videos, kf.KeyframeConfig(blurry_frame=2)) == 7).all()
    with pytest.raises(ValueError, match="expected an index below 6"):
        kf.blurry_start_frames(videos, kf.KeyframeConfig(blurry_frame=6))


# ------------------------------------------------------------------------------------------------ keyframes
def test_keyframes_shape_and_per_clip_seeds(models, tokens):
    seeds = [11, 12, 13, 14]
    a = _keyframes(models, tokens, seeds=seeds)
    assert a.shape == (N, 64, 64, 3) and a.dtype == np.uint8 and a.std() > 5
    assert np.array_equal(a, _keyframes(models, tokens, seeds=seeds))
    # a new seed for clip 0 changes clip 0 only
    b = _keyframes(models, tokens, seeds=[99, 12, 13, 14])
    assert np.abs(b[0].astype(int) - a[0]).mean() > 1 and np.array_equal(a[1:], b[1:])


def test_batch_composition_does_not_change_a_clip(models, tokens):
    seeds = [5, 6, 7, 8]
    together = _keyframes(models, tokens, seeds=seeds, batch=4)
    alone = _keyframes(models, tokens, seeds=seeds, batch=1)
    order = [2, 0, 3, 1]
    shuffled = _keyframes(models, tokens[order], frames=_smooth_frames(N)[order], seeds=[seeds[i] for i in order],
                          batch=4)
    for other in (alone, shuffled[np.argsort(order)]):
        # batched convolutions may round differently on the CPU: at most 1 grey level on a few pixels
        diff = np.abs(other.astype(int) - together)
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


def test_blurry_start_stays_close_and_drifts_with_strength(models, tokens):
    """Distances to the strength-0 output, the blurry frame's VAE round trip: what the blurry frame looks like
    to unCLIP (the tiny VAE is random, so the round trip is not the frame itself)."""
    kept = _keyframes(models, tokens, strength=0.0).astype(float)

    def distance(x):
        return np.abs(x.astype(float) - kept).mean()

    from_noise = distance(_keyframes(models, tokens, start="noise"))
    drift = [distance(_keyframes(models, tokens, strength=s)) for s in (0.05, 0.3, 0.6, 1.0)]
    assert drift[0] < 0.5 * from_noise                  # a small strength keeps the blurry frame's layout
    assert all(a < b for a, b in zip(drift, drift[1:]))     # monotone in strength (clip mean)
    # start="noise" ignores the frames: the same keyframes from other frames or none
    unclip, vae, _ = models
    config = kf.KeyframeConfig.sim(steps=STEPS, start="noise")
    none = kf.reconstruct_keyframes(unclip, vae, tokens, None, config, config.clip_seeds(N))
    assert np.array_equal(none, _keyframes(models, tokens, frames=_smooth_frames(N)[::-1].copy(), start="noise"))


def test_sizes_output_map_and_unconditional_context(models, tokens):
    small = _smooth_frames(N, 48)
    out = _keyframes(models, tokens, frames=small)
    assert out.shape == (N, 48, 48, 3)                        # back to the blurry frames' (store's) size
    unclip, vae, _ = models
    config = kf.KeyframeConfig.sim(steps=4, start="noise")
    assert kf.reconstruct_keyframes(unclip, vae, tokens, None, config, [0] * N).shape == (N, 64, 64, 3)
    assert kf.reconstruct_keyframes(unclip, vae, tokens, None, config, [0] * N, output_size=32).shape == \
        (N, 32, 32, 3)
    # MindEye2's clamp(0.8 x + 0.2) of the decoded x in [-1, 1]
    plain = _keyframes(models, tokens, steps=4).astype(float)
    mapped = _keyframes(models, tokens, steps=4, output_map="mindeye2").astype(float)
    assert np.abs(mapped - np.clip(1.6 * plain - 0.6 * 255, 0, 255)).max() <= 2.5
    # a random-normal unconditional context (MindEye2) guides differently from zeros, and is seeded per clip
    normal = _keyframes(models, tokens, steps=4, uncond="normal")
    assert np.abs(normal - plain).mean() > 1
    assert np.array_equal(normal, _keyframes(models, tokens, steps=4, uncond="normal"))


def test_keyframe_input_errors(models, tokens):
    unclip, vae, _ = models
    config = kf.KeyframeConfig.sim(steps=2)
    frames, seeds = _smooth_frames(N), [0] * N
    with pytest.raises(ValueError, match=r"tokens: expected \(N, T, 64\).*found shape \(4, 16, 32\)"):
        kf.reconstruct_keyframes(unclip, vae, tokens[..., :32], frames, config, seeds)
    with pytest.raises(ValueError, match=r"blurry_frames: expected one per token set \(4\), found 3"):
        kf.reconstruct_keyframes(unclip, vae, tokens, frames[:3], config, seeds)
    with pytest.raises(ValueError, match=r"blurry_frames: expected uint8 \(N, H, W, 3\), found float32"):
        kf.reconstruct_keyframes(unclip, vae, tokens, frames.astype(np.float32), config, seeds)
    with pytest.raises(ValueError, match=r"seeds: expected one per clip \(4\), found 5"):
        kf.reconstruct_keyframes(unclip, vae, tokens, frames, config, [0] * 5)
    with pytest.raises(ValueError, match="start='blurry' needs the PR's frames"):
        kf.reconstruct_keyframes(unclip, vae, tokens, None, config, seeds)


def test_writers_are_atomic(tmp_path, monkeypatch):
    first = np.full((2, 8, 8, 3), 3, np.uint8)
    kf.write_keyframes(tmp_path, first, {"config": kf.KeyframeConfig.sim().to_dict()})
    assert np.array_equal(np.load(tmp_path / kf.KEYFRAMES_FILE), first)
    params = json.loads((tmp_path / kf.KEYFRAMES_PARAMS_FILE).read_text())
    assert params["shape"] == [2, 8, 8, 3] and params["config"]["start"] == "blurry"

    def broken_save(file, array, allow_pickle=False):     # writes half a file, then the disk "fails"
        with open(file, "wb") as f:
            f.write(b"\x93NUMPY half")
        raise OSError("disk full")

    monkeypatch.setattr(np, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        kf.write_keyframes(tmp_path, np.zeros((5, 8, 8, 3), np.uint8), {})
    monkeypatch.undo()
    assert np.array_equal(np.load(tmp_path / kf.KEYFRAMES_FILE), first)
    assert json.loads((tmp_path / kf.KEYFRAMES_PARAMS_FILE).read_text()) == params
    with pytest.raises(TypeError):                        # meta that is not JSON: neither file is replaced
        kf.write_keyframes(tmp_path, np.zeros((5, 8, 8, 3), np.uint8), {"bad": object()})
    assert np.array_equal(np.load(tmp_path / kf.KEYFRAMES_FILE), first)
    with pytest.raises(ValueError, match=r"keyframes: expected uint8 \(N, H, W, 3\)"):
        kf.write_keyframes(tmp_path, np.zeros((5, 8, 8), np.uint8), {})

    cap.write_captions(tmp_path, ["a red striped disk", "a blue wavy star"], {"max_new_tokens": 20})
    with pytest.raises(TypeError):
        cap.write_captions(tmp_path, ["other"], {"bad": object()})
    assert json.loads((tmp_path / cap.CAPTIONS_FILE).read_text()) == ["a red striped disk", "a blue wavy star"]
    assert json.loads((tmp_path / cap.CAPTIONS_PARAMS_FILE).read_text()) == {"max_new_tokens": 20, "n": 2}
    cap.write_captions(tmp_path, ["x"], {}, name=cap.FMRI_CAPTIONS_FILE)
    assert (tmp_path / "fmri_captions_test_params.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []     # no temp files left


# ------------------------------------------------------------------------------------------------ captions
def test_caption_images_deterministic_and_official(models):
    captioner = models[2]
    images = np.random.default_rng(0).integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    texts = cap.caption_images(captioner, images, max_new_tokens=8, batch=2)
    assert len(texts) == 5 and all(isinstance(t, str) for t in texts) and len(set(texts)) > 1
    assert texts == cap.caption_images(captioner, images, max_new_tokens=8, batch=5)
    # no prompt = the official call: images only, greedy, generate builds [<image> x Q, BOS] itself
    model, processor = captioner
    pixels = processor(images=list(images), return_tensors="pt").pixel_values
    ids = model.generate(pixel_values=pixels, max_new_tokens=8, do_sample=False)
    start = model.config.num_query_tokens + 1
    assert texts == [t.strip() for t in processor.batch_decode(ids[:, start:], skip_special_tokens=True)]
    assert cap.caption_images(captioner, images, max_new_tokens=8, prompt="") != texts   # a prompt is used
    with pytest.raises(ValueError, match=r"images: expected uint8 \(N, H, W, 3\) keyframes, found float64"):
        cap.caption_images(captioner, images / 255.0)


def test_caption_tokens_feeds_the_qformer(models, tokens):
    captioner = models[2]
    model, processor = captioner
    images = np.random.default_rng(1).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    pixels = processor(images=list(images), return_tensors="pt").pixel_values
    with torch.no_grad():
        own = model.vision_model(pixels).last_hidden_state           # (3, 17, 32)
    # the vision tower's own output given as tokens: exactly the captions of the images
    assert cap.caption_tokens(captioner, own, max_new_tokens=8, prompt="") == \
        cap.caption_images(captioner, images, max_new_tokens=8, prompt="")
    assert model.vision_model.__class__.__name__ == "Blip2VisionModel"        # put back after the call
    # CLIP tokens 64 wide, the Q-Former reads 32: an error, or a converter
    with pytest.raises(ValueError, match=r"reads image tokens \(N, T, 32\).*found \(4, 16, 64\)"):
        cap.caption_tokens(captioner, tokens)
    assert model.vision_model.__class__.__name__ == "Blip2VisionModel"
    converter = torch.nn.Linear(64, 32)
    texts = cap.caption_tokens(captioner, tokens, converter=converter, max_new_tokens=4, batch=3)
    assert len(texts) == N and all(isinstance(t, str) for t in texts)


def test_caption_class_hits_on_the_sim_grammar():
    hand = ["a red speckled triangle moving left over a teal background",
            "an orange striped disk floating almost still over a blue background",
            "a green dotted star moving up while spinning over a purple background",
            "a pink wavy heart moving down over a red background"]
    truth = ["speckled triangle", "striped disk", "dotted star", "wavy heart"]
    assert cap.caption_class_hits(hand, truth).all()
    assert cap.caption_class_hits(hand, [CLASSES.index(t) for t in truth]).all()      # ids work too
    # right shape with another pattern, or right pattern with another shape: misses
    assert not cap.caption_class_hits(hand, ["striped triangle", "striped square", "dotted disk", "ringed heart"]).any()
    # real sim captions name their own class and (almost) never another shot's
    shots = sample_shots(np.random.default_rng(3), 30 * 600)
    captions, labels = [s.caption() for s in shots], np.array([s.label for s in shots])
    assert cap.caption_class_hits(captions, labels).all()
    other = np.roll(labels, 1)
    assert (cap.caption_class_hits(captions, other) == (other == labels)).all()
    with pytest.raises(ValueError, match=r"expected one label per caption \(4\), found 3"):
        cap.caption_class_hits(hand, truth[:3])


def test_random_caption_baseline_is_the_class_frequency_expectation():
    a, b, c, d = CLASSES[0], CLASSES[9], CLASSES[20], CLASSES[33]
    train = [f"a red {a} moving left over a blue background"] * 50 + \
            [f"a red {b} moving left over a blue background"] * 30 + \
            [f"a red {c} moving left over a blue background"] * 20
    test_labels = [CLASSES.index(a)] * 20 + [CLASSES.index(b)] * 30 + [CLASSES.index(d)] * 50
    expected = 0.5 * 0.2 + 0.3 * 0.3 + 0.2 * 0.0                  # sum_c p_train(c) p_test(c) = 0.19
    base = cap.random_caption_baseline(train, test_labels, seed=0, draws=400)
    assert base.expected == pytest.approx(expected, abs=1e-12)
    assert abs(base.rate - expected) < max(4 * base.se, 0.005) and base.se < 0.005
    assert cap.random_caption_baseline(train, test_labels, seed=0, draws=400) == base       # seeded
    assert cap.random_caption_baseline(train, test_labels, seed=1, draws=400).rate != base.rate
