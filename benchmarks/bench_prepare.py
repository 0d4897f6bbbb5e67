"""Benchmark the raw -> store preprocessing of one subject: wall time, peak memory, per-stage breakdown.

Runs ``python -m neuroclips_core prepare --no-frames`` (``prepare_subject(..., with_frames=False)``) in a
child process, so the peak resident memory measured (``RUSAGE_CHILDREN``) is that of the preprocessing
alone, not of this script or of a simulation that ran before it.  Target on the 2-core reference machine,
for cc2017-sim's ``full`` preset (18 x 2 training + 5 x 10 test runs): <= 2 min and <= 2 GB.

    .venv/bin/python benchmarks/bench_prepare.py --data-root data/cc2017-sim/full-seed0 --simulate
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GOAL_SECONDS, GOAL_MB = 120.0, 2048.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", required=True, help="folder holding video_fmri_dataset/")
    ap.add_argument("--subject", type=int, default=1, choices=[1, 2, 3])
    ap.add_argument("--out", default=None, help="store folder (default: a temporary folder, deleted afterwards)")
    ap.add_argument("--simulate", action="store_true",
                    help="if --data-root holds no dataset yet, simulate cc2017-sim's 'full' preset there first")
    ap.add_argument("--seed", type=int, default=0, help="simulation seed (with --simulate)")
    ap.add_argument("--strict", action="store_true", help="exit with status 1 when a goal is missed")
    args = ap.parse_args(argv)

    sys.path.insert(0, str(REPO))
    from neuroclips_core.data import layout

    root = Path(args.data_root).resolve()
    if not layout.subject_dir(root, args.subject).is_dir():
        if not args.simulate:
            print(f"{root}: no subject{args.subject} dataset there; pass --simulate to create cc2017-sim 'full'",
                  file=sys.stderr)
            return 2
        from neuroclips_core.data.simulate import simulate_dataset  # lazy: only needed to create the data

        t0 = time.perf_counter()
        simulate_dataset(root, preset="full", seed=args.seed, subjects=[args.subject], progress=True)
        print(f"simulated {root} in {time.perf_counter() - t0:.1f} s (not part of the benchmark)")

    with tempfile.TemporaryDirectory(prefix="bench_prepare_") as tmp:
        out = Path(args.out).resolve() if args.out else Path(tmp) / "store"
        cmd = [sys.executable, "-m", "neuroclips_core", "prepare", "--data-root", str(root),
               "--subject", str(args.subject), "--out", str(out), "--no-frames"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            print(f"prepare failed with status {proc.returncode}", file=sys.stderr)
            return proc.returncode
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # Linux reports KiB
        meta = json.loads((out / "meta.json").read_text())

    print(f"\nprepare subject {args.subject} of {root} (fMRI only)")
    print(f"  runs: {len(meta['train_segments'])} training segments x 2 + {len(meta['test_segments'])} test x 10; "
          f"V = {meta['n_voxels']} selected vertices")
    print(f"  {'stage':<24}{'seconds':>10}{'peak RSS so far (MB)':>24}")
    for stage, entry in meta["timings"].items():
        print(f"  {stage:<24}{entry['seconds']:>10.1f}{entry.get('peak_rss_mb', float('nan')):>24.0f}")
    ok_t, ok_m = wall <= GOAL_SECONDS, peak_mb <= GOAL_MB
    print(f"  {'total (incl. start-up)':<24}{wall:>10.1f}")
    print(f"  wall time {wall:.1f} s (goal <= {GOAL_SECONDS:.0f} s): {'ok' if ok_t else 'MISSED'}")
    print(f"  peak RSS  {peak_mb:.0f} MB (goal <= {GOAL_MB:.0f} MB): {'ok' if ok_m else 'MISSED'}")
    return 1 if args.strict and not (ok_t and ok_m) else 0


if __name__ == "__main__":
    sys.exit(main())
