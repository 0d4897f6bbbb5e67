"""Benchmark the Semantics Reconstructor's training steps: throughput (clips/s), peak memory, and the clip-target cache.

Each measurement runs in its own child process (so each peak is its own):

- **backbone** and **prior**, the sim recipe's two stages on the CPU (V = 6000 voxels, the CLIP stand-in's
  64 x 128 tokens, the recipe's batch sizes), with the time of one epoch of the default preset's training clips;
- **cache**: what a training step would pay to encode its keyframes with the shipped CLIP stand-in, against
  reading the same rows from the token cache :func:`~neuroclips_core.semantics_run.train_semantics` writes once
  (float16 memmap), and the whole recipe's saving (both stages' epochs x training clips);
- **paper** size (13447 voxels, hidden 4096, bigG's 256 x 1664 tokens: 1.94 B parameters in the SR, 0.26 B in the
  prior) at batch 2, stage backbone, on whatever device is present: CUDA with bf16 autocast and AdamW as the
  training loop uses; on a CPU, float32 with plain SGD (AdamW's two moments would add 15.5 GB to the 16 GB of
  weights and gradients, more than the 24 GB machine has).

Every step is a full training step of the stage's objective (forward, loss, backward, optimizer step) on
synthetic inputs (the cost does not depend on the values).  ::

    .venv/bin/python benchmarks/bench_semantics.py [--threads 2] [--steps 5] [--skip-paper]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _timing import device_name, peak_rss_mb, seconds_per_step

REPO = Path(__file__).resolve().parents[1]
SIM_TRAIN_CLIPS = 3840          # default preset: 18 segments x 240 clips, minus 2 validation segments
SIM_VOXELS = 6000


def _models(size: str, voxels: int, device):
    from neuroclips_core.models.prior import DiffusionPrior, PriorConfig
    from neuroclips_core.models.semantics import ReftmProjector, SemanticsConfig, SemanticsReconstructor
    from neuroclips_core.semantics_run import SemanticsRunConfig

    if size == "sim":
        run = SemanticsRunConfig.sim()
        sr_cfg = SemanticsConfig.sim(voxels)
        prior_cfg = run.prior_config(sr_cfg.token_shape)
    else:
        sr_cfg, prior_cfg = SemanticsConfig.paper(voxels), PriorConfig.paper()
    sr, prior = SemanticsReconstructor(sr_cfg).to(device), DiffusionPrior(prior_cfg).to(device)
    return sr, prior, ReftmProjector(sr_cfg.token_dim, sr_cfg.text_dim).to(device), sr_cfg


def measure_step(part: str, steps: int, threads: int | None, voxels: int, batch: int | None) -> dict:
    import torch

    from neuroclips_core.models.losses import SemanticsLossConfig
    from neuroclips_core.models.semantics_objective import SemanticsObjective, SemanticsTrainee
    from neuroclips_core.semantics_run import SemanticsRunConfig

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    paper = part == "paper"
    device = torch.device("cuda" if paper and torch.cuda.is_available() else "cpu")
    stage = "prior" if part == "prior" else "backbone"
    run = SemanticsRunConfig.sim()
    batch = batch or run.schedule(stage).batch_size
    rss0 = peak_rss_mb()
    sr, prior, reftm, sr_cfg = _models("paper" if paper else "sim", voxels, device)
    reftm.requires_grad_(False)
    objective = SemanticsObjective(SemanticsLossConfig.for_recipe("official"), stage, 10, lambda: 0, use_text=True)
    trainee = SemanticsTrainee(sr, prior, reftm, objective).train()
    params = [p for p in trainee.parameters() if p.requires_grad]
    bf16 = device.type == "cuda"
    optimizer = (torch.optim.AdamW(params, lr=1e-4) if device.type == "cuda" or not paper
                 else torch.optim.SGD(params, lr=1e-4))
    data = {"fmri": torch.randn(batch, voxels, device=device),
            "tokens": torch.randn(batch, *sr_cfg.token_shape, device=device),
            "text": torch.randn(batch, sr_cfg.text_dim, device=device)}
    generator = torch.Generator(device=device).manual_seed(0)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss, _ = trainee(data, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    seconds = seconds_per_step(step, steps, device)
    out = {"part": part, "stage": stage, "device": device_name(device), "threads": torch.get_num_threads(), "voxels": voxels, "tokens": list(sr_cfg.token_shape),
           "trained_parameters_m": round(sum(p.numel() for p in params) / 1e6, 1), "batch": batch, "bf16": bf16,
           "optimizer": type(optimizer).__name__, "step_s": round(seconds, 4), "clips_per_s": round(batch / seconds, 1),
           "peak_rss_mb": round(peak_rss_mb()), "rss_before_models_mb": round(rss0)}
    if not paper:
        out["epoch_s_default_preset"] = round(SIM_TRAIN_CLIPS / (batch / seconds), 1)
    if device.type == "cuda":
        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2 ** 20)
    return out


def measure_cache(steps: int, threads: int | None) -> dict:
    """Per training batch: encoding its keyframes with CLIP vs reading their cached tokens."""
    import torch

    from neuroclips_core.semantics_run import SemanticsRunConfig
    from neuroclips_core.zoo import load_standin
    from neuroclips_core.zoo.unclip_sampling import image_tokens

    if threads:
        torch.set_num_threads(threads)
    run = SemanticsRunConfig.sim()
    batch = run.backbone_stage.batch_size
    clip = load_standin("clip")
    frames = torch.rand(batch, 3, 64, 64)
    image_tokens(clip, frames)                                           # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        tokens = image_tokens(clip, frames)
    encode_s = (time.perf_counter() - t0) / steps
    with tempfile.TemporaryDirectory() as tmp:                           # the cache: float16 rows in a .npy memmap
        path = Path(tmp) / "tokens.npy"
        np.save(path, np.random.default_rng(0).standard_normal((SIM_TRAIN_CLIPS, *tokens.shape[1:]))
                .astype(np.float16))
        cache = np.load(path, mmap_mode="r")
        rows = np.random.default_rng(1).permutation(SIM_TRAIN_CLIPS)
        t0 = time.perf_counter()
        for k in range(steps):
            torch.from_numpy(np.stack([np.array(cache[r], np.float32) for r in rows[k * batch:(k + 1) * batch]]))
        read_s = (time.perf_counter() - t0) / steps
    epochs = run.backbone_stage.epochs + run.prior_stage.epochs
    return {"part": "cache", "batch": batch, "tokens": list(tokens.shape[1:]), "encode_batch_s": round(encode_s, 4),
            "cached_read_batch_s": round(read_s, 5), "epochs_in_recipe": epochs,
            "saved_per_subject_s": round(epochs * SIM_TRAIN_CLIPS / batch * (encode_s - read_s), 1),
            "one_time_encoding_s": round(SIM_TRAIN_CLIPS / batch * encode_s, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per measurement")
    ap.add_argument("--paper-voxels", type=int, default=13447, help="subject 1's voxel count")
    ap.add_argument("--paper-batch", type=int, default=2)
    ap.add_argument("--skip-paper", action="store_true")
    ap.add_argument("--part", choices=["backbone", "prior", "cache", "paper"], help=argparse.SUPPRESS)  # child
    args = ap.parse_args(argv)

    if args.part:
        sys.path.insert(0, str(REPO))
        if args.part == "cache":
            result = measure_cache(args.steps, args.threads)
        else:
            paper = args.part == "paper"
            result = measure_step(args.part, args.steps if not paper else max(1, min(args.steps, 2)), args.threads,
                                  args.paper_voxels if paper else SIM_VOXELS, args.paper_batch if paper else None)
        print(json.dumps(result))
        return 0

    parts = ["backbone", "prior", "cache"] + ([] if args.skip_paper else ["paper"])
    for part in parts:
        cmd = [sys.executable, __file__, "--part", part, "--steps", str(args.steps),
               "--paper-voxels", str(args.paper_voxels), "--paper-batch", str(args.paper_batch)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            print(f"{part}: failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
            continue
        result = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{part:9s} " + "  ".join(f"{k} {v}" for k, v in result.items() if k != "part"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
