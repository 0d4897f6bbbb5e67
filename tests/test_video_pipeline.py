"""The video generation pipeline (alpha + beta + gamma guidance) on the tiny random models of every video role.

The pipeline is built from role folders written by ``save_role`` and read back by ``load_role`` (the layouts the
real AnimateDiff, SparseCtrl and VAE weights use), with the paper profile's settings (suffix, negative prompt,
theta), only smaller: 64 px frames and 2 DDIM steps.
"""
from __future__ import annotations

import copy
import math
import os
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

from neuroclips_core.pipelines.alpha_guidance import alpha_noising, alpha_start_latents
from neuroclips_core.pipelines.blurry import decode_latents
from neuroclips_core.pipelines.video import (PAPER_NEGATIVE_PROMPT, PAPER_PROMPT_SUFFIX, NeuroClipsVideoPipeline,
                                             VideoGenerationConfig)
from neuroclips_core.zoo.loaders import save_role
from neuroclips_core.zoo.tiny import tiny_sparsectrl, tiny_t2v, tiny_vae
from neuroclips_core.zoo.train import video as sampler
from neuroclips_core.zoo.train.video import animatediff_scheduler, video_latents

SIZE = 64                     # tiny VAE: 64 px frames <-> 8 x 8 latents
FRAMES = 16
SMALL = VideoGenerationConfig.paper().replace(height=SIZE, width=SIZE, num_inference_steps=2)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """tiny t2v (with no vae/), sparsectrl and vae saved in their real layouts."""
    root = tmp_path_factory.mktemp("video_roles")
    return SimpleNamespace(t2v=save_role("t2v", tiny_t2v(), root / "t2v"),
                           sparsectrl=save_role("sparsectrl", tiny_sparsectrl(), root / "sparsectrl"),
                           vae=save_role("vae", tiny_vae(), root / "vae"), root=root)


@pytest.fixture(scope="module")
def pipe(folders):
    p = NeuroClipsVideoPipeline.from_roles(folders.t2v, sparsectrl=folders.sparsectrl, vae=folders.vae, config=SMALL)
    p.set_progress_bar_config(disable=True)
    return p


