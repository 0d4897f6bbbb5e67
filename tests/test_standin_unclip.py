"""The unCLIP stand-in (quick-mode training, load round trip, metrics, determinism) and the keyframe sampler
(on tiny models: shapes, guidance, img2img schedule, strength 0, reproducibility, the vector condition)."""
from __future__ import annotations

import hashlib
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from neuroclips_core.zoo import corpus, tiny
from neuroclips_core.zoo.loaders import UnClip, load_role
from neuroclips_core.zoo.standins import STAMP_FILE, load_standin, train_standins
from neuroclips_core.zoo.train import RECIPES, RunOptions, TrainError, read_log, train_role
from neuroclips_core.zoo.train.diffusion import decode_scaled, encode_scaled, training_scheduler
from neuroclips_core.zoo.train.unclip import UnclipRecipe, min_snr_weight
from neuroclips_core.zoo.unclip_sampling import generate_keyframes, image_tokens, img2img_timesteps

QUIET = RunOptions(verbose=False)
ROLES = ["frame_classifier", "vae", "clip", "unclip"]


# ------------------------------------------------------------------------------------------------ the stand-in
@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """unclip and the roles it uses, trained in quick mode into a temporary output root (~30 s on 2 cores)."""
    root = tmp_path_factory.mktemp("unclip")
    results = train_standins(ROLES, quick=True, out=root / "weights", work=root / "work", options=QUIET)
    return root, results


def test_unclip_is_registered_after_the_roles_it_uses():
    order = list(RECIPES)
    assert RECIPES["unclip"] is UnclipRecipe
    assert order.index("vae") < order.index("unclip") and order.index("clip") < order.index("unclip")


def test_quick_unclip_roundtrip(quick):
    from diffusers import EulerDiscreteScheduler
    from safetensors import safe_open

    root, results = quick
    assert results["unclip"].finished
    folder = root / "weights" / "unclip"
    unet, scheduler = load_standin("unclip", root=root / "weights")
    assert isinstance(load_role("unclip", folder), UnClip)
    assert unet.dtype == torch.float32 and not unet.training
    clip = load_role("clip", root / "weights" / "clip")
    width = clip.model_cfg["vision_cfg"]["width"]
    assert unet.config.cross_attention_dim == width == 128 and unet.config.class_embed_type is None
    assert unet.config.sample_size == 16 and unet.config.in_channels == 4
    # unclip6's inference scheduler ships with it
    assert isinstance(scheduler, EulerDiscreteScheduler)
    assert (scheduler.config.timestep_spacing, scheduler.config.prediction_type,
            scheduler.config.beta_schedule) == ("trailing", "epsilon", "scaled_linear")
    with safe_open(str(folder / "unet" / "diffusion_pytorch_model.safetensors"), "pt") as f:
        assert f.get_tensor(next(iter(f.keys()))).dtype == torch.float16
    # the shipped layout is the full one (only the step count differs): it must fit its 16 MB share
    assert sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2 ** 20 <= 16
    # the frozen CLIP and VAE are not part of the saved model
    assert not any(k.startswith(("visual", "encoder.", "decoder.")) for k in unet.state_dict())

    images = corpus.keyframe_batch(0, 0, 2).images
    tokens = image_tokens(clip, images)
    assert tokens.shape == (2, 64, width)
    vae = load_role("vae", root / "weights" / "vae")
    with torch.no_grad():
        z = encode_scaled(vae, images)
        eps = unet(z, torch.tensor([10, 900]), encoder_hidden_states=tokens).sample
    assert z.shape == eps.shape == (2, 4, 16, 16) and torch.isfinite(eps).all()


def test_quick_unclip_metrics_and_provenance(quick):
    root, results = quick
    m = results["unclip"].metrics
    kinds = ("generated", "img2img", "blurred", "reconstructed")
    for name in (*kinds, "unrelated"):
        assert -1 <= m[f"ssim_{name}"] <= 1 and m[f"psnr_{name}"] > 0
    for name in (*kinds, "original"):        # the frame classifier was trained beside it, so every top-1 exists
        assert 0 <= m[f"classifier_top1_{name}"] <= 1
    assert m["chance"] == 1 / 64 and m["n_eval"] == UnclipRecipe.quick_config().eval_size
    # the blurred input is scored as itself: it differs from its img2img generation
    assert m["ssim_blurred"] != m["ssim_img2img"]
    stamp = json.loads((root / "weights" / "unclip" / STAMP_FILE).read_text())
    weights = {"vae": root / "weights" / "vae" / "diffusion_pytorch_model.safetensors",
               "clip": root / "weights" / "clip" / "open_clip_model.safetensors"}
    for role, path in weights.items():
        expected = hashlib.sha256(path.name.encode() + path.read_bytes()).hexdigest()
        assert stamp["provenance"][f"{role}_sha256"] == expected
    assert stamp["config"]["kind"] == "UnclipConfig"


