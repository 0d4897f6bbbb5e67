"""Probe: how well chapter 05's judges tell same-class neighbouring test clips apart, without generating a video.

Prints, per subject, each judge's accuracy on the neighbouring test pairs beside always answering "same" (the
majority), from :func:`neuroclips_core.fusion_run.judge_probabilities`, the very function chapter 05 calls.  The
``fmri_class`` judge needs only chapter 01's store, so it can be checked on a fresh seed in minutes; the
``keyframe`` judge needs chapter 03's keyframes and is skipped (with a note) where they are missing::

    .venv/bin/python benchmarks/probe_fusion_judges.py --seed 41 --run-root runs/seed41 --subjects 1,2,3

**Measured** (2026-12-01, all 240 test clips, 239 pairs; 2 threads, about 30 s a subject for ``fmri_class``):

| seed | role | keyframe (the paper's), subjects 1 / 2 / 3 | fmri_class | its class decoder's top-1 | always "same" |
|---|---|---|---|---|---|
| 12 | where the ``fmri_class`` design was chosen | 0.561 / - / - | 0.883 / 0.887 / 0.900 | 0.854 / 0.875 / 0.838 | 0.632 |
| 27 | used by chapter 05 before | 0.594 / 0.594 / 0.603 | 0.874 / 0.900 / 0.849 | | 0.636 |
| 41 | seen with the raw-fMRI version only | - / - / - | 0.845 / 0.874 / 0.854 | 0.829 / 0.842 / 0.850 | 0.623 |
| 53 | made after the design was final | - / - / - | **0.921 / 0.891 / 0.908** | 0.879 / 0.863 / 0.846 | 0.623 |

(- : chapter 03 had not run for that subject.)  The design ran through a scratch version of this probe on seed 12
first, with the raw fMRI in place of the decoder's scores: the 4-clip window gave 0.820 / 0.837 / 0.833, the pair's
cosine alone 0.741 on subject 1; on seeds 27 and 41 the raw-fMRI window gave 0.845 / 0.841 / 0.837 and
0.803 / 0.799 / 0.787, which is why the class decoder came in (chosen on seed 12: 0.883 / 0.887 / 0.900).

On seed 12, subject 1, these were tried and not kept (accuracy on the test pairs): the cosine of the pair's fMRI
alone, 0.741; a window of 6 clips instead of 4, 0.824 (subjects 2 and 3: 0.833, 0.803, below the 4-clip window's);
the responses projected on their top 16 / 64 / 256 principal components first, 0.774 / 0.824 / 0.824; the judge
cross-validated on the test pairs instead of trained on the training runs, 0.791; the training runs' single
repetitions instead of their mean, 0.816; the paper's keyframe MLP trained on the training runs' true keyframes,
0.590 (0.908 on the test clips' true keyframes: the reconstructed keyframes are what limits it).
"""
from __future__ import annotations

import argparse

import torch

from neuroclips_core.config import make_config
from neuroclips_core.data.ensure import ensure_store
from neuroclips_core.fusion_run import JUDGES, judge_probabilities, judge_scores
from neuroclips_core.notebook import cpu_threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run-root", default=None)
    parser.add_argument("--subjects", default="1")
    parser.add_argument("--judges", default=",".join(JUDGES))
    args = parser.parse_args()
    torch.set_num_threads(cpu_threads())          # NEUROCLIPS_THREADS, default 2
    print(f"seed {args.seed}, run root {args.run_root or 'runs'}")
    print(f"{'subject':>7} {'judge':>13} {'accuracy':>8} {'balanced':>8} {'majority':>8} {'pairs':>5}  trained on")
    for subject in (int(s) for s in args.subjects.split(",")):
        cfg = make_config(profile="sim", subject=subject, seed=args.seed, run_root=args.run_root)
        store = ensure_store(cfg, subject, progress=False)
        for judge in args.judges.split(","):
            try:
                truth, prob, judged = judge_probabilities(cfg, store, judge, store.n_test, device="cpu")
            except FileNotFoundError as err:
                print(f"{subject:>7} {judge:>13}  skipped: {str(err).splitlines()[0][:90]}")
                continue
            s = judge_scores(truth, prob > 0.5)
            print(f"{subject:>7} {judge:>13} {s['accuracy']:8.3f} {s['balanced_accuracy']:8.3f} "
                  f"{s['majority_rate']:8.3f} {s['n_pairs']:5d}  {judged['trained_on']}"
                  + (f"; class decoder top-1 {judged['decoder_top1']:.3f}" if "decoder_top1" in judged else ""))


if __name__ == "__main__":
    main()