def _inputs(n: int, seed: int = 0):
    """Smooth random blurry videos (n, 16, 64, 64, 3), keyframes (n, 64, 64, 3) uint8, captions."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (n, FRAMES, 8, 8, 3)).astype(np.uint8)
    blurry = coarse.repeat(SIZE // 8, axis=2).repeat(SIZE // 8, axis=3)     # blocky: low-frequency content
    keyframes = rng.integers(0, 256, (n, SIZE, SIZE, 3)).astype(np.uint8)
    captions = ["a red ball moves left", "a dog runs on the beach", "a car at night", None][:n]
    return blurry, keyframes, captions


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten().double(), b.flatten().double()
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()))


# --------------------------------------------------------------------------------------------- outputs and seeds
def test_output_is_uint8_videos_and_each_clips_seed_decides_its_noise(pipe):
    """Two clips with the same inputs: different seeds, different videos (the official code gives every clip the
    same noise, reference §6.2); the same seeds, the same videos; a changed seed changes only its own clip."""
    blurry, keyframes, captions = _inputs(1)
    blurry, keyframes, captions = np.concatenate([blurry] * 2), np.concatenate([keyframes] * 2), captions * 2
    videos = pipe(blurry, keyframes, captions, seeds=[3, 4], progress=False)
    assert videos.shape == (2, FRAMES, SIZE, SIZE, 3) and videos.dtype == np.uint8
    assert np.abs(videos[0].astype(int) - videos[1]).mean() > 1.0
    first = pipe(blurry, keyframes, captions, seeds=[3, 4], output_type="latent", progress=False)
    again = pipe(blurry, keyframes, captions, seeds=[3, 4], output_type="latent", progress=False)
    torch.testing.assert_close(first, again, atol=0, rtol=0)
    other = pipe(blurry, keyframes, captions, seeds=[5, 4], output_type="latent", progress=False)
    assert (other[0] - first[0]).abs().mean() > 1e-2
    torch.testing.assert_close(other[1], first[1], atol=1e-5, rtol=1e-5)


def test_a_clips_output_does_not_depend_on_its_batch_mates(pipe):
    blurry, keyframes, captions = _inputs(2)
    together = pipe(blurry, keyframes, captions, seeds=[7, 8], output_type="latent", progress=False)
    alone = pipe(blurry, keyframes, captions, seeds=[7, 8], output_type="latent", batch_size=1, progress=False)
    torch.testing.assert_close(alone, together, atol=1e-4, rtol=1e-4)


# --------------------------------------------------------------------------------------------- Eq. 5
def test_eq5_limits_monotonicity_and_discrete_T():
    scheduler = animatediff_scheduler()
    abar = scheduler.alphas_cumprod.double()
    start = alpha_noising(0.0, scheduler, 25)
    assert start.t_start == 961 and start.t_blurry == 0
    # theta = 0: the blurry video taken as clean -> ordinary forward noising to the chain's first step
    assert math.isclose(start.signal, math.sqrt(abar[961]), rel_tol=1e-9)
    assert math.isclose(start.noise, math.sqrt(1 - abar[961]), rel_tol=1e-9)
    # theta = 1: taken as the noise itself -> z_T = z_blurry
    end = alpha_noising(1.0, scheduler, 25)
    assert end.signal == 1.0 and end.noise == 0.0 and end.t_blurry == 962
    thetas = np.linspace(0, 1, 41)
    coefs = [alpha_noising(float(t), scheduler, 25) for t in thetas]
    signal, noise = np.array([c.signal for c in coefs]), np.array([c.noise for c in coefs])
    assert np.all(np.diff(signal) > 0) and np.all(np.diff(noise) < 0)
    np.testing.assert_allclose(signal ** 2 + noise ** 2, 1.0, atol=1e-12)
    paper = alpha_noising(0.3, scheduler, 25)                 # theta T = round(0.3 * 962) = 289 (1-based)
    assert paper.t_blurry == 289
    assert math.isclose(paper.signal, math.sqrt(abar[961] / abar[288]), rel_tol=1e-9)
    assert 0.06 < paper.signal < 0.08                          # vs 0.0498 in the official code


def test_official_mode_noises_to_the_first_step_whatever_theta():
    scheduler = animatediff_scheduler()
    coefs = {alpha_noising(t, scheduler, 25, mode="official") for t in (0.0, 0.3, 0.7, 1.0)}
    assert len(coefs) == 1
    (official,) = coefs
    assert official.t_start == 961 and abs(official.signal - 0.0498) < 5e-4
    # the official code's scheduler.add_noise(z_blurry, eps, timesteps[0]) is the same z_T
    z, eps = torch.randn(2, 4, 3, 2, 2, generator=torch.Generator().manual_seed(0)).unbind(0)
    torch.testing.assert_close(alpha_start_latents(z, eps, official),
                               scheduler.add_noise(z, eps, torch.tensor([961])))


def test_theta_and_mode_are_checked():
    with pytest.raises(ValueError, match=r"theta.*\[0, 1\].*1\.5"):
        VideoGenerationConfig(theta=1.5)
    with pytest.raises(ValueError, match="alpha_mode.*'img2img'"):
        VideoGenerationConfig(alpha_mode="img2img")


# --------------------------------------------------------------------------------------------- alpha guidance
class GaussianOracleUNet(torch.nn.Module):
    """The exact noise predictor for unit-Gaussian latents: E[eps | x_t] = sqrt(1 - abar_t) x_t.

    A random UNet is no denoiser, so "the output stays close to what the chain started from" is only defined for
    a model that denoises.  For this one the DDIM chain maps its start to (nearly) itself, and knows nothing of
    the blurry video: whatever of the blurry video the output holds came in through z_T.
    """

    def __init__(self, alphas_cumprod: torch.Tensor):
        super().__init__()
        self.register_buffer("alphas_cumprod", alphas_cumprod.float())
        self.config = SimpleNamespace(in_channels=4, sample_size=SIZE // 8)

    @property
    def device(self):
        return self.alphas_cumprod.device

    @property
    def dtype(self):
        return self.alphas_cumprod.dtype

    def forward(self, x, t, **kwargs):
        return SimpleNamespace(sample=(1 - self.alphas_cumprod[t]).sqrt() * x)


def test_alpha_guidance_carries_the_blurry_video_into_the_output():
    vae = tiny_vae()
    blurry, _, captions = _inputs(2)
    clips = torch.from_numpy(blurry).permute(0, 1, 4, 2, 3).float() / 255
    with torch.no_grad():   # scale the random VAE's latents to unit variance, as SD's scaling_factor does
        z = video_latents(vae, clips)
        vae.register_to_config(scaling_factor=vae.config.scaling_factor / float(z.std()))
        z = video_latents(vae, clips)
    t2v = tiny_t2v()
    oracle = NeuroClipsVideoPipeline(vae=vae, text_encoder=t2v["text_encoder"], tokenizer=t2v["tokenizer"],
                                     unet=GaussianOracleUNet(t2v["scheduler"].alphas_cumprod),
                                     scheduler=animatediff_scheduler())
    cfg = SMALL.replace(num_inference_steps=25)     # the oracle costs nothing a step
    kw = dict(seeds=[0, 1], use_keyframe=False, progress=False)
    no_noise = oracle(blurry, None, captions, config=cfg.replace(theta=1.0), output_type="latent", **kw)
    paper = oracle(blurry, None, captions, config=cfg, output_type="latent", **kw)
    without = oracle(blurry, None, captions, config=cfg, use_blurry=False, output_type="latent", **kw)
    assert _corr(no_noise, z) > 0.999 and 0.8 < float(no_noise.std() / z.std()) < 1.05
    assert abs(_corr(without, z)) < 0.05
    assert 0.03 < _corr(paper, z) < 0.3                  # theta 0.3: a weak low-frequency prior, as in the paper
    # in pixels: the theta = 1 video is the VAE's reconstruction of the blurry video, the no_blurry one is not
    reconstruction = decode_latents(vae, z.transpose(1, 2).numpy()).astype(int)
    close = oracle(blurry, None, captions, config=cfg.replace(theta=1.0), **kw)
    far = oracle(blurry, None, captions, config=cfg, use_blurry=False, **kw)
    assert np.abs(close - reconstruction).mean() < 0.25 * np.abs(far - reconstruction).mean()


# --------------------------------------------------------------------------------------------- beta guidance
class RaisingControlNet(torch.nn.Module):
    def forward(self, *args, **kwargs):
        raise AssertionError("the controlnet was called with use_keyframe=False")


class RecordingControlNet(torch.nn.Module):
    """Passes through to a real SparseCtrl and keeps what it was given."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, []

    def forward(self, sample, t, **kwargs):
        self.calls.append(dict(sample=sample, **kwargs))
        return self.inner(sample, t, **kwargs)


