"""Probe: how much of the starting noise should a clip's frames share, and how large should theta be?  On the
stand-ins' held-out corpus clips.

Chapter 04's sim videos flicker: their CLIP-pcc was ~0.70 with the epsilon video stand-ins and is 0.80 with the
v-prediction ones, where the ground truth's is ~0.90, and with the epsilon ones the keyframe's class faded after
frame 0.  The t2v stand-in's motion module is too weak to tie 16 frames drawn from independent noise together.  A video noise prior in which the frames share part of their noise (PYoCo's "mixed" prior; the
pipeline's ``frame_noise_share``, :func:`neuroclips_core.zoo.train.video.clip_noise`) hands the model that tie.
This probe measures it at several shares, with everything else as chapter 04 runs on sim
(:meth:`VideoGenerationConfig.sim`, theta 0.3, the SparseCtrl at 1.0).

It runs on the pretraining corpus' **held-out** clips (``zoo.corpus.heldout_clips``), which no cc2017-sim seed
contains, so the share it picks is chosen on data the book never evaluates on.  Each clip's inputs imitate what
the reconstructors give: the blurry video is the clip through an 8 x 8 bottleneck
(:func:`~neuroclips_core.zoo.train.video.blurred_clips`), the keyframe is the clip's own frame at the stored
keyframe's place (frame ``3 * KEYFRAME_INDEX`` at 8 FPS), the prompt is its corpus caption.  Scores are chapter
04's (:func:`neuroclips_core.video_run.score_videos`) against the clip's 6 frames at the aligned places, plus the
motion-direction agreement of chapter 00b::

    .venv/bin/python benchmarks/probe_frame_noise.py --clips 48 --shares 0,0.5,0.8,0.9,0.95   # and --shares 0,0.9 --steps 10
    .venv/bin/python benchmarks/probe_frame_noise.py --clips 48 --shares 0 --thetas 0.3,0.5,0.7,0.8,0.9

**Measured** (corpus seed 0, 48 held-out clips, 2 threads, 2026-12-01; the epsilon t2v and its SparseCtrl stand-in
of 3600 steps, shipped until the v-prediction retrain below; ground
truth: CLIP-pcc@3fps 0.929; "sim-to-truth" is the CLIP cosine of each aligned frame to its true frame; "direction"
the motion-direction agreement on the moving clips):

| row | SSIM S2 | frame 50-way | video 50-way | CLIP-pcc@3fps | sim-to-truth | direction |
|---|---|---|---|---|---|---|
| blurry video alone | 0.818 | 0.026 | 0.005 | 1.000 | 0.137 | 0.955 |
| keyframe held still | 0.807 | 0.909 | 0.525 | 1.000 | 0.938 | 0.000 |
| share 0 (paper) | **0.730** | 0.111 | 0.104 | 0.741 | **0.397** | 0.841 |
| share 0.5 | 0.675 | 0.106 | 0.160 | 0.741 | 0.309 | 0.818 |
| share 0.8 | 0.646 | 0.111 | 0.159 | 0.840 | 0.270 | 0.841 |
| share 0.9 | 0.636 | 0.129 | 0.163 | 0.896 | 0.253 | 0.841 |
| share 0.95 | 0.631 | 0.155 | 0.124 | **0.932** | 0.245 | 0.841 |
| share 0 / 0.9 at 10 DDIM steps | 0.689 / 0.566 | 0.107 / 0.077 | 0.105 / 0.120 | 0.621 / 0.872 | 0.345 / 0.144 | 0.818 / 0.773 |

Sharing buys smoothness (CLIP-pcc reaches the truth's at 0.9-0.95) and a little class evidence, and costs
fidelity: SSIM falls by 0.09 and the frames' CLIP similarity to the truth by a third.  Looking at the videos says
why: with most of the noise shared, the noise's own pattern fixes the layout, so objects appear where the noise put
them and stay there, in place of following the blurry video (whose weight in z_T is 0.15 on sim).  Alpha guidance
is there to set the layout, so the option stays off by default.  More DDIM steps make the stand-ins' videos flicker
more, not less.

**Retrained video stand-ins** (2026-12-01: the v-prediction t2v, which reads its caption, and the SparseCtrl
retrained on it; 1 thread, same clips):

| row | SSIM S2 | frame 50-way | video 50-way | CLIP-pcc@3fps | sim-to-truth | direction |
|---|---|---|---|---|---|---|
| share 0 (paper) | **0.775** | 0.125 | 0.090 | 0.862 | **0.553** | 0.932 |
| share 0.9 | 0.686 | 0.129 | 0.140 | 0.927 | 0.478 | 0.841 |
| share 0, CFG 3 (`--guidance 3`) | 0.765 | 0.132 | 0.097 | 0.880 | 0.572 | 0.955 |

Against the epsilon stand-ins above, the paper's independent noise gains 0.045 SSIM, 0.12 CLIP-pcc and 0.16
similarity to the truth, and the videos follow the blurry clip's motion more often (0.932).  Sharing still trades
SSIM for smoothness; it stays off.  Classifier-free guidance at 3, now that the caption is read, moves every
score by less than these 48 clips can resolve (CLIP-pcc +0.018, frame 50-way +0.007) at 1.34 times the cost
(1.42 against 1.06 s a clip on 1 thread), so the sim profile keeps running without it.

**Theta** (the epsilon stand-ins, share 0; "w" is the blurry latents' weight in z_T of the 5-step chain):

| theta | SSIM S2 | frame 50-way | video 50-way | CLIP-pcc@3fps | sim-to-truth | direction |
|---|---|---|---|---|---|---|
| 0.3 (paper; w 0.15) | 0.730 | 0.111 | 0.104 | 0.741 | 0.397 | 0.841 |
| 0.5 (w 0.22) | 0.734 | 0.102 | 0.101 | 0.766 | 0.421 | 0.886 |
| 0.7 (w 0.36) | 0.716 | 0.095 | 0.027 | 0.798 | 0.411 | 0.955 |
| 0.8 (w 0.49) | 0.674 | 0.074 | 0.048 | 0.815 | 0.375 | 0.955 |
| 0.9 (w 0.69) | 0.610 | 0.078 | 0.022 | 0.837 | 0.297 | 0.955 |

A heavier blurry video smooths the videos a little and keeps its motion, but past 0.5 it costs SSIM and class
evidence: Eq. 5 hands the UNet, at the chain's first step (t = 801), latents that carry far more signal than that
step's noise level holds, and the model, which takes most of its input for noise there, removes part of the blurry
video with it.  No theta brings the CLIP-pcc near the truth's, so the paper's 0.3 stays.

**Every knob again, on the v-prediction stand-ins** (2026-12-01, 1 thread; corpus: the same 48 held-out clips,
truth CLIP-pcc 0.929; "kf" is the SparseCtrl scale)::

    .venv/bin/python benchmarks/probe_frame_noise.py --clips 48 --shares 0.5,0.7
    .venv/bin/python benchmarks/probe_frame_noise.py --clips 48 --shares 0,0.5 --thetas 0.5,0.7,0.8,0.9
    .venv/bin/python benchmarks/probe_frame_noise.py --clips 48 --shares 0 --keyframe-scales 1.5,2,3
    .venv/bin/python benchmarks/probe_frame_noise.py --clips 48 --shares 0 --steps 10

| row (corpus) | SSIM S2 | frame 50-way | video 50-way | CLIP-pcc@3fps | sim-to-truth | direction |
|---|---|---|---|---|---|---|
| theta 0.3, share 0 (paper; from the table above) | 0.775 | 0.125 | 0.090 | 0.862 | 0.553 | 0.932 |
| share 0.5 / 0.7 | 0.724 / 0.705 | 0.132 / 0.133 | 0.157 / 0.181 | 0.884 / 0.896 | 0.525 / 0.503 | 0.841 / 0.841 |
| theta 0.5 / 0.7 | 0.777 / 0.776 | 0.125 / 0.112 | 0.073 / 0.089 | 0.867 / 0.877 | 0.566 / 0.569 | 0.977 / 0.977 |
| theta 0.8 / 0.9 | 0.771 / 0.760 | 0.097 / 0.093 | 0.083 / 0.096 | 0.881 / 0.881 | 0.561 / 0.545 | 0.977 / 0.977 |
| theta 0.8 / 0.9, share 0.5 | 0.755 / 0.751 | 0.113 / 0.124 | 0.069 / 0.030 | 0.906 / 0.913 | 0.563 / 0.548 | 0.977 / 0.977 |
| kf 1.5 / 2 / 3 | 0.770 / 0.761 / 0.732 | 0.128 / 0.132 / 0.132 | 0.074 / 0.092 / 0.093 | 0.853 / 0.840 / 0.806 | 0.552 / 0.537 / 0.480 | 0.932 / 0.932 / 0.886 |
| 10 DDIM steps | 0.765 | 0.133 | 0.069 | 0.860 | 0.548 | 0.932 |

Unlike the epsilon model, the v model takes a heavier blurry video without losing SSIM (theta 0.8: -0.004), and
its videos follow the blurry motion more often; holding the keyframe harder only makes them worse.  The corpus'
inputs are ideal (the true keyframe and caption), so the knobs were then tried where chapter 04 works, on a
**validation seed**: the first 120 test clips of cc2017-sim seed 12, subject 1, with its chapter 02-03 outputs
(``--run-root runs/seed12 --seed 12 --clips 120``; truth CLIP-pcc 0.902; the blurry video alone scores SSIM 0.774,
frame 50-way 0.100, video 50-way 0.057; the keyframe held still 0.677, 0.155, 0.097).  The unseen seed that the
issues ask for is kept for the final measurement.

| row (seed 12, 120 clips) | SSIM S2 | frame 50-way | video 50-way | CLIP-pcc@3fps | sim-to-truth |
|---|---|---|---|---|---|
| theta 0.3, share 0 (paper) | 0.704 | 0.095 | 0.105 | 0.806 | 0.279 |
| theta 0.3, share 0.5 / 0.7 | 0.647 / 0.628 | 0.066 / 0.059 | 0.091 / 0.093 | 0.840 / 0.869 | 0.156 / 0.134 |
| theta 0.8, share 0 | 0.708 | 0.086 | 0.099 | 0.836 | 0.347 |
| theta 0.8, share 0.5 / 0.7 | 0.688 / 0.679 | 0.083 / 0.082 | 0.073 / 0.072 | 0.856 / 0.873 | 0.308 / 0.290 |

Chapter 04's target is a CLIP-pcc within 0.05 of the truth's (>= 0.852 here) while beating the blurry video on
both 50-way scores.  Only the settings with shared noise reach it, and they give up the 50-way scores (frame
50-way 0.059-0.083 against the blurry video's 0.100) and much of the frames' likeness to the truth.  theta 0.8
alone is the one change with no cost in SSIM and a large gain in likeness (0.347 against 0.279), but it lowers
frame 50-way on both sets (-0.009 here, -0.028 on the corpus), and the CLIP-pcc gain (+0.03) does not reach the
target.

**Sharing only the fine detail** (``--cutoffs``: the frames share their noise above a spatial frequency, a
fraction of Nyquist, and keep their own below it; :func:`neuroclips_core.zoo.train.video.clip_noise`).  Why try it:
the flicker is even, not a jump after the keyframe (the adjacent 8 FPS frames of seed 12's full videos have a CLIP
cosine of 0.78-0.84 at every step), and the sim classes live in a fine texture that each frame drew from its own
noise, while the layout should come from the blurry video, which whole-noise sharing overrides::

    .venv/bin/python benchmarks/probe_frame_noise.py --run-root runs/seed12 --seed 12 --clips 120 --shares 1 --cutoffs 0.5,0.4 --thetas 0.3,0.8
    .venv/bin/python benchmarks/probe_frame_noise.py --clips 48 --shares 1 --cutoffs 0.5,0.4

| row | SSIM S2 | frame 50-way | video 50-way | CLIP-pcc@3fps | sim-to-truth | direction |
|---|---|---|---|---|---|---|
| seed 12: theta 0.3, independent (paper) | 0.704 | 0.095 | 0.105 | 0.806 | 0.279 | |
| seed 12: theta 0.3, share 1 above 0.5 / **0.4** | 0.686 / **0.678** | 0.086 / 0.089 | 0.098 / 0.092 | 0.856 / **0.882** | 0.259 / 0.244 | |
| seed 12: theta 0.8, share 1 above 0.5 / 0.4 | 0.701 / 0.698 | 0.096 / 0.073 | 0.059 / 0.085 | 0.884 / 0.900 | 0.333 / 0.332 | |
| corpus: theta 0.3, independent (paper) | 0.775 | 0.125 | 0.090 | 0.862 | 0.553 | 0.932 |
| corpus: theta 0.3, share 1 above 0.5 / **0.4** | 0.758 / **0.750** | 0.134 / 0.142 | 0.110 / 0.102 | 0.910 / **0.922** | 0.547 / 0.528 | 0.955 / 0.977 |

Sharing the fine detail buys most of what sharing everything bought (CLIP-pcc 0.882 on seed 12, 0.922 on the
corpus against the truth's 0.902 and 0.929) for a third of its SSIM cost, and keeps the 50-way scores and the
blurry video's motion.  theta 0.8 with it keeps more SSIM and likeness but its video 50-way swung low on one of the
two cutoffs; it changes a second of the paper's settings, and 120 clips cannot tell which of the two is better.  So
the sim profile (:meth:`VideoGenerationConfig.sim`) shares the noise above 0.4 x Nyquist with the paper's theta 0.3;
the paper profile keeps the paper's independent noise, since AnimateDiff's motion module does this tying itself.
The score is then read on a seed used for nothing above (chapter 04).

**The keyframe's jump** (2026-12-01, seed 12, 120 clips, the sim sampler; ``CLIP-pcc`` here is the 16-frame
adjacent-frame cosine, ``step 0`` its first step, frames 0 -> 1).  On seed 27 the full videos scored lower CLIP-pcc
than the no-keyframe ones (chapter 06); the per-step cosines show why: 0.842 at step 0, 0.90-0.93 at every other
step, against 0.929 at step 0 without the keyframe.  The SparseCtrl holds the keyframe at its frame and the next
frames follow the blurry video and the t2v.  Three ways to soften the jump, none kept::

    .venv/bin/python benchmarks/probe_frame_noise.py --run-root runs/seed12 --seed 12 --clips 120 --shares 1 --cutoffs 0.4 --keyframe-frames 0,5 --no-keyframe-row
    .venv/bin/python benchmarks/probe_frame_noise.py --run-root runs/seed12 --seed 12 --clips 120 --shares 1 --cutoffs 0.4 --keyframe-scales 0.5,0.75

| row | frame 50-way | video 50-way | CLIP-pcc | step 0 | worst step |
|---|---|---|---|---|---|
| no keyframe | 0.068 | 0.111 | 0.929 | 0.934 | 0.919 |
| keyframe at frame 0, scale 1 (the sampler) | 0.089 | 0.092 | 0.918 | 0.836 | 0.836 (step 0) |
| keyframe at frame 5 (``--keyframe-frames``: stored frame 2, the SR's, is at 2/3 s = video frame 5.3) | 0.076 | 0.084 | 0.911 | 0.935 | 0.813 (step 5) |
| scale 0.75 / 0.5 | 0.091 / 0.087 | 0.101 / 0.102 | 0.921 / 0.925 | 0.862 / 0.895 | step 0 |
| keyframe latent mixed into every frame's starting latent, 0.3 / 0.6 (the official code's unused "keylatents"; a scratch option, removed) | 0.087 / 0.082 | 0.091 / 0.085 | 0.925 / 0.930 | 0.851 / 0.857 | step 0 |

Moving the keyframe to the time it shows moves the jump with it: the stand-in SparseCtrl pins whichever frame it
holds and its neighbours do not follow.  A weaker hold shrinks the jump in proportion and takes the keyframe's frame
50-way gain with it.  Starting every frame nearer the keyframe leaves the jump where it was.  So the jump is the
stand-in's: the keyframe (an unCLIP image) and the t2v's frames are drawn by two different models, and the
SparseCtrl stand-in does not carry one into the other.  A stronger SparseCtrl stand-in is the fix, not the sampler.
"""
from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
import torch

