"""The video stand-ins (t2v = AnimateDiff, sparsectrl = RGB SparseCtrl) and the motion measurement that judges them.

Quick mode trains each role for a few steps with the shipped architecture, so these tests check the machinery
(round trips, shapes, the SparseCtrl's start from the t2v UNet, agreement with diffusers' AnimateDiff pipelines,
determinism, errors); :mod:`neuroclips_core.zoo.motion` is checked on ground-truth corpus clips.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from neuroclips_core.zoo import corpus, motion
from neuroclips_core.zoo.loaders import SPARSECTRL_RGB
from neuroclips_core.zoo.standins import load_standin, train_standins
from neuroclips_core.zoo.train import RunOptions, TrainError, read_log
from neuroclips_core.zoo.train.loop import step_generator
from neuroclips_core.zoo.train.video import (SparseCtrlRecipe, T2vRecipe, VideoParts, animatediff_scheduler,
                                             clean_latent_estimate, denoise_videos,
                                             init_condition_embedding_from_conv_in, init_controlnet_from_unet,
                                             keyframe_condition, keyframe_effect_by_timestep, offset_noised,
                                             open_clip_text_to_hf, per_frame, predicted_noise, sparsectrl_config,
                                             text_encoder_config, timestep_weights, training_target, weighted_mse)

QUIET = RunOptions(verbose=False)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """t2v and sparsectrl (and the roles they need) trained in quick mode into a temporary output root."""
    root = tmp_path_factory.mktemp("video_standins")
    results = train_standins(["frame_classifier", "vae", "clip", "t2v", "sparsectrl"], quick=True,
                             out=root / "weights", work=root / "work", options=QUIET)
    return root, results


def _parts(root) -> VideoParts:
    weights = root / "weights"
    return VideoParts(load_standin("t2v", root=weights), load_standin("vae", root=weights),
                      load_standin("sparsectrl", root=weights))


# ------------------------------------------------------------------------------------------------ motion
def test_motion_direction_is_right_on_ground_truth_clips():
    h = corpus.heldout_clips(0, 128)
    r = motion.motion_direction_agreement(h.clips, h.velocity, min_speed=motion.DEFAULT_MIN_SPEED)
    assert r["n_moving"] >= 80                       # most corpus clips move
    assert r["agreement"] >= 0.9 and r["mean_cosine"] > 0.85
    assert 0.8 < r["speed_ratio"] < 1.25
    # played backwards, the same clips move the other way; a frozen frame does not move at all
    assert motion.motion_direction_agreement(h.clips.flip(1), h.velocity)["agreement"] <= 0.1
    frozen = motion.motion_direction_agreement(h.clips[:, :1].expand_as(h.clips), h.velocity)
    assert frozen["agreement"] == 0 and frozen["mean_cosine"] == 0


def test_object_trajectory_follows_a_drawn_square():
    t, size = 8, 64
    clip = torch.zeros(t, 3, size, size)
    gy, gx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    clip[:] = torch.stack([0.3 + 0.2 * gx, 0.4 - 0.1 * gy, 0.5 + 0.0 * gx])   # a smooth background gradient
    for k in range(t):                                   # a 12-px square moving 2 px right, 1 px down per frame
        x0, y0 = 10 + 2 * k, 20 + k
        clip[k, :, y0:y0 + 12, x0:x0 + 12] = torch.tensor([1.0, 0.9, 0.1])[:, None, None]
    track = motion.object_trajectory(clip)
    expected = torch.tensor([[(10 + 2 * k + 6) / size, (20 + k + 6) / size] for k in range(t)])
    torch.testing.assert_close(track, expected, atol=0.01, rtol=0)
    v = motion.clip_velocity(track, fps=8)
    torch.testing.assert_close(v, torch.tensor([2 * 8 / size, 8 / size]), atol=0.01, rtol=0)
    with pytest.raises(ValueError, match=r"\(T, 3, S, S\)"):
        motion.object_trajectory(clip[None])


def test_timestep_weights_turn_the_epsilon_loss_into_the_v_loss_up_to_the_cap():
    scheduler = animatediff_scheduler()
    alphas = scheduler.alphas_cumprod
    plain = timestep_weights(scheduler, 1.0)
    assert torch.equal(plain, torch.ones_like(plain))
    w = timestep_weights(scheduler, 20.0)
    assert w.mean().item() == pytest.approx(1.0, abs=1e-5) and (w[1:] >= w[:-1]).all()
    uncapped = (1 / alphas) < 20
    ratio = w[uncapped] * alphas[uncapped]                   # w = c / alphas_cumprod where not capped
    torch.testing.assert_close(ratio, ratio[:1].expand_as(ratio))
    assert w[-1] / w[0] == pytest.approx(20 * alphas[0].item(), rel=1e-4)
    # the weighted epsilon error is the v-prediction error (up to the scale) where the cap does not bite
    x0, eps, eps_hat = torch.randn(3, 1, 4, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([300])
    v = scheduler.get_velocity(x0, eps, t)
    x_t = scheduler.add_noise(x0, eps, t)
    x0_hat = (x_t - (1 - alphas[t]).sqrt() * eps_hat) / alphas[t].sqrt()
    v_hat = alphas[t].sqrt() * eps_hat - (1 - alphas[t]).sqrt() * x0_hat
    torch.testing.assert_close(weighted_mse(eps_hat, eps, t, w) / ratio[0], F.mse_loss(v_hat, v), rtol=1e-4, atol=0)


def test_offset_noise_moves_each_clips_channel_means():
    from neuroclips_core.zoo.train.diffusion import noised

    scheduler = animatediff_scheduler()
    x0 = torch.randn(256, 4, 16, 4, 4, generator=torch.Generator().manual_seed(1))
    plain = offset_noised(scheduler, x0, torch.Generator().manual_seed(0), 0.0)
    for a, b in zip(plain, noised(scheduler, x0, torch.Generator().manual_seed(0))):
        assert torch.equal(a, b)                                  # offset 0: the shared helper, unchanged
    x_t, t, noise = offset_noised(scheduler, x0, torch.Generator().manual_seed(0), 0.5)
    torch.testing.assert_close(x_t, scheduler.add_noise(x0, noise, t))
    means = noise.mean((2, 3, 4))                                 # (clips, channels): the offsets (+ 1/32 noise)
    assert 0.4 < float(means.std()) < 0.6 and float(plain[2].mean((2, 3, 4)).std()) < 0.06


def test_v_prediction_target_implies_the_noise_and_keeps_the_capped_v_weighting():
    eps_scheduler, v_scheduler = animatediff_scheduler(), animatediff_scheduler("v_prediction")
    assert v_scheduler.config.prediction_type == "v_prediction" and eps_scheduler.config.prediction_type == "epsilon"
    x0 = torch.randn(64, 4, 2, 4, 4, generator=torch.Generator().manual_seed(3))
    # the same draw for both kinds, only the target differs: the velocity, which implies the noise back exactly
    x_t, t, v = offset_noised(v_scheduler, x0, torch.Generator().manual_seed(0), 0.1, timestep_power=3.0)
    x_t2, t2, noise = offset_noised(eps_scheduler, x0, torch.Generator().manual_seed(0), 0.1, timestep_power=3.0)
    assert torch.equal(x_t, x_t2) and torch.equal(t, t2) and not torch.allclose(v, noise)
    torch.testing.assert_close(v, v_scheduler.get_velocity(x0, noise, t))
    torch.testing.assert_close(predicted_noise(v_scheduler, v, x_t, t), noise, atol=1e-5, rtol=1e-5)
    assert predicted_noise(eps_scheduler, noise, x_t, t) is noise
    assert training_target(eps_scheduler, x0, noise, t) is noise
    # at the highest noise level the velocity is mostly the clean latents (what a caption can tell), not the noise
    top = torch.full((64,), 999)
    v_top = training_target(v_scheduler, x0, noise, top)
    assert float(F.cosine_similarity(v_top.flatten(), -x0.flatten(), dim=0)) > 0.99
    # the capped v weighting of the clean-latent error, written for a v model's error: uncapped it is the plain loss
    assert torch.allclose(timestep_weights(v_scheduler, 1000.0), torch.ones(1000))
    alphas = v_scheduler.alphas_cumprod
    w_eps, w_v = timestep_weights(eps_scheduler, 20.0), timestep_weights(v_scheduler, 20.0)
    ratio = w_eps * alphas / w_v                       # the same weighting in the two units, up to the mean-1 scale
    torch.testing.assert_close(ratio, ratio[:1].expand_as(ratio), rtol=1e-4, atol=0)
    with pytest.raises(ValueError, match="prediction_type.*'sample'"):
        animatediff_scheduler("sample")


def test_clean_latent_estimate_recovers_the_latents_from_an_exact_prediction():
    x0 = torch.randn(6, 4, 3, 4, 4, generator=torch.Generator().manual_seed(5))
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(6))
    t = torch.tensor([0, 100, 400, 700, 900, 999])
    for kind in ("epsilon", "v_prediction"):
        scheduler = animatediff_scheduler(kind)
        x_t = scheduler.add_noise(x0, noise, t)
        exact = training_target(scheduler, x0, noise, t)
        torch.testing.assert_close(clean_latent_estimate(scheduler, exact, x_t, t), x0, atol=2e-3, rtol=1e-3)
    # an epsilon model predicting zero noise says the noisy latents, rescaled, are the clean ones
    abar = scheduler.alphas_cumprod[t].view(-1, 1, 1, 1, 1)
    eps_scheduler = animatediff_scheduler("epsilon")
    torch.testing.assert_close(clean_latent_estimate(eps_scheduler, torch.zeros_like(x_t), x_t, t), x_t / abar.sqrt())


def test_keyframe_effect_by_timestep_reads_the_residuals(quick):
    root, _ = quick
    parts = _parts(root)
    held = corpus.heldout_clips(0, 3, 64, chunk=3)
    rows = keyframe_effect_by_timestep(parts, held.clips, held.captions, timesteps=(901, 301))
    assert [r["t"] for r in rows] == [901, 301]
    for r in rows:
        assert all(np.isfinite(r[f"{c}_{w}"]) and r[f"{c}_{w}"] >= 0
                   for c in ("none", "own", "other") for w in ("frame0", "later"))
    # a SparseCtrl whose output convolutions are zero adds nothing: every condition scores as no keyframe
    silent = copy.deepcopy(parts.controlnet)
    with torch.no_grad():
        for name, p in silent.named_parameters():
            if name.startswith(("controlnet_down_blocks", "controlnet_mid_block")):
                p.zero_()
    for r in keyframe_effect_by_timestep(parts._replace(controlnet=silent), held.clips, held.captions,
                                         timesteps=(901,)):
        assert r["own_frame0"] == pytest.approx(r["none_frame0"]) and r["other_later"] == pytest.approx(r["none_later"])
    # and the real one does not (its residuals reach the UNet)
    assert rows[0]["own_frame0"] != pytest.approx(rows[0]["none_frame0"], rel=1e-6)
    with pytest.raises(ValueError, match=">= 2 clips"):
        keyframe_effect_by_timestep(parts, held.clips[:1], held.captions[:1])
    with pytest.raises(ValueError, match="controlnet is None"):
        keyframe_effect_by_timestep(parts._replace(controlnet=None), held.clips, held.captions)


def test_cubic_timesteps_favour_high_noise_and_power_one_is_unchanged():
    scheduler = animatediff_scheduler()
    x0 = torch.randn(4096, 4, 1, 2, 2, generator=torch.Generator().manual_seed(2))
    uniform = offset_noised(scheduler, x0, torch.Generator().manual_seed(0), 0.1)
    same = offset_noised(scheduler, x0, torch.Generator().manual_seed(0), 0.1, timestep_power=1.0)
    assert all(torch.equal(a, b) for a, b in zip(uniform, same))      # the old draw, so old runs resume alike
    _, t, _ = offset_noised(scheduler, x0, torch.Generator().manual_seed(0), 0.1, timestep_power=3.0)
    assert int(t.min()) >= 0 and int(t.max()) <= 999
    # P(t >= 900) = 1 - 0.9 ** (1/3) ~ 0.46 for the cubic draw, 0.1 for the uniform one
    assert 0.42 < float((t >= 900).float().mean()) < 0.50
    assert 0.07 < float((uniform[1] >= 900).float().mean()) < 0.13
    with pytest.raises(ValueError, match="timestep_power"):
        offset_noised(scheduler, x0, torch.Generator().manual_seed(0), 0.1, timestep_power=0.0)


# ------------------------------------------------------------------------------------------------ quick training
def test_t2v_roundtrip_and_forward(quick):
    root, results = quick
    parts = load_standin("t2v", root=root / "weights")
    unet, text_encoder, tokenizer, scheduler = (parts[k] for k in ("unet", "text_encoder", "tokenizer", "scheduler"))
    assert type(unet).__name__ == "UNetMotionModel" and unet.dtype == torch.float32 and not unet.training
    assert tokenizer.model_max_length == 77 and len(tokenizer) == 49408
    assert tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]    # real CLIP BPE
    assert type(scheduler).__name__ == "DDIMScheduler" and scheduler.config.beta_schedule == "linear"
    assert scheduler.config.steps_offset == 1 and not scheduler.config.clip_sample
    assert text_encoder.config.hidden_size == unet.config.cross_attention_dim
    from safetensors import safe_open

    with safe_open(str(root / "weights" / "t2v" / "unet" / "diffusion_pytorch_model.safetensors"), "pt") as f:
        assert f.get_tensor(next(iter(f.keys()))).dtype == torch.float16                 # shipped in half
    ids = tokenizer(["a red striped disk moving left over a blue background"] * 2, padding="max_length",
                    max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        text = text_encoder(ids).last_hidden_state
        assert text.shape == (2, 77, unet.config.cross_attention_dim)
        x = torch.randn(2, 4, corpus.CLIP_FRAMES, 16, 16)
        out = unet(x, torch.tensor([10, 500]), encoder_hidden_states=per_frame(text, corpus.CLIP_FRAMES)).sample
    assert out.shape == x.shape and torch.isfinite(out).all()
    # both phases ran: 2 image-phase steps on single keyframes, then 2 on 16-frame clips
    log = read_log(root / "work" / "t2v")
    assert log[-1]["step"] == 4 and log[-1]["frames"] == pytest.approx((1 + 1 + 16 + 16) / 4)
    m = results["t2v"].metrics
    assert {"heldout_loss", "heldout_loss_empty_caption", "direction_agreement", "direction_mean_cosine", "direction_n_moving",
            "classifier_top1_frames", "n_eval"} <= set(m)
    assert 0 < m["heldout_loss"] < 10 and -1 <= m["direction_mean_cosine"] <= 1 and m["n_eval"] == 2
    assert np.isnan(m["direction_agreement"]) or 0 <= m["direction_agreement"] <= 1


def test_sparsectrl_roundtrip_and_metrics(quick):
    root, results = quick
    parts = _parts(root)
    controlnet, unet = parts.controlnet, parts.t2v["unet"]
    assert {k: controlnet.config[k] for k in SPARSECTRL_RGB} == SPARSECTRL_RGB
    assert controlnet.dtype == torch.float32 and tuple(controlnet.config.block_out_channels) == tuple(
        unet.config.block_out_channels)
    b, f = 1, corpus.CLIP_FRAMES
    cond, mask = keyframe_condition(torch.randn(b, 4, 16, 16), f)
    assert cond.shape == (b, 4, f, 16, 16) and mask.shape == (b, 1, f, 16, 16)
    assert mask[:, :, 0].eq(1).all() and mask[:, :, 1:].eq(0).all() and cond[:, :, 1:].eq(0).all()
    text = torch.randn(b * f, 77, unet.config.cross_attention_dim)
    x = torch.randn(b, 4, f, 16, 16)
    with torch.no_grad():
        down, mid = controlnet(x, 300, encoder_hidden_states=text, controlnet_cond=cond, conditioning_mask=mask,
                               return_dict=False)
        out = unet(x, 300, encoder_hidden_states=text, down_block_additional_residuals=down,
                   mid_block_additional_residual=mid).sample
    assert out.shape == x.shape and torch.isfinite(out).all()
    m = results["sparsectrl"].metrics
    for key in ("ssim_frame0", "ssim_frame0_unrelated", "ssim_later", "ssim_later_frozen_keyframe"):
        assert -1 <= m[key] <= 1
    assert m["ssim_frame0_margin"] == pytest.approx(m["ssim_frame0"] - m["ssim_frame0_unrelated"])
    assert 0 < m["heldout_loss"] < 10 and 0 < m["heldout_loss_t2v_alone"] < 10
    assert {"direction_agreement", "direction_n_moving", "n_eval", "alpha_direction_agreement",
            "alpha_direction_blurry_clip", "alpha_ssim_frame0_margin"} <= set(m)
    provenance = json.loads((root / "weights" / "sparsectrl" / "stamp.json").read_text())["provenance"]
    assert all(len(provenance[k]) == 64 for k in ("vae_sha256", "t2v_sha256"))


def test_alpha_guided_evaluation_is_the_neuroclips_pipeline(quick):
    """The recipe's alpha-guided evaluation runs the chain NeuroClipsVideoPipeline runs (same noise, same output)."""
    from neuroclips_core.pipelines.video import NeuroClipsVideoPipeline, VideoGenerationConfig
    from neuroclips_core.zoo.train.video import alpha_guided_videos, blurred_clips

    root, _ = quick
    parts = _parts(root)
    h = corpus.heldout_clips(3, 2)
    blurry = blurred_clips(h.clips)
    assert blurry.shape == h.clips.shape and float((blurry - h.clips).abs().mean()) > 0.005
    ours = alpha_guided_videos(parts, h.captions[:1], h.clips[:1, 0], blurry[:1], steps=3, guidance_scale=5.0, seed=7)
    pipe = NeuroClipsVideoPipeline.from_roles(parts.t2v, sparsectrl=parts.controlnet, vae=parts.vae)
    # the recipe evaluates with independent frame noise (the paper's), not the sim profile's shared fine noise
    config = VideoGenerationConfig.sim().replace(num_inference_steps=3, guidance_scale=5.0, frame_noise_share=0.0)
    theirs = pipe(blurry[:1].permute(0, 1, 3, 4, 2).numpy(), h.clips[:1, 0].permute(0, 2, 3, 1).numpy(),
                  h.captions[:1], seeds=[7], config=config, progress=False)
    mine = np.round(ours.permute(0, 1, 3, 4, 2).numpy() * 255)
    assert np.abs(mine - theirs.astype(np.float64)).max() <= 1


