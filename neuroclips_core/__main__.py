"""Command line: ``python -m neuroclips_core {simulate,prepare,import-release} ...`` (DESIGN.md §7)."""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m neuroclips_core", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("simulate", help="write cc2017-sim (cc2017 layout + ground truth) to --out")
    sim.add_argument("--preset", choices=["tiny", "default", "full"], default="default")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--out", required=True, help="dataset root (gets video_fmri_dataset/ and ground_truth/)")
    sim.add_argument("--subjects", default="1,2,3", help="comma-separated subjects to simulate (default 1,2,3)")

    prep = sub.add_parser("prepare", help="raw cc2017 layout (real or sim) -> processed store")
    prep.add_argument("--data-root", required=True)
    prep.add_argument("--subject", type=int, required=True, choices=[1, 2, 3])
    prep.add_argument("--out", required=True, help="store folder to write")
    prep.add_argument("--frame-size", type=int, default=None, help="stored frame side in pixels")
    prep.add_argument("--no-frames", action="store_true", help="fMRI only (e.g. the fMRI-only 'full' preset)")

    rel = sub.add_parser("import-release", help="the authors' preprocessed .pt release -> processed store")
    rel.add_argument("--release-dir", required=True)
    rel.add_argument("--subject", type=int, required=True, choices=[1, 2, 3])
    rel.add_argument("--out", required=True)
    rel.add_argument("--frame-size", type=int, default=None)
    rel.add_argument("--voxel-indices", default=None,
                     help="optional .npy of the 59412-space indices of the release's voxels (not in the release)")

    args = parser.parse_args(argv)
    if args.command == "simulate":
        from .data.simulate import simulate_dataset

        subjects = [int(s) for s in args.subjects.split(",") if s.strip()]
        simulate_dataset(args.out, preset=args.preset, seed=args.seed, subjects=subjects, progress=True)
    elif args.command == "prepare":
        from .data.prepare import prepare_subject

        prepare_subject(args.data_root, args.subject, args.out, frame_size=args.frame_size,
                        with_frames=not args.no_frames, progress=True)
    elif args.command == "import-release":
        from .data.release import import_release

        import_release(args.release_dir, args.subject, args.out, frame_size=args.frame_size,
                       voxel_indices=args.voxel_indices, progress=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
