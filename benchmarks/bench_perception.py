"""Benchmark the Perception Reconstructor's training step: throughput (clips/s) and peak memory.

Two measurements, each in its own child process (so each peak is its own):

- **sim** size on the CPU (the default cc2017-sim recipe: ~6000 voxels, latents 4 x 16 x 16, batch 32, the sim
  loss), with the time of one epoch of the default preset's 3840 training clips and of the recipe's epochs;
- **refine**, the sim recipe's stage 2 on the CPU: a step of the latent refiner through the shipped VAE stand-in's
  decoder (one frame a clip, the pixel loss), with the time of the recipe's refiner epochs;
- **paper** size (13447 voxels, hidden 4096, latents 4 x 28 x 28, ~228 M parameters) on whatever device is
  present (CUDA if available, with bf16 autocast as the training loop uses; else the CPU), at a small batch.

Each step is a full training step: forward, the loss, backward, AdamW.  Synthetic inputs (the step's cost does
not depend on the values).  ::

    .venv/bin/python benchmarks/bench_perception.py [--threads 2] [--steps 10] [--paper-batch 2] [--skip-paper]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from _timing import device_name, peak_rss_mb, seconds_per_step

REPO = Path(__file__).resolve().parents[1]
SIM_TRAIN_CLIPS = 3840          # default preset: 18 segments x 240 clips, minus 2 validation segments


def measure(part: str, steps: int, batch: int, threads: int | None, voxels: int) -> dict:
    import torch

    sys.path.insert(0, str(REPO))
    from neuroclips_core.models.losses import PerceptionLoss
    from neuroclips_core.models.perception import PerceptionConfig, PerceptionReconstructor, count_parameters
    from neuroclips_core.perception_run import SIM_LOSS, PerceptionRunConfig

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    device = torch.device("cuda" if part == "paper" and torch.cuda.is_available() else "cpu")
    rss0 = peak_rss_mb()
    # the sim recipe's model as chapter 02 trains it (with its ridge skip); the paper size as the official code
    cfg = (PerceptionRunConfig.sim().model_config(voxels, (4, 16, 16)) if part in ("sim", "refine")
           else PerceptionConfig.paper(voxels))
    model = PerceptionReconstructor(cfg).to(device).train()
    if model.refiner is not None:
        model.refiner.requires_grad_(False)               # stage 1 trains everything but the refiner
    bf16 = device.type == "cuda"
    fmri = torch.randn(batch, voxels, device=device)
    if part == "refine":                                  # stage 2: only the refiner, through the VAE decoder
        from neuroclips_core.perception_refine import RefinerStage, pixel_loss_fn
        from neuroclips_core.zoo import load_standin

        trained = RefinerStage(model, load_standin("vae"))
        loss_fn = pixel_loss_fn(PerceptionRunConfig.sim().refine_blur)
        batch_data = {"fmri": fmri, "skip": torch.randn(batch, cfg.n_frames, *cfg.latent_shape),
                      "frame": torch.rand(batch, 3, 64, 64), "frame_index": torch.randint(0, cfg.n_frames, (batch,))}
        forward = lambda: loss_fn(trained, batch_data, None)[0]
    else:
        trained = model
        loss_fn = PerceptionLoss(SIM_LOSS if part == "sim" else PerceptionRunConfig.paper().loss)
        batch_data = {"latents": torch.randn(batch, cfg.n_frames, *cfg.latent_shape, device=device)}
        forward = lambda: loss_fn(model(fmri), batch_data)[0]
    opt = torch.optim.AdamW([p for p in trained.parameters() if p.requires_grad], lr=1e-4)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = forward()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    seconds = seconds_per_step(step, steps, device, warmup=2)
    out = {"part": part, "device": device_name(device),
           "threads": torch.get_num_threads(), "voxels": voxels, "latents": list(cfg.latent_shape),
           "parameters": count_parameters(trained), "batch": batch, "bf16": bf16, "step_s": seconds,
           "clips_per_s": batch / seconds, "peak_rss_mb": peak_rss_mb(), "rss_before_model_mb": rss0}
    if device.type == "cuda":
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--steps", type=int, default=10, help="timed training steps per measurement")
    ap.add_argument("--sim-voxels", type=int, default=6000)
    ap.add_argument("--paper-voxels", type=int, default=13447, help="subject 1's voxel count")
    ap.add_argument("--paper-batch", type=int, default=2)
    ap.add_argument("--skip-paper", action="store_true")
    ap.add_argument("--part", choices=["sim", "refine", "paper"], help=argparse.SUPPRESS)       # child process
    args = ap.parse_args(argv)

    if args.part:
        voxels = args.paper_voxels if args.part == "paper" else args.sim_voxels
        batch = args.paper_batch if args.part == "paper" else _sim_recipe().batch_size
        print(json.dumps(measure(args.part, args.steps, batch, args.threads, voxels)))
        return 0

    results = []
    for part in ("sim", "refine") + (() if args.skip_paper else ("paper",)):
        cmd = [sys.executable, __file__, "--part", part, "--steps", str(args.steps), "--sim-voxels",
               str(args.sim_voxels), "--paper-voxels", str(args.paper_voxels), "--paper-batch", str(args.paper_batch)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{part}: failed with status {proc.returncode}\n{proc.stderr[-2000:]}", file=sys.stderr)
            return proc.returncode
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))

    print("Perception Reconstructor training step (forward + loss + backward + AdamW; refine: the refiner's "
          "parameters only)")
    for r in results:
        mem = f"peak GPU {r['peak_gpu_mb']:.0f} MB, " if "peak_gpu_mb" in r else ""
        print(f"  {r['part']:5s} size on {r['device']}, {r['threads']} thread(s): {r['parameters'] / 1e6:.2f} M "
              f"parameters, V={r['voxels']}, latents {'x'.join(map(str, r['latents']))}, batch {r['batch']}"
              f"{' (bf16)' if r['bf16'] else ''}")
        print(f"        {r['clips_per_s']:.1f} clips/s ({r['step_s'] * 1000:.0f} ms/step); {mem}peak RSS "
              f"{r['peak_rss_mb']:.0f} MB (process before the model: {r['rss_before_model_mb']:.0f} MB)")
        if r["part"] == "sim":
            epochs = _sim_recipe().epochs
            epoch = SIM_TRAIN_CLIPS / r["clips_per_s"]
            print(f"        one epoch of the default preset ({SIM_TRAIN_CLIPS} clips): {epoch:.0f} s; the sim "
                  f"recipe's {epochs} epochs: {epochs * epoch / 60:.1f} min (+ validation, VAE, ridge)")
        if r["part"] == "refine":
            epochs = _sim_recipe().refine_epochs
            epoch = SIM_TRAIN_CLIPS / r["clips_per_s"]
            print(f"        one refiner epoch ({SIM_TRAIN_CLIPS} clips, one frame each): {epoch:.0f} s; the sim "
                  f"recipe's {epochs}: {epochs * epoch / 60:.1f} min (+ out-of-fold ridge, validation)")
    return 0


def _sim_recipe():
    """The sim training recipe (its batch size and epochs set the benchmark's batch and the time estimate)."""
    sys.path.insert(0, str(REPO))
    from neuroclips_core.perception_run import PerceptionRunConfig

    return PerceptionRunConfig.sim()


if __name__ == "__main__":
    sys.exit(main())
