"""Benchmark chapter 06's batch on a CPU: subjects one after another at two threads, or side by side at one each.

Both arms run the same batch (``run_batch``: chapter 04 under papermill per subject, chapters 02 and 03 inside it)
into fresh run folders of their own, so each pays for its own training, caches and generation; the dataset is
simulated once beforehand, outside the timing.  The two kernels of the side-by-side arm find the shared caches
(stimulus latents, CLIP tokens) empty and both fill them, work the book does not repeat (subject 1's chapters 02-03
fill them before chapter 06), so the arm likely understates the book's speed-up.  It prints each arm's wall time,
the speed-up, and the largest difference between the two arms' scores (thread counts move the last float digits,
so the scores agree closely, not bit for bit).  ::

    .venv/bin/python benchmarks/bench_parallel_subjects.py [--subjects 2,3] [--variants full,no_blurry] \\
        [--full] [--work runs/bench/parallel_subjects] [--arm {both,serial,side}]

``--full`` runs the default sizes (hours) instead of quick mode (minutes).  Run it on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

from neuroclips_core.ablations_run import collect, run_batch
from neuroclips_core.config import make_config
from neuroclips_core.data.simulate import simulate_dataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subjects", default="2,3")
    ap.add_argument("--variants", default="full,no_blurry")
    ap.add_argument("--full", action="store_true", help="default sizes, not quick mode")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2, help="the machine's threads (default 2)")
    ap.add_argument("--work", default="runs/bench/parallel_subjects")
    ap.add_argument("--arm", choices=["both", "serial", "side"], default="both",
                    help="run one arm only; the other's last result in --work is read back for the comparison")
    args = ap.parse_args()
    subjects = [int(s) for s in args.subjects.split(",")]
    variants = args.variants.split(",")
    work = Path(args.work)

    base = make_config(quick=not args.full, seed=args.seed)
    simulate_dataset(base.data_root, base.sim_preset, base.seed, subjects=subjects)   # untimed, shared
    arms = {"serial": ("one after another", 1), "side": ("side by side", min(len(subjects), args.threads))}
    for key, (name, parallel) in arms.items():
        if args.arm not in ("both", key):
            continue
        run_root = work / key
        shutil.rmtree(run_root, ignore_errors=True)
        cfg = make_config(quick=not args.full, seed=args.seed, data_root=base.data_root, run_root=run_root)
        os.environ["NEUROCLIPS_THREADS"] = str(args.threads)      # run_batch shares these among its kernels
        t0 = time.perf_counter()
        run_batch(cfg, subjects, variants, progress=False, parallel=parallel)
        minutes = (time.perf_counter() - t0) / 60
        (run_root / "minutes.json").write_text(json.dumps({"minutes": minutes, "parallel": parallel,
                                                           "threads": args.threads, "subjects": subjects,
                                                           "variants": variants, "quick": not args.full}))
        print(f"{name}: {len(subjects)} subjects x {len(variants)} variants, {parallel} at once, "
              f"{max(1, args.threads // parallel)} thread(s) each: {minutes:.1f} min", flush=True)
    if not all((work / key / "minutes.json").is_file() for key in arms):
        return
    minutes = {key: json.loads((work / key / "minutes.json").read_text())["minutes"] for key in arms}
    print(f"speed-up side by side: {minutes['serial'] / minutes['side']:.2f}x "
          f"({minutes['serial']:.1f} -> {minutes['side']:.1f} min)")
    scores = [collect(make_config(quick=not args.full, seed=args.seed, data_root=base.data_root,
                                  run_root=work / key), subjects, variants)
              .set_index(["subject", "variant", "column"])["mean"] for key in arms]
    diff = (scores[0] - scores[1]).abs()
    print(f"scores: largest difference between the arms {diff.max():.4f} (subject, variant, column: "
          f"{', '.join(map(str, diff.idxmax()))}), median {diff.median():.4f}")

if __name__ == "__main__":
    main()