def test_no_keyframe_never_runs_the_controlnet(pipe):
    blurry, keyframes, captions = _inputs(1)
    real = pipe.controlnet
    try:
        pipe.controlnet = RaisingControlNet()
        half = blurry[:, :, ::2, ::2]            # 32 px: resized to the config's 64 px, as the official code resizes
        videos = pipe(half, keyframes, captions, seeds=[0], use_keyframe=False, progress=False)
    finally:
        pipe.controlnet = real
    assert videos.shape == (1, FRAMES, SIZE, SIZE, 3)


@pytest.mark.parametrize("frame", [0, 5])
def test_keyframe_latent_sits_at_its_frame_with_its_mask_on_both_cfg_branches(pipe, frame):
    """Frame 0 by default (the official code); ``keyframe_frame`` moves the latent and its mask together."""
    blurry, keyframes, captions = _inputs(2)
    real = pipe.controlnet
    config = SMALL if frame == 0 else SMALL.replace(keyframe_frame=frame)
    try:
        pipe.controlnet = spy = RecordingControlNet(real)
        pipe(blurry, keyframes, captions, seeds=[0, 1], config=config, progress=False)
    finally:
        pipe.controlnet = real
    assert len(spy.calls) == SMALL.num_inference_steps
    cond, mask = spy.calls[0]["controlnet_cond"], spy.calls[0]["conditioning_mask"]
    assert cond.shape == (4, 4, FRAMES, 8, 8) and mask.shape == (4, 1, FRAMES, 8, 8)    # 2 clips x 2 branches
    others = [f for f in range(FRAMES) if f != frame]
    assert torch.all(mask[:, :, frame] == 1) and torch.all(mask[:, :, others] == 0)
    assert torch.all(cond[:, :, others] == 0)
    frames = torch.from_numpy(keyframes).permute(0, 3, 1, 2).float() / 255
    expected = video_latents(pipe.vae, frames[:, None])[:, :, 0]
    torch.testing.assert_close(cond[:2, :, frame], expected)          # unconditional branch
    torch.testing.assert_close(cond[2:, :, frame], expected)          # text branch
    with pytest.raises(ValueError, match=r"keyframe_frame.*\[0, 16\).*16"):
        VideoGenerationConfig(keyframe_frame=16)