def test_sampler_matches_diffusers_animatediff_pipelines(quick, monkeypatch):
    """denoise_videos gives exactly what AnimateDiffPipeline / AnimateDiffSparseControlNetPipeline give."""
    from diffusers import AnimateDiffPipeline, AnimateDiffSparseControlNetPipeline
    from diffusers.pipelines.animatediff import pipeline_animatediff_sparsectrl
    from PIL import Image

    root, _ = quick
    parts = _parts(root)
    with torch.no_grad():      # the quick SparseCtrl's output convolutions are still ~zero: make its effect visible
        for p in parts.controlnet.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    t2v = parts.t2v
    h = corpus.heldout_clips(0, 2)
    noise = torch.randn(2, 4, corpus.CLIP_FRAMES, 16, 16, generator=torch.Generator().manual_seed(0))
    common = dict(num_frames=corpus.CLIP_FRAMES, height=64, width=64, num_inference_steps=3, guidance_scale=7.5,
                  output_type="latent")
    pipe = AnimateDiffPipeline(vae=parts.vae, text_encoder=t2v["text_encoder"], tokenizer=t2v["tokenizer"],
                               unet=t2v["unet"], motion_adapter=None, scheduler=t2v["scheduler"])
    pipe.set_progress_bar_config(disable=True)
    ref = pipe(prompt=h.captions, latents=noise.clone(), **common).frames
    torch.testing.assert_close(denoise_videos(parts, h.captions, latents=noise.clone(), steps=3), ref)

    # the SparseCtrl pipeline encodes its conditioning frame with a posterior sample; the sampler takes the mean
    monkeypatch.setattr(pipeline_animatediff_sparsectrl, "retrieve_latents",
                        lambda out, generator=None, sample_mode="sample": out.latent_dist.mode())
    pipe = AnimateDiffSparseControlNetPipeline(vae=parts.vae, text_encoder=t2v["text_encoder"],
                                               tokenizer=t2v["tokenizer"], unet=t2v["unet"], motion_adapter=None,
                                               controlnet=parts.controlnet, scheduler=t2v["scheduler"])
    pipe.set_progress_bar_config(disable=True)
    keyframe = h.clips[:1, 0]
    image = Image.fromarray(np.round(keyframe[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8))
    ref = pipe(prompt=h.captions[:1], latents=noise[:1].clone(), conditioning_frames=[image],
               controlnet_frame_indices=[0], **common).frames
    mine = denoise_videos(parts, h.captions[:1], keyframes=keyframe, latents=noise[:1].clone(), steps=3)
    torch.testing.assert_close(mine, ref)
    alone = denoise_videos(parts._replace(controlnet=None), h.captions[:1], latents=noise[:1].clone(), steps=3)
    assert (alone - mine).abs().max() > 1e-3          # the keyframe did change the result


# ------------------------------------------------------------------------------------------------ initialisations
def test_text_encoder_is_the_clip_text_tower(quick):
    from transformers import CLIPTextModel

    root, _ = quick
    clip = load_standin("clip", root=root / "weights")
    text_encoder = CLIPTextModel(text_encoder_config(clip.model_cfg["text_cfg"])).eval()
    open_clip_text_to_hf(clip.model, text_encoder)
    captions = ["a red striped disk moving left over a blue background", "a green grid star floating almost still"]
    ids = clip.tokenizer(captions)                                           # open_clip: (2, 32), padded with 0
    with torch.no_grad():
        m = clip.model
        x = m.transformer(m.token_embedding(ids) + m.positional_embedding, attn_mask=m.attn_mask)
        reference = m.ln_final(x)                                            # every token's final state
        torch.testing.assert_close(text_encoder(ids).last_hidden_state, reference, atol=1e-5, rtol=1e-5)
        # the t2v's own tokenizer (CLIP's, padded with <|endoftext|> to 77) gives the same states up to the end token
        hf_ids = load_standin("t2v", root=root / "weights")["tokenizer"](
            captions, padding="max_length", max_length=77, return_tensors="pt").input_ids
        for i, caption_ids in enumerate(ids):
            n = int(caption_ids.argmax()) + 1                                # through <|endoftext|>
            assert torch.equal(hf_ids[i, :n], caption_ids[:n])
            torch.testing.assert_close(text_encoder(hf_ids[i:i + 1]).last_hidden_state[0, :n], reference[i, :n],
                                       atol=1e-5, rtol=1e-5)


def test_controlnet_starts_from_the_unet(quick):
    from diffusers import SparseControlNetModel

    root, _ = quick
    unet = T2vRecipe(T2vRecipe.quick_config(), 0, root / "weights").build().unet.eval()
    with torch.no_grad():                             # a trained-looking UNet: no zero/one-initialised tensors
        for p in unet.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    controlnet = SparseControlNetModel(**sparsectrl_config(unet)).eval()
    copied = init_controlnet_from_unet(controlnet, unet)
    source, target = unet.state_dict(), controlnet.state_dict()
    assert copied and all(torch.equal(target[k], source[k]) for k in copied)
    assert any(k.startswith("down_blocks.0.motion_modules") for k in copied)
    assert any(k.startswith("mid_block.attentions") for k in copied)
    # everything but the control-specific parts is copied; those stay zero (the fresh ControlNet adds nothing)
    rest = [k for k in target if k not in copied]
    assert rest and all(k.startswith("controlnet_") for k in rest)
    assert all(target[k].abs().max() == 0 for k in rest)

    # the copied down blocks compute what the UNet's do, once the UNet's second temporal attention (which
    # SparseCtrl's motion modules do not have) is switched off
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if ".attn2.to_out." in name and "motion_modules" in name:
                p.zero_()
        b, f = 1, 4
        x = torch.randn(b * f, controlnet.config.block_out_channels[0], 16, 16)
        emb = torch.randn(b * f, controlnet.time_embedding.linear_2.out_features)
        text = torch.randn(b * f, 77, unet.config.cross_attention_dim)
        hu, hc = x, x
        for ub, cb in zip(unet.down_blocks, controlnet.down_blocks):
            kwargs = dict(encoder_hidden_states=text) if getattr(ub, "has_cross_attention", False) else {}
            hu, _ = ub(hidden_states=hu, temb=emb, num_frames=f, **kwargs)
            hc, _ = cb(hidden_states=hc, temb=emb, num_frames=f, **kwargs)
        torch.testing.assert_close(hc, hu)

    wider = SparseControlNetModel(**{**sparsectrl_config(unet), "block_out_channels": [64, 64, 128]})
    with pytest.raises(TrainError, match="sparsectrl_config"):
        init_controlnet_from_unet(wider, unet)
    with pytest.raises(TrainError, match="sparsectrl_config"):
        init_condition_embedding_from_conv_in(wider, unet)


def test_condition_embedding_starts_as_the_unets_conv_in(quick):
    from diffusers import SparseControlNetModel

    root, _ = quick
    unet = T2vRecipe(T2vRecipe.quick_config(), 0, root / "weights").build().unet.eval()
    controlnet = SparseControlNetModel(**sparsectrl_config(unet)).eval()
    init_controlnet_from_unet(controlnet, unet)
    init_condition_embedding_from_conv_in(controlnet, unet)
    latent = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(3))
    mask = torch.ones(2, 1, 16, 16)
    with torch.no_grad():
        # the keyframe's features are what the UNet's conv_in makes of the latent (its bias added once, by conv_in)
        embedded = controlnet.controlnet_cond_embedding(torch.cat([latent, mask], 1))
        torch.testing.assert_close(embedded + unet.conv_in.bias[:, None, None], unet.conv_in(latent))
        # and the fresh ControlNet still adds nothing: its output convolutions are zero
        cond, cmask = keyframe_condition(latent, 4)
        x = torch.randn(2, 4, 4, 16, 16)
        text = torch.randn(2 * 4, 77, unet.config.cross_attention_dim)
        down, mid = controlnet(x, 10, encoder_hidden_states=text, controlnet_cond=cond, conditioning_mask=cmask,
                               return_dict=False)
    assert all(float(d.abs().max()) == 0 for d in down) and float(mid.abs().max()) == 0
    # the recipe starts this way by default (diffusers' zero start is one switch away)
    built = SparseCtrlRecipe(SparseCtrlRecipe.quick_config(), 0, root / "weights").build()
    assert float(built.controlnet_cond_embedding.weight.detach()[:, :4].abs().max()) > 0
    zero = SparseCtrlRecipe(dataclasses.replace(SparseCtrlRecipe.quick_config(), condition_from_conv_in=False), 0,
                            root / "weights").build()
    assert float(zero.controlnet_cond_embedding.weight.detach().abs().max()) == 0


