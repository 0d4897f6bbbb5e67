"""Benchmark the video stage (chapter 04): seconds per clip and peak memory.

Each measurement runs in its own child process (so each peak is its own):

- **sim**: :class:`~neuroclips_core.pipelines.video.NeuroClipsVideoPipeline` with the stand-ins (the shipped ones,
  or ``$NEUROCLIPS_STANDINS``), the sim generation config (64 px, 16 frames, the sim chain's DDIM steps, CFG) on
  synthetic inputs, per variant (``full``: SparseCtrl on; ``no_keyframe``: off) and batch size, with the minutes
  the default sim test set (240 clips) takes;
- **paper** size: AnimateDiff v3's UNetMotionModel (SD 1.5's UNet, 320-640-1280-1280 channels, motion modules)
  and the RGB SparseCtrl at their real sizes with random weights, one DDIM step of one clip with CFG (a batch of
  2 x 16 frames at 32 x 32 latents, 256 px), on whatever device is present (CUDA: float16), and what the official
  25-step chain would take per clip.  The text encoder and VAE are left out (a few % of the cost).

The cost of a step does not depend on the weights' values, so random weights measure it.  ::

    .venv/bin/python benchmarks/bench_inference.py [--threads 2] [--clips 8] [--skip-paper]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from _timing import device_name, peak_rss_mb, seconds_per_step

REPO = Path(__file__).resolve().parents[1]
SIM_TEST_CLIPS = 240            # the default preset's test set


def _sim(variant: str, clips: int, batch: int) -> dict:
    from neuroclips_core.pipelines.video import NeuroClipsVideoPipeline, VideoGenerationConfig
    from neuroclips_core.zoo import corpus, load_standin

    config = VideoGenerationConfig.sim()
    pipe = NeuroClipsVideoPipeline.from_roles(load_standin("t2v"), sparsectrl=load_standin("sparsectrl"),
                                              vae=load_standin("vae"), config=config)
    h = corpus.heldout_clips(0, clips)
    videos = np.round(h.clips.permute(0, 1, 3, 4, 2).numpy() * 255).astype(np.uint8)     # (N, 16, 64, 64, 3)
    kwargs = dict(seeds=list(range(clips)), use_keyframe=variant == "full", batch_size=batch, progress=False)
    pipe(videos[:batch], videos[:batch, 0], h.captions[:batch], **{**kwargs, "seeds": list(range(batch))})  # warm-up
    t0 = time.perf_counter()
    pipe(videos, videos[:, 0], h.captions, **kwargs)
    per_clip = (time.perf_counter() - t0) / clips
    return {"variant": variant, "batch": batch, "steps": config.num_inference_steps, "cfg": config.guidance_scale,
            "seconds_per_clip": per_clip, "test_set_minutes": per_clip * SIM_TEST_CLIPS / 60,
            "peak_rss_mb": peak_rss_mb()}


def _paper_models(device, dtype):
    import torch
    from diffusers import MotionAdapter, SparseControlNetModel, UNet2DConditionModel, UNetMotionModel
    from diffusers.utils import logging as diffusers_logging

    from neuroclips_core.zoo.train.video import sparsectrl_config

    diffusers_logging.set_verbosity_error()
    unet2d = UNet2DConditionModel(sample_size=32, cross_attention_dim=768, attention_head_dim=8)   # SD 1.5's config
    adapter = MotionAdapter(block_out_channels=(320, 640, 1280, 1280), motion_layers_per_block=2,
                            motion_num_attention_heads=8, motion_norm_num_groups=32, motion_max_seq_length=32,
                            use_motion_mid_block=False)                                           # v3: no mid block
    unet = UNetMotionModel.from_unet2d(unet2d, adapter)
    controlnet = SparseControlNetModel(**sparsectrl_config(unet))
    return unet.to(device, dtype).eval(), controlnet.to(device, dtype).eval()


def _paper(steps: int) -> dict:
    import torch

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    unet, controlnet = _paper_models(device, dtype)
    frames, size = 16, 32
    x = torch.randn(2, 4, frames, size, size, device=device, dtype=dtype)          # CFG: two branches of one clip
    text = torch.randn(2 * frames, 77, 768, device=device, dtype=dtype)
    cond = torch.zeros(2, 4, frames, size, size, device=device, dtype=dtype)
    mask = torch.zeros(2, 1, frames, size, size, device=device, dtype=dtype)
    mask[:, :, 0] = 1

    @torch.no_grad()
    def step():
        down, mid = controlnet(x, 500, encoder_hidden_states=text, controlnet_cond=cond, conditioning_mask=mask,
                               return_dict=False)
        unet(x, 500, encoder_hidden_states=text, down_block_additional_residuals=down,
             mid_block_additional_residual=mid)

    seconds = seconds_per_step(step, steps, device)
    count = lambda m: sum(p.numel() for p in m.parameters()) / 1e6     # noqa: E731
    out = {"device": device_name(device), "dtype": str(dtype).removeprefix("torch."), "unet_params_m": count(unet),
           "sparsectrl_params_m": count(controlnet), "seconds_per_step": seconds,
           "official_chain_seconds_per_clip": 25 * seconds, "peak_rss_mb": peak_rss_mb()}
    if device.type == "cuda":
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
    return out


def _child(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    result = _paper(args.steps) if args.child == "paper" else _sim(args.child, args.clips, args.batch)
    print(json.dumps(result))


def _run_child(kind: str, args, **extra) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--threads", str(args.threads), "--clips", str(args.clips),
           "--steps", str(args.steps)] + [f"--{k}={v}" for k, v in extra.items()]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"{kind} benchmark failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--clips", type=int, default=8, help="clips generated per sim measurement")
    p.add_argument("--batches", default="8", help="comma-separated sim batch sizes")
    p.add_argument("--steps", type=int, default=1, help="timed paper-size steps")
    p.add_argument("--skip-paper", action="store_true")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=8, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return _child(args)
    print(f"video stage benchmark, {args.threads} threads")
    for variant in ("full", "no_keyframe"):
        for batch in (int(b) for b in args.batches.split(",")):
            r = _run_child(variant, args, batch=batch)
            print(f"  sim {variant:11s} batch {batch:2d}, {r['steps']} DDIM steps, CFG {r['cfg']}: "
                  f"{r['seconds_per_clip']:.2f} s per clip -> {r['test_set_minutes']:.1f} min for the "
                  f"{SIM_TEST_CLIPS}-clip test set; peak RSS {r['peak_rss_mb']:.0f} MB")
    if not args.skip_paper:
        r = _run_child("paper", args)
        extra = f", peak CUDA {r['peak_cuda_mb']:.0f} MB" if "peak_cuda_mb" in r else ""
        print(f"  paper size on {r['device']} ({r['dtype']}): UNetMotionModel {r['unet_params_m']:.0f} M + SparseCtrl "
              f"{r['sparsectrl_params_m']:.0f} M parameters; one CFG step of one clip {r['seconds_per_step']:.2f} s "
              f"-> {r['official_chain_seconds_per_clip']:.0f} s per clip for the official 25 steps; peak RSS "
              f"{r['peak_rss_mb']:.0f} MB{extra}")


if __name__ == "__main__":
    main()