def test_keyframe_scale_weighs_the_sparsectrl_residuals(pipe):
    """Scale 0 gives the no-keyframe video; scale 2 moves the output further from it than scale 1 does (the
    residuals enter a nonlinear UNet, so only the order is asserted); a value outside [0, 10] is refused."""
    blurry, keyframes, captions = _inputs(1)
    kw = dict(seeds=[0], output_type="latent", progress=False)
    real = pipe.controlnet
    try:    # a fresh SparseCtrl's output convolutions are zero (ControlNet's init): give them weights to weigh
        pipe.controlnet = copy.deepcopy(real)
        with torch.no_grad():
            for name, param in pipe.controlnet.named_parameters():
                if name.startswith(("controlnet_down_blocks", "controlnet_mid_block")):
                    param.normal_(0.0, 0.05, generator=torch.Generator().manual_seed(0))
        bare = pipe(blurry, keyframes, captions, use_keyframe=False, **kw)
        at = {s: pipe(blurry, keyframes, captions, config=SMALL.replace(keyframe_scale=s), **kw)
              for s in (0.0, 1.0, 2.0)}
    finally:
        pipe.controlnet = real
    torch.testing.assert_close(at[0.0], bare, atol=1e-5, rtol=1e-5)
    assert 1e-4 < (at[1.0] - bare).abs().mean() < (at[2.0] - bare).abs().mean()
    with pytest.raises(ValueError, match=r"keyframe_scale.*\[0, 10\].*-1"):
        VideoGenerationConfig(keyframe_scale=-1)


def test_missing_controlnet_names_the_sparsectrl_role(folders):
    bare = NeuroClipsVideoPipeline.from_roles(folders.t2v, vae=folders.vae, config=SMALL)
    blurry, keyframes, captions = _inputs(1)
    with pytest.raises(ValueError, match=r"sparsectrl.*use_keyframe=False"):
        bare(blurry, keyframes, captions, seeds=[0], progress=False)
    assert bare(blurry, None, captions, seeds=[0], use_keyframe=False, progress=False).shape[0] == 1


# --------------------------------------------------------------------------------------------- gamma guidance
def test_paper_prompts_and_negative_prompt_reach_the_text_encoder(pipe, monkeypatch):
    cfg = VideoGenerationConfig.paper()
    assert cfg.prompt("a cat") == "a cat" + PAPER_PROMPT_SUFFIX and cfg.prompt(None) == ""
    assert VideoGenerationConfig.sim().prompt("a cat") == "a cat" and VideoGenerationConfig.sim().negative_prompt == ""
    seen = []
    encode = sampler.encode_captions

    def recording(text_encoder, tokenizer, texts):
        seen.append(list(texts))
        return encode(text_encoder, tokenizer, texts)

    monkeypatch.setattr(sampler, "encode_captions", recording)
    pipe(None, None, ["a cat", None], seeds=[0, 1], use_blurry=False, use_keyframe=False, progress=False)
    assert [PAPER_NEGATIVE_PROMPT] * 2 in seen and ["a cat" + PAPER_PROMPT_SUFFIX, ""] in seen


# --------------------------------------------------------------------------------------------- construction
def test_from_roles_takes_the_vae_from_the_t2v_folder_or_says_what_is_missing(folders):
    with pytest.raises(ValueError, match=r"VAE.*'vae' role"):
        NeuroClipsVideoPipeline.from_roles(folders.t2v)
    with_vae = save_role("t2v", dict(tiny_t2v(), vae=tiny_vae(seed=1)), folders.root / "t2v_with_vae")
    pipe = NeuroClipsVideoPipeline.from_roles(with_vae)
    assert type(pipe.vae).__name__ == "AutoencoderKL" and pipe.controlnet is None
    assert pipe.generation_config == VideoGenerationConfig.paper()
    assert pipe.scheduler.config.beta_schedule == "linear" and pipe.scheduler.config.steps_offset == 1
    assert pipe.scheduler.config.prediction_type == "epsilon"


