"""What the stand-in probes beside it share: their command line (model folders to compare, how many held-out corpus
clips) and those clips.  Imported by the scripts in this folder (run as ``python benchmarks/<script>.py``)."""
from __future__ import annotations

import argparse


def folders_and_heldout_clips(doc: str, role: str, clips: int):
    """Parse ``[folders ...] [--clips N] [--corpus-seed S]`` (``doc``'s first paragraph as the description), set
    the torch threads as the book does, and return ``(args, the held-out corpus clips)``."""
    import torch

    from neuroclips_core.notebook import cpu_threads
    from neuroclips_core.zoo.corpus import heldout_clips

    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("folders", nargs="*", help=f"{role} folders (default: the shipped stand-in)")
    ap.add_argument("--clips", type=int, default=clips)
    ap.add_argument("--corpus-seed", type=int, default=0, help="the stand-ins' corpus seed (their held-out split)")
    args = ap.parse_args()
    torch.set_num_threads(cpu_threads())
    return args, heldout_clips(args.corpus_seed, args.clips)