from neuroclips_core.artifacts import profile_role, store_with_frames
from neuroclips_core.data.sim_stimuli import to_uint8
from neuroclips_core.metrics_semantic import (adjacent_cosines, aligned_frame_indices, clip_pcc,
                                              clip_video_embeddings)
from neuroclips_core.notebook import chapter_config
from neuroclips_core.perception_run import load_perception_result
from neuroclips_core.pipelines.alpha_guidance import alpha_noising
from neuroclips_core.pipelines.blurry import interpolate_frames
from neuroclips_core.pipelines.keyframes import KEYFRAMES_FILE
from neuroclips_core.semantics_run import KEYFRAME_INDEX, semantics_dir
from neuroclips_core.video_run import (check_variant, clip_seeds, generation_config, prompts_for, score_videos,
                                      video_pipeline)
from neuroclips_core.zoo.corpus import CLIP_FRAMES, heldout_clips
from neuroclips_core.zoo.motion import motion_direction_agreement
from neuroclips_core.zoo.train.video import blurred_clips


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def uint8_videos(clips: torch.Tensor) -> np.ndarray:
    """(N, F, 3, S, S) in [0, 1] -> uint8 (N, F, S, S, 3), as the simulator writes frames."""
    return to_uint8(np.moveaxis(clips.numpy(), -3, -1))