def test_from_roles_keeps_what_the_t2v_unet_predicts(folders):
    """The official DDIM is rebuilt whatever scheduler the t2v folder holds, but a v-prediction UNet (the sim
    stand-in) must be sampled as one: its prediction_type survives, nothing else of the folder's scheduler."""
    t2v = dict(tiny_t2v(), scheduler=animatediff_scheduler("v_prediction"))
    t2v["scheduler"].register_to_config(steps_offset=0)
    folder = save_role("t2v", t2v, folders.root / "t2v_v")
    pipe = NeuroClipsVideoPipeline.from_roles(folder, vae=tiny_vae())
    assert pipe.scheduler.config.prediction_type == "v_prediction" and pipe.scheduler.config.steps_offset == 1
    blurry, keyframes, captions = _inputs(1)
    v = pipe(blurry, None, captions, seeds=[0], use_keyframe=False, config=SMALL, output_type="latent", progress=False)
    eps = NeuroClipsVideoPipeline.from_roles(folder, vae=tiny_vae(), scheduler=animatediff_scheduler())(
        blurry, None, captions, seeds=[0], use_keyframe=False, config=SMALL, output_type="latent", progress=False)
    assert not torch.allclose(v, eps)          # the same UNet read as epsilon gives another video


# --------------------------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("case, pattern", [
    ("frames", r"blurry: expected shape \(1, 16, H, W, 3\), found \(1, 6, 64, 64, 3\)"),
    ("keyframe", r"keyframes: expected shape \(1, H, W, 3\), found \(1, 3, 64, 64\)"),
    ("seeds", r"seeds: expected one per clip \(1 clips\), found 2 seeds"),
    ("captions", r"captions: expected one per clip \(1 clips\), found 2"),
    ("range", r"blurry: float frames must be in \[0, 1\]"),
    ("no_blurry", r"use_blurry=True needs the blurry videos"),
])
def test_bad_inputs_say_what_was_expected_and_found(pipe, case, pattern):
    blurry, keyframes, captions = _inputs(1)
    seeds = [0]
    if case == "frames":
        blurry = blurry[:, :6]
    elif case == "keyframe":
        keyframes = keyframes.transpose(0, 3, 1, 2)
    elif case == "seeds":
        seeds = [0, 1]
    elif case == "captions":
        captions = captions * 2
    elif case == "range":
        blurry = blurry.astype(np.float32)
    elif case == "no_blurry":
        blurry = None
    with pytest.raises(ValueError, match=pattern):
        pipe(blurry, keyframes, captions, seeds=seeds, progress=False)


def test_frame_noise_share_mixes_a_noise_all_frames_share():
    """Share 0 is the independent noise drawn before the option existed; share s keeps every element N(0, 1) and
    correlates two frames by s; share 1 gives every frame the same noise; a share outside [0, 1] is refused."""
    shape = (4, FRAMES, 16, 16)
    state = int(np.random.SeedSequence([7, 0]).generate_state(1)[0])
    torch.testing.assert_close(sampler.clip_noise(7, 0, shape), torch.randn(shape, generator=torch.Generator()
                                                                           .manual_seed(state)))
    mixed = sampler.clip_noise(7, 0, shape, frame_share=0.8)
    assert abs(float(mixed.std()) - 1.0) < 0.05
    assert abs(_corr(mixed[:, 3], mixed[:, 11]) - 0.8) < 0.08
    assert abs(_corr(sampler.clip_noise(7, 0, shape)[:, 3], sampler.clip_noise(7, 0, shape)[:, 11])) < 0.1
    same = sampler.clip_noise(7, 0, shape, frame_share=1.0)
    torch.testing.assert_close(same[:, 0], same[:, FRAMES - 1])
    with pytest.raises(ValueError, match=r"frame_share.*\[0, 1\]"):
        sampler.clip_noise(7, 0, shape, frame_share=1.5)
    with pytest.raises(ValueError, match=r"frame_noise_share.*\[0, 1\].*-0.1"):
        VideoGenerationConfig(frame_noise_share=-0.1)


