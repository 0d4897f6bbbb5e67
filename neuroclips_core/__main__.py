"""Command line: ``python -m neuroclips_core {simulate,prepare,import-release,train-standins,standins,ablations,
vendor-assets} ...``
(DESIGN.md §7)."""
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

    ts = sub.add_parser("train-standins", help="train (or resume) the sim profile's stand-in models and save them "
                                               "into the package (seeded, logged, resumable)")
    ts.add_argument("--roles", default=None,
                    help="comma-separated roles (default: every role with a recipe), trained in dependency order")
    ts.add_argument("--quick", action="store_true",
                    help="a handful of steps per role (tests); writes to runs/standins-quick/ unless --out is given")
    ts.add_argument("--out", default=None, help="output root, one folder per role (default: the shipped "
                                                "neuroclips_core/zoo/standin_weights/)")
    ts.add_argument("--work", default=None, help="checkpoints and logs (default: runs/standins/); rerunning the "
                                                 "same command resumes from them")
    ts.add_argument("--seed", type=int, default=0)
    ts.add_argument("--steps", default=None, help="per-role step counts, e.g. vae=1500,frame_classifier=2500")
    ts.add_argument("--max-minutes", type=float, default=None,
                    help="stop a role (with a checkpoint) after this many minutes of training in this call; "
                         "run the same command again to continue")
    ts.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    ts.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")

    rep = sub.add_parser("standins", help="the stand-ins' stamps: training time, size, and each held-out metric "
                                          "beside its baseline and the issue's target")
    rep.add_argument("--root", default=None, help="stand-in root (default: the shipped weights)")
    rep.add_argument("--evaluate", default=None, metavar="ROLES",
                     help="judge these trained roles again first (comma-separated) and update their stamps, e.g. "
                          "the VAE once the frame classifier that judges it is trained")

    abl = sub.add_parser("ablations", help="chapter 04 under papermill for every variant and subject (the batch of "
                                           "chapter 06), then Table 2 per subject and the paper's directions")
    abl.add_argument("--subjects", default="1,2,3", help="comma-separated subjects (default 1,2,3)")
    abl.add_argument("--variants", default="full,no_keyframe,no_blurry,fmri_caption",
                     help="comma-separated variants (default: all four)")
    abl.add_argument("--profile", default="sim", choices=["sim", "paper"])
    abl.add_argument("--seed", type=int, default=0)
    abl.add_argument("--quick", action="store_true", help="chapter 04's quick mode (3-step chain, first 24 clips)")
    abl.add_argument("--n-clips", type=int, default=None, help="the first n test clips (default: all; 24 quick)")
    abl.add_argument("--data-root", default=None)
    abl.add_argument("--run-root", default=None)
    abl.add_argument("--parallel", type=int, default=1,
                     help="subjects at once, each kernel with an equal share of NEUROCLIPS_THREADS (default 1)")

    va = sub.add_parser("vendor-assets", help="download the built book's MathJax, require.js and widget manager from "
                                              "npm into book/_vendor, so its pages work offline")
    va.add_argument("--out", default=None, help="vendor folder (default: book/_vendor)")
    va.add_argument("--force", action="store_true", help="download again even when the stamp matches")

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
    elif args.command == "train-standins":
        import torch
        from transformers.utils import logging as transformers_logging

        from .zoo.standins import parse_steps, train_standins
        from .zoo.train import RunOptions, TrainError

        transformers_logging.disable_progress_bar()      # per-file load/save bars would drown the training log
        if args.threads:
            torch.set_num_threads(args.threads)
        roles = [r.strip() for r in args.roles.split(",") if r.strip()] if args.roles else None
        try:
            results = train_standins(roles, out=args.out, work=args.work, seed=args.seed, quick=args.quick,
                                     steps=parse_steps(args.steps),
                                     options=RunOptions(max_minutes=args.max_minutes, device=args.device))
        except (TrainError, ValueError) as e:     # a wrong option or a checkpoint of another run: no traceback
            print(f"train-standins: error: {e}", file=sys.stderr)
            return 2
        return 0 if all(r.finished for r in results.values()) else 3
    elif args.command == "standins":
        import pandas as pd

        from .zoo.standins import StandinError, evaluate_standin
        from .zoo.targets import stamp_summary, targets_table

        for role in filter(None, (r.strip() for r in (args.evaluate or "").split(","))):
            try:
                metrics = evaluate_standin(role, args.root)
            except (StandinError, ValueError) as e:
                print(f"standins: error: {e}", file=sys.stderr)
                return 2
            print(f"{role}: evaluated again: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                                          for k, v in metrics.items()))
        with pd.option_context("display.width", 200, "display.max_colwidth", 70, "display.precision", 3):
            summary, table = stamp_summary(args.root), targets_table(args.root)
            print(summary.to_string(index=False) if len(summary) else "no trained stand-in found", end="\n\n")
            print(table.to_string(index=False))
        return 0 if table["met"].all() else 4
    elif args.command == "vendor-assets":
        from .book_assets import vendor_assets

        try:
            got = vendor_assets(args.out, force=args.force)
        except RuntimeError as e:
            print(f"vendor-assets: error: {e}", file=sys.stderr)
            return 2
        print("vendored: " + ", ".join(f"{k} {v}" for k, v in got.items()))
    elif args.command == "ablations":
        import pandas as pd

        from .ablations_run import collect, direction_checks, run_batch, wide
        from .config import ConfigError, SUBJECTS, make_config
        from .notebook import parameter_list
        from .notebook_batch import check_parallel
        from .video_run import VARIANTS

        try:
            subjects = parameter_list(args.subjects, SUBJECTS, "--subjects", [])
            variants = parameter_list(args.variants, VARIANTS, "--variants", [])
            cfg = make_config(profile=args.profile, quick=args.quick, seed=args.seed, data_root=args.data_root,
                              run_root=args.run_root)
            check_parallel(args.parallel)
        except (ConfigError, ValueError) as e:
            print(f"ablations: error: {e}", file=sys.stderr)
            return 2
        variants = ["full", *[v for v in variants if v != "full"]]
        for path in run_batch(cfg, subjects, variants, n_clips=args.n_clips, parallel=args.parallel):
            print(f"executed {path}")
        scores = collect(cfg, subjects, variants)
        with pd.option_context("display.width", 200, "display.precision", 3):
            for s in subjects:
                print(f"\nsubject {s}\n" + wide(scores[scores.subject == s]).to_string())
            if set(variants) >= {"no_blurry", "no_keyframe"}:
                print("\n" + pd.DataFrame(direction_checks(scores)).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