def run_inputs(cfg, n_clips: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """A finished run's first ``n_clips`` test clips as chapter 04 feeds them to the pipeline: the 6 true frames
    (uint8 (N, 6, S, S, 3)), the blurry video interpolated to 16 frames, the keyframes and their captions."""
    perception = load_perception_result(cfg, cfg.subject)
    store = store_with_frames(cfg, cfg.subject, None, "the probe scores against the test frames", False)
    folder = semantics_dir(cfg, cfg.subject)
    n = min(n_clips, store.n_test)
    blurry = interpolate_frames(np.array(perception.blurry()[:n]), CLIP_FRAMES)
    keyframes = np.array(np.load(folder / KEYFRAMES_FILE, mmap_mode="r")[:n])
    captions = prompts_for(cfg, cfg.subject, check_variant("full"), captioner_loader=None)[:n]   # chapter 03's
    return np.array(store.frames_test[:n]), blurry, keyframes, captions


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=48)
    ap.add_argument("--shares", type=floats, default=floats("0,0.5,0.8,0.9,0.95"))
    ap.add_argument("--thetas", type=floats, default=None,
                    help="Eq. 5's theta values to sweep (default: the sim profile's, 0.3)")
    ap.add_argument("--corpus-seed", type=int, default=0, help="the stand-ins' corpus seed (their held-out split)")
    ap.add_argument("--run-root", default=None,
                    help="probe on a finished run's test clips instead (chapters 02-03 done): its blurry videos, "
                         "keyframes and captions, scored against the test frames")
    ap.add_argument("--seed", type=int, default=12, help="with --run-root: the run's cc2017-sim seed")
    ap.add_argument("--subject", type=int, default=1, help="with --run-root: the subject")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=None, help="DDIM steps (default: the sim profile's)")
    ap.add_argument("--guidance", type=float, default=None, help="CFG scale (default: the sim profile's, 1: none)")
    ap.add_argument("--cutoffs", type=floats, default=floats("0"),
                    help="share only the noise above these spatial frequencies (fractions of Nyquist; 0: all)")
    ap.add_argument("--keyframe-scales", type=floats, default=None,
                    help="SparseCtrl conditioning scales to sweep (default: the sim profile's, 1.0)")
    ap.add_argument("--keyframe-frames", type=lambda v: [int(x) for x in v.split(",")], default=None,
                    help="video frames the SparseCtrl holds the keyframe at, to sweep (default: the profile's, 0)")
    ap.add_argument("--no-keyframe-row", action="store_true",
                    help="also generate without the keyframe (chapter 04's no_keyframe variant), the profile's sampler")
    args = ap.parse_args()
    if args.run_root:
        cfg = chapter_config(profile="sim", subject=args.subject, quick=False, seed=args.seed,
                             data_root=None, run_root=args.run_root)
        truth, blurry, keyframes, captions = run_inputs(cfg, args.clips)
        velocity, score_seed = None, cfg.seed
        print(f"{len(captions)} test clips of cc2017-sim seed {cfg.seed}, subject {cfg.subject} ({args.run_root})")
    else:
        cfg = chapter_config(profile="sim", subject=1, quick=False, seed=args.corpus_seed, data_root=None,
                             run_root=None)
        held = heldout_clips(args.corpus_seed, args.clips)
        at = aligned_frame_indices(held.clips.shape[1], 6)
        truth16 = uint8_videos(held.clips)
        truth = truth16[:, at]
        blurry = uint8_videos(blurred_clips(held.clips))
        keyframes = truth[:, KEYFRAME_INDEX]
        captions, velocity, score_seed = held.captions, held.velocity, args.corpus_seed
    n = len(captions)
    pipe = video_pipeline(cfg)
    judges = {role: profile_role(cfg, role, cfg.torch_device())
              for role in ("frame_classifier", "video_classifier", "clip")}
    seeds = clip_seeds(score_seed, n)
    base = generation_config(cfg)
    if args.steps:
        base = base.replace(num_inference_steps=args.steps)
    if args.guidance is not None:
        base = base.replace(guidance_scale=args.guidance)
    truth_pcc = float(clip_pcc(clip_video_embeddings(judges["clip"], truth)).mean())
    truth_dir = (motion_direction_agreement(held.clips, velocity)["agreement"] if velocity is not None
                 else float("nan"))
    print(f"ground truth: CLIP-pcc@3fps {truth_pcc:.3f}, direction agreement {truth_dir:.3f}")

    def row(tag: str, videos: np.ndarray, seconds: float | None = None) -> None:
        s = score_videos(videos, truth, **judges, seed=score_seed)
        direction = float("nan")
        if velocity is not None:
            moving = torch.from_numpy(videos).permute(0, 1, 4, 2, 3).float() / 255
            direction = motion_direction_agreement(moving, velocity)["agreement"]
        took = f"  {seconds / n:.2f} s/clip" if seconds is not None else ""
        step = adjacent_cosines(clip_video_embeddings(judges["clip"], videos)).mean(0)   # per step of the video
        print(f"{tag:<32} SSIM-S2 {s['ssim_s2']['mean']:.3f}  frame50 {s['frame_50way']['mean']:.3f}  "
              f"video50 {s['video_50way']['mean']:.3f}  CLIP-pcc@3fps {s['clip_pcc_aligned']['mean']:.3f}  "
              f"CLIP-pcc {step.mean():.3f} (first step {step[0]:.3f}, worst {step.min():.3f} at {step.argmin()})  "
              f"sim-to-truth {s['clip_similarity_to_truth']['mean']:.3f}  direction {direction:.3f}{took}",
              flush=True)

    row("blurry video alone", blurry)
    row("keyframe, held still", np.repeat(keyframes[:, None], blurry.shape[1], axis=1))
    if args.no_keyframe_row:
        t0 = time.monotonic()
        videos = pipe(blurry, None, captions, seeds=seeds, use_keyframe=False, config=base, batch_size=args.batch,
                      progress=False)
        row("no keyframe (the profile's sampler)", videos, time.monotonic() - t0)
    for theta in args.thetas or [base.theta]:
        weight = alpha_noising(theta, pipe.scheduler, base.num_inference_steps, base.alpha_mode).signal
        for share, cutoff, scale, frame in itertools.product(args.shares, args.cutoffs,
                                                             args.keyframe_scales or [base.keyframe_scale],
                                                             args.keyframe_frames or [base.keyframe_frame]):
            if share == 0 and cutoff > 0:
                continue                                  # nothing is shared: the cutoff changes nothing
            t0 = time.monotonic()
            config = base.replace(frame_noise_share=share, frame_noise_cutoff=cutoff, theta=theta,
                                  keyframe_scale=scale, keyframe_frame=frame)
            videos = pipe(blurry, keyframes, captions, seeds=seeds, config=config, batch_size=args.batch,
                          progress=False)
            row(f"theta {theta:g} (w {weight:.2f}) share {share:g} cut {cutoff:g} kf {scale:g}@{frame}", videos,
                time.monotonic() - t0)


if __name__ == "__main__":
    with torch.inference_mode():
        main()
