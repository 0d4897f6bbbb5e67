"""Probe: how much of a keyframe reaches the video, by SparseCtrl weight and theta?  On the development seed.

Chapter 04's videos barely use their keyframes on sim (removing the keyframe leaves the video 50-way unchanged).
This probe asks how much a keyframe *can* steer the video stand-ins, free of the SR's errors: every test clip gets
its **true** keyframe (the stored frame the SR targets, ``KEYFRAME_INDEX``) or, as the control, the true keyframe of
another clip (a derangement), and the pipeline runs at each SparseCtrl weight (``keyframe_scale``; 0 = no
keyframe) and theta.  Scores are chapter 04's (:func:`neuroclips_core.video_run.score_videos`) on the first
``--clips`` test clips.  The gap between ``true`` and ``other`` is what the keyframe carries.

Run it on a seed the evaluation never uses (the book's development seed, 11, under ``runs/sim``: chapter 02 must
have run for the subject there)::

    .venv/bin/python benchmarks/probe_video_guidance.py --seed 11 --subject 1 --clips 96 \\
        --scales 0,1,2,4 --thetas 0.3 [--run-root runs]

Prompts are empty: the epsilon t2v stand-in of this measurement ignored its caption, so a caption would only have
added the captioner's cost (the v-prediction t2v shipped since reads it; ``zoo/train/video.py``).

**Measured** (seed 11, subject 1, 96 clips, 2 threads, 2026-11-30, the first SparseCtrl stand-in: 600 steps):

| row | SSIM S2 | frame 50-way | video 50-way | CLIP-pcc@3fps | CLIP sim. to truth |
|---|---|---|---|---|---|
| blurry video alone | 0.783 | 0.070 | 0.036 | 1.000 | 0.148 |
| true keyframe held still for 16 frames | 0.804 | 0.839 | 0.559 | 1.000 | 0.877 |
| no keyframe (scale 0) | 0.666 | 0.082 | 0.093 | 0.682 | 0.086 |
| scale 1, true keyframe / other clip's | 0.672 / 0.662 | 0.089 / 0.089 | 0.107 / 0.077 | 0.681 / 0.674 | 0.115 / 0.082 |
| scale 2, true keyframe / other clip's | 0.673 / 0.650 | 0.088 / 0.082 | 0.086 / 0.078 | 0.682 / 0.669 | 0.147 / 0.067 |

(The ground truth's own CLIP-pcc@3fps: 0.893; 50-way chance 0.058.)  Even a *perfect* keyframe lifts the frame
50-way by 0.007, where the keyframe itself scores 0.84: the video stand-ins lose nearly all of it, and a heavier
SparseCtrl weight does not bring it back.  That is what sent the SparseCtrl stand-in back to training.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from neuroclips_core.artifacts import profile_role, store_with_frames
from neuroclips_core.metrics_semantic import clip_pcc, clip_video_embeddings
from neuroclips_core.notebook import chapter_config
from neuroclips_core.perception_run import load_perception_result
from neuroclips_core.pipelines.blurry import interpolate_frames
from neuroclips_core.semantics_run import KEYFRAME_INDEX
from neuroclips_core.video_run import clip_seeds, generation_config, score_videos, video_pipeline


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--run-root", default=None)
    ap.add_argument("--subject", type=int, default=1)
    ap.add_argument("--clips", type=int, default=96)
    ap.add_argument("--scales", type=floats, default=floats("0,1,2,4"))
    ap.add_argument("--thetas", type=floats, default=floats("0.3"))
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args()
    cfg = chapter_config(profile="sim", subject=args.subject, quick=False, seed=args.seed, data_root=None,
                         run_root=args.run_root)
    store = store_with_frames(cfg, args.subject, None, "the probe scores against the test clips' frames", False)
    n = min(args.clips, store.n_test)
    truth = np.array(store.frames_test[:n])
    blurry = interpolate_frames(np.asarray(load_perception_result(cfg, args.subject).blurry()[:n]), 16)
    keyframes = {"true": truth[:, KEYFRAME_INDEX], "other": truth[np.roll(np.arange(n), n // 2), KEYFRAME_INDEX]}
    pipe = video_pipeline(cfg)
    judges = {role: profile_role(cfg, role, cfg.torch_device())
              for role in ("frame_classifier", "video_classifier", "clip")}
    seeds = clip_seeds(cfg.seed, n)
    base = generation_config(cfg)

    def row(tag: str, videos: np.ndarray, seconds: float | None = None) -> dict:
        s = score_videos(videos, truth, **judges, seed=cfg.seed)
        took = f"  {seconds / n:.2f} s/clip" if seconds is not None else ""
        print(f"{tag:<28} SSIM-S2 {s['ssim_s2']['mean']:.3f}  frame50 {s['frame_50way']['mean']:.3f}  "
              f"video50 {s['video_50way']['mean']:.3f}  CLIP-pcc@3fps {s['clip_pcc_aligned']['mean']:.3f}  "
              f"sim-to-truth {s['clip_similarity_to_truth']['mean']:.3f}{took}", flush=True)
        return s

    print(f"subject {args.subject}, seed {args.seed}, first {n} test clips")
    chance = row("blurry video alone", blurry)["frame_50way"]["chance"]
    truth_pcc = float(clip_pcc(clip_video_embeddings(judges["clip"], truth)).mean())
    print(f"(50-way chance under the top-3 rule: {chance:.3f}; the ground truth's own CLIP-pcc@3fps: {truth_pcc:.3f})")
    row("true keyframe, held still", np.repeat(keyframes["true"][:, None], 16, axis=1))
    for theta in args.thetas:
        for scale in args.scales:
            for source in (("true", "other") if scale > 0 else ("none",)):
                config = base.replace(theta=theta, keyframe_scale=scale if scale > 0 else 1.0)
                t0 = time.monotonic()
                videos = pipe(blurry, keyframes.get(source), [""] * n, seeds=seeds, use_keyframe=scale > 0,
                              config=config, batch_size=args.batch, progress=False)
                row(f"theta {theta:.2f} scale {scale:g} {source}", videos, time.monotonic() - t0)


if __name__ == "__main__":
    with torch.inference_mode():
        main()
