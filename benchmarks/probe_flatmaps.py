"""Probe: chapter 07's area-group shares and the paper's two checks, from chapters 02-03's checkpoints of a run.

Calls :func:`neuroclips_core.flatmaps_run.voxel_weight_maps`, the function chapter 07 calls (so it also rewrites
each subject's ``flatmaps/`` folder), and prints for each measure the PR's and SR's shares of V1-V3 and of the
ventral / higher group beside the measure's baseline (equal weights, or a random layer's pattern), the pattern of
the PR's frozen ridge skip where it has one, then the checks over the subjects given::

    .venv/bin/python benchmarks/probe_flatmaps.py --seed 27 --run-root runs/seed27 --subjects 1,2,3

Subjects without chapters 02-03 on disk are skipped with the message that says what to run.  About 30 s a
subject on one thread.
"""
from __future__ import annotations

import argparse

import torch

from neuroclips_core.config import make_config
from neuroclips_core.flatmaps_run import MEASURES, baseline_shares, direction_checks, voxel_weight_maps
from neuroclips_core.notebook import cpu_threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run-root", default=None)
    parser.add_argument("--subjects", default="1,2,3")
    args = parser.parse_args()
    torch.set_num_threads(cpu_threads())          # NEUROCLIPS_THREADS, default 2
    print(f"seed {args.seed}, run root {args.run_root or 'runs'}")
    print(f"{'subject':>7} {'measure':>9}  V1-V3: PR / SR (baseline)   ventral: PR / SR (baseline)")
    summaries = {}
    for subject in (int(s) for s in args.subjects.split(",")):
        cfg = make_config(profile="sim", subject=subject, seed=args.seed, run_root=args.run_root)
        try:
            summary = voxel_weight_maps(cfg, subject).summary
        except FileNotFoundError as err:
            print(f"{subject:>7}  skipped: {str(err).splitlines()[0][:100]}")
            continue
        summaries[subject] = summary
        for measure in MEASURES:
            mass, base = summary["mass"][measure], baseline_shares(summary, measure)
            print(f"{subject:>7} {measure:>9}  " + "   ".join(
                f"{mass['pr'][g]:.3f} / {mass['sr'][g]:.3f} ({base[g]:.3f})" for g in ("early", "higher")))
        if "pr_ridge_skip_pattern" in summary:
            skip = summary["pr_ridge_skip_pattern"]
            print(f"{subject:>7} {'':>9}  the PR's ridge skip, pattern: V1-V3 {skip['early']:.3f}, "
                  f"ventral {skip['higher']:.3f}")
    if summaries:
        for measure in MEASURES:
            checks = direction_checks(summaries, measure)
            print(f"checks over subjects {sorted(summaries)}, {measure}: PR's V1-V3 > SR's: "
                  f"{checks['pr_early_above_sr']}, SR's ventral > PR's: {checks['sr_higher_above_pr']}")


if __name__ == "__main__":
    main()