# ------------------------------------------------------------------------------------------------ errors, determinism
def test_missing_dependencies_name_the_command(tmp_path):
    with pytest.raises(TrainError, match=r"vae and clip\b.*--roles frame_classifier,vae,clip,t2v \("):
        T2vRecipe(T2vRecipe.quick_config(), 0, tmp_path).build()
    with pytest.raises(TrainError, match=r"--roles frame_classifier,vae,clip,t2v,sparsectrl"):
        SparseCtrlRecipe(SparseCtrlRecipe.quick_config(), 0, tmp_path).build()


def test_same_seed_same_loss(quick):
    root, _ = quick
    out = root / "weights"
    config = dataclasses.replace(T2vRecipe.quick_config(), keyframe_steps=1)
    losses = []
    for _ in range(2):
        recipe = T2vRecipe(config, 0, out)
        model = recipe.build()
        losses.append([float(recipe.loss(model, k, step_generator(0, "t2v", k))[0].detach()) for k in (0, 2)])
    assert losses[0] == losses[1]
    other = T2vRecipe(config, 1, out)
    assert float(other.loss(other.build(), 2, step_generator(1, "t2v", 2))[0].detach()) != losses[0][1]

    recipe = SparseCtrlRecipe(SparseCtrlRecipe.quick_config(), 0, out)
    a = float(recipe.loss(recipe.build(), 1, step_generator(0, "sparsectrl", 1))[0].detach())
    recipe = SparseCtrlRecipe(SparseCtrlRecipe.quick_config(), 0, out)
    assert float(recipe.loss(recipe.build(), 1, step_generator(0, "sparsectrl", 1))[0].detach()) == a