def test_unclip_needs_the_vae_and_clip(tmp_path, quick):
    import shutil

    with pytest.raises(TrainError, match=r"(?s)needs the trained vae and clip.*--roles frame_classifier,vae,clip,unclip"):
        UnclipRecipe(UnclipRecipe.quick_config(), 0, tmp_path).build()
    root, _ = quick
    shutil.copytree(root / "weights" / "vae", tmp_path / "vae")
    with pytest.raises(TrainError, match=r"(?s)needs the trained clip\b.*holds none.*--roles frame_classifier,vae,clip,unclip"):
        UnclipRecipe(UnclipRecipe.quick_config(), 0, tmp_path).build()


def test_unclip_training_is_deterministic(quick, tmp_path):
    root, _ = quick
    opts = RunOptions(log_every=1, verbose=False, max_steps=2)

    def losses(seed, name):
        recipe = UnclipRecipe(UnclipRecipe.quick_config(), seed, root / "weights")
        result = train_role(recipe, tmp_path / name / "unclip", tmp_path / name / "work", opts)
        assert not result.finished and result.step == 2
        return [r["loss"] for r in read_log(tmp_path / name / "work")]

    a, b, c = losses(0, "a"), losses(0, "b"), losses(1, "c")
    assert len(a) == 2 and a == b and a != c


def test_min_snr_weight():
    sched = training_scheduler()
    t = torch.tensor([0, 50, 500, 999])
    w = min_snr_weight(sched, t, 5.0)
    alpha_bar = sched.alphas_cumprod[t]
    snr = alpha_bar / (1 - alpha_bar)
    assert snr[0] > 5 and snr[-1] < 5
    torch.testing.assert_close(w, torch.where(snr > 5, 5 / snr, torch.ones_like(snr)))
    assert w[0] < 0.01 and w[-1] == 1
    assert torch.equal(min_snr_weight(sched, t, 0.0), torch.ones(4))


# ------------------------------------------------------------------------------------------------ the sampler
@pytest.fixture(scope="module")
def tiny_models():
    """tiny unCLIP (tokens (B, 16, 64), vector (B, 32), 8 x 8 latents) + tiny VAE (64 px <-> 8 x 8)."""
    unclip, vae = tiny.tiny_unclip(), tiny.tiny_vae()
    tokens = torch.randn(3, *tiny.TINY_CLIP_TOKENS, generator=torch.Generator().manual_seed(1))
    vector = torch.randn(1, 4 * tiny.TINY_VECTOR_DIM, generator=torch.Generator().manual_seed(2))
    init = corpus.keyframe_batch(0, 0, 3).images
    return unclip, vae, tokens, vector, init


class _Calls:
    """Counts UNet forward calls and records their batch sizes."""

    def __init__(self, unet):
        self.batches = []
        self.handle = unet.register_forward_hook(lambda m, args, out: self.batches.append(args[0].shape[0]))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def test_generate_from_noise_shapes_and_reproducibility(tiny_models):
    unclip, vae, tokens, vector, _ = tiny_models
    with _Calls(unclip.unet) as calls:
        a = generate_keyframes(unclip, vae, tokens, steps=4, vector=vector, generator=_gen(0))
    assert a.shape == (3, 3, 64, 64) and a.dtype == torch.float32 and 0 <= a.min() and a.max() <= 1
    assert calls.batches == [6] * 4                    # 4 steps, conditional + unconditional in one call
    b = generate_keyframes(unclip, vae, tokens, steps=4, vector=vector, generator=_gen(0))
    c = generate_keyframes(unclip, vae, tokens, steps=4, vector=vector, generator=_gen(1))
    assert torch.equal(a, b) and not torch.allclose(a, c)
    # the bundle's own scheduler is left untouched
    assert unclip.scheduler.num_inference_steps is None


def test_guidance_formula(tiny_models):
    unclip, vae, tokens, vector, _ = tiny_models
    plain = generate_keyframes(unclip, vae, tokens, steps=3, guidance_scale=1.0, vector=vector, generator=_gen(0))
    with _Calls(unclip.unet) as calls:     # scale 1: the unconditional branch is neither run nor used
        again = generate_keyframes(unclip, vae, tokens, steps=3, guidance_scale=1.0, vector=vector,
                                   uncond_tokens=torch.randn(1, *tokens.shape[1:]), generator=_gen(0))
    assert calls.batches == [3] * 3 and torch.equal(plain, again)
    # unconditional tokens equal to the conditional ones: eps_u + g (eps_c - eps_u) = eps_c at any g
    same = generate_keyframes(unclip, vae, tokens, steps=3, guidance_scale=7.0, vector=vector,
                              uncond_tokens=tokens, generator=_gen(0))
    torch.testing.assert_close(same, plain, atol=2e-4, rtol=0)
    guided = generate_keyframes(unclip, vae, tokens, steps=3, guidance_scale=7.0, vector=vector, generator=_gen(0))
    assert (guided - plain).abs().max() > 1e-3