def test_frame_noise_cutoff_shares_the_fine_detail_only():
    """With a cutoff the frames share the noise above it and keep their own below it: at share 1 the frames' high
    bands are identical and their low bands are the independent noise's; every element stays N(0, 1); two frames
    correlate by the share of frequencies above the cutoff; cutoff 0 is the whole-noise share; bad cutoffs refused."""
    shape = (4, FRAMES, 16, 16)
    high = sampler.high_frequency_mask(16, 16, 0.5)
    band = lambda x, m: torch.fft.irfft2(torch.fft.rfft2(x) * m, s=(16, 16))
    split = sampler.clip_noise(7, 0, shape, frame_share=1.0, share_cutoff=0.5)
    own = sampler.clip_noise(7, 0, shape)
    torch.testing.assert_close(band(split, high)[:, 0], band(split, high)[:, FRAMES - 1])
    torch.testing.assert_close(band(split, 1 - high), band(own, 1 - high))
    assert float((band(split, 1 - high)[:, 0] - band(split, 1 - high)[:, FRAMES - 1]).abs().mean()) > 0.3
    many = torch.cat([sampler.clip_noise(s, 0, shape, 1.0, 0.5) for s in range(8)])
    assert abs(float(many.std()) - 1.0) < 0.03
    expected = float(torch.cat([high, high[:, 1:8].flip(1)], 1).mean())   # share of all 16 x 16 bins above it
    assert abs(_corr(many[:, 3], many[:, 11]) - expected) < 0.05
    assert 0.2 < expected < 0.9
    torch.testing.assert_close(sampler.clip_noise(7, 0, shape, 0.8, 0.0), sampler.clip_noise(7, 0, shape, 0.8))
    with pytest.raises(ValueError, match=r"share_cutoff.*\[0, 1\).*1.2"):
        sampler.clip_noise(7, 0, shape, frame_share=1.0, share_cutoff=1.2)
    with pytest.raises(ValueError, match=r"frame_noise_cutoff.*\[0, 1\).*-0.5"):
        VideoGenerationConfig(frame_noise_cutoff=-0.5)
    # the paper profile keeps the paper's independent frames; the sim profile shares the fine detail only
    assert VideoGenerationConfig.paper().frame_noise_share == 0.0
    assert VideoGenerationConfig.sim().frame_noise_share > 0 and 0 < VideoGenerationConfig.sim().frame_noise_cutoff < 1


def test_frame_noise_share_reaches_the_chain(pipe, monkeypatch):
    """The pipeline's starting latents use the config's share and cutoff: with share 1 and no blurry video every frame
    starts from the same noise; with the default (0) the frames' noises differ; with a cutoff only the fine detail
    is the same."""
    blurry, keyframes, captions = _inputs(1)
    starts = []
    real = sampler.denoise_videos

    def spy(parts, caps, keys=None, *, latents, **kw):
        starts.append(latents.clone())
        return real(parts, caps, keys, latents=latents, **kw)

    from neuroclips_core.pipelines import video as video_module
    monkeypatch.setattr(video_module, "denoise_videos", spy)
    kw = dict(seeds=[3], use_blurry=False, use_keyframe=False, progress=False, output_type="latent")
    pipe(blurry, keyframes, captions, config=SMALL.replace(frame_noise_share=1.0), **kw)
    pipe(blurry, keyframes, captions, **kw)
    pipe(blurry, keyframes, captions, config=SMALL.replace(frame_noise_share=1.0, frame_noise_cutoff=0.5), **kw)
    shared, own, fine = starts
    torch.testing.assert_close(shared[:, :, 0], shared[:, :, FRAMES - 1])
    assert (own[:, :, 0] - own[:, :, FRAMES - 1]).abs().mean() > 0.5
    size = fine.shape[-2:]
    high = sampler.high_frequency_mask(*size, 0.5)
    torch.testing.assert_close(torch.fft.rfft2(fine[:, :, 0]) * high, torch.fft.rfft2(fine[:, :, FRAMES - 1]) * high,
                               atol=1e-4, rtol=1e-4)
    assert (fine[:, :, 0] - fine[:, :, FRAMES - 1]).abs().mean() > 0.2