def test_img2img_schedule_and_strength(tiny_models):
    unclip, vae, tokens, vector, init = tiny_models
    sched = type(unclip.scheduler).from_config(unclip.scheduler.config)
    full = img2img_timesteps(sched, 25, 1.0).clone()
    part = img2img_timesteps(sched, 25, 0.6)
    assert len(full) == 25 and torch.equal(part, full[10:]) and sched.begin_index == 10
    # Euler's add_noise then uses the sigma of the first timestep that runs
    z, n = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    torch.testing.assert_close(sched.add_noise(z, n, part[:1].repeat(2)), z + sched.sigmas[10] * n)
    assert len(img2img_timesteps(sched, 25, 0.0)) == 0
    with pytest.raises(ValueError, match=r"strength must lie in \[0, 1\]"):
        img2img_timesteps(sched, 25, 1.5)

    with _Calls(unclip.unet) as calls:
        kept = generate_keyframes(unclip, vae, tokens, init_images=init, strength=0.0, steps=4, vector=vector)
    with torch.no_grad():
        round_trip = decode_scaled(vae, encode_scaled(vae, init))
    assert calls.batches == [] and torch.equal(kept, round_trip)      # strength 0: the VAE round trip
    with _Calls(unclip.unet) as calls:
        half = generate_keyframes(unclip, vae, tokens, init_images=init, strength=0.5, steps=4, vector=vector,
                                  generator=_gen(0))
    assert calls.batches == [6, 6] and half.shape == init.shape
    assert torch.equal(half, generate_keyframes(unclip, vae, tokens, init_images=init, strength=0.5, steps=4,
                                                vector=vector, generator=_gen(0)))
    # a weak strength stays closer to the init image than a strong one
    strong = generate_keyframes(unclip, vae, tokens, init_images=init, strength=1.0, steps=4, vector=vector,
                                generator=_gen(0))
    low = generate_keyframes(unclip, vae, tokens, init_images=init, strength=0.25, steps=4, vector=vector,
                             generator=_gen(0))
    assert (low - round_trip).abs().mean() < (strong - round_trip).abs().mean()


def test_ddim_scheduler_and_chunks(tiny_models):
    from diffusers import DDIMScheduler

    unclip, vae, tokens, vector, init = tiny_models
    ddim = UnClip(unclip.unet, DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                             clip_sample=False, set_alpha_to_one=False))
    with _Calls(unclip.unet) as calls:
        out = generate_keyframes(ddim, vae, tokens, init_images=init, strength=0.5, steps=6, vector=vector,
                                 generator=_gen(0), batch=2)
    assert out.shape == (3, 3, 64, 64) and torch.isfinite(out).all()
    assert calls.batches == [4, 4, 4, 2, 2, 2]         # chunks of 2 then 1 keyframes, 3 of 6 steps each


def test_sampler_input_errors(tiny_models):
    unclip, vae, tokens, vector, init = tiny_models
    with pytest.raises(ValueError, match=r"takes a vector condition.*sgm_vector_condition"):
        generate_keyframes(unclip, vae, tokens, steps=2)
    with pytest.raises(ValueError, match=r"tokens must be \(B, T, 64\)"):
        generate_keyframes(unclip, vae, tokens[..., :32], steps=2, vector=vector)
    with pytest.raises(ValueError, match="one per keyframe"):
        generate_keyframes(unclip, vae, tokens, steps=2, vector=vector.repeat(2, 1))
    with pytest.raises(ValueError, match="give one each"):
        generate_keyframes(unclip, vae, tokens, init_images=init[:2], steps=2, vector=vector)
    from diffusers import UNet2DConditionModel

    config = {**tiny.tiny_unclip_config(), "class_embed_type": None}
    plain = UnClip(UNet2DConditionModel(**config).eval(), unclip.scheduler)
    with pytest.raises(ValueError, match="has no vector condition"):
        generate_keyframes(plain, vae, tokens, steps=2, vector=vector)
    assert generate_keyframes(plain, vae, tokens, steps=2).shape == (3, 3, 64, 64)


def test_image_tokens_normalise_and_resize():
    clip = tiny.tiny_clip()                           # 32 px, OpenAI mean/std, tokens (B, 16, 64)
    model, _, cfg, _ = clip
    images = torch.rand(2, 3, 32, 32)
    mean, std = torch.tensor(cfg["mean"])[:, None, None], torch.tensor(cfg["std"])[:, None, None]
    with torch.no_grad():
        expected = model.encode_image((images - mean) / std)[1]
    torch.testing.assert_close(image_tokens(clip, images), expected)
    assert image_tokens(clip, torch.rand(3, 3, 64, 64)).shape == (3, *tiny.TINY_CLIP_TOKENS)
