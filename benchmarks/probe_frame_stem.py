"""Probe: does a patch stem that also draws the object's edge teach the frame-classifier ViT the outline faster?

The shipped frame classifier (:mod:`neuroclips_core.zoo.train.classifiers`) names the surface pattern of 0.98 of
held-out frames but the outline of only ~0.72.  Its stem learns the patterns alone, from texture patches.  This
probe runs the shipped recipe (``FrameClassifierRecipe.full_config()``, the same schedule, so its stable phase is
step for step the shipped run's) with the stem's second target switched on or off (``--mask-weight``: each patch's
object mask at 2-px cells, cut from corpus frames with the renderer's masks), stops after ``--minutes`` of
training, and prints

- the training log's running top-1 of the ViT (mean over 25-step windows) at each 250 ViT steps, beside the
  shipped run's (0.24 / 0.29 / 0.38 / 0.42 after 500 / 1000 / 1500 / 2000 ViT steps, from the docstring);
- the held-out top-1 of the student as it stands, and separately of its shape and its pattern (512 frames).

``--patch-size`` and the other size options try another ViT under the same recipe (the shipped run's numbers then
compare steps, not minutes: the log has the seconds).  ``--steps`` and ``--decay`` shorten the schedule (a final
decay of its own) to compare two recipes at equal steps; ``--lr`` sets the base rate of all three phases.

Resumable: the same command continues from ``--work``.  ::

    NEUROCLIPS_THREADS=1 .venv/bin/python benchmarks/probe_frame_stem.py --mask-weight 1 --minutes 45 \\
        --work runs/probes/frame_stem_mask1
"""
from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

import torch

from neuroclips_core.data.sim_stimuli import PATTERNS
from neuroclips_core.zoo import corpus
from neuroclips_core.zoo.train.classifiers import IMAGE_SIZE, FrameClassifierRecipe, normalise
from neuroclips_core.zoo.train.loop import RunOptions, read_log, train_role

SHIPPED = {500: 0.24, 1000: 0.29, 1500: 0.38, 2000: 0.42}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mask-weight", type=float, default=1.0)
    ap.add_argument("--minutes", type=float, default=45)
    ap.add_argument("--work", required=True)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("NEUROCLIPS_THREADS", "1")))
    ap.add_argument("--eval-size", type=int, default=512)
    ap.add_argument("--patch-size", type=int, default=None, help="the ViT's patch (shipped: 8)")
    ap.add_argument("--hidden-size", type=int, default=None, help="(shipped: 128)")
    ap.add_argument("--layers", type=int, default=None, help="(shipped: 6)")
    ap.add_argument("--intermediate-size", type=int, default=None, help="(shipped: 512)")
    ap.add_argument("--hint-layers", default=None, help="(shipped: 1:early,3:mid,5:final)")
    ap.add_argument("--steps", type=int, default=None,
                    help="all steps, stem and teacher included (shipped: 9000); a short run to compare recipes")
    ap.add_argument("--decay", type=float, default=None, help="share of the steps in the final decay (shipped: 0.2)")
    ap.add_argument("--lr", type=float, default=None, help="(shipped: 1e-3)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    sizes = {k: getattr(args, k) for k in ("patch_size", "hidden_size", "layers", "intermediate_size", "hint_layers",
                                           "steps", "decay", "lr")
             if getattr(args, k) is not None}
    config = dataclasses.replace(FrameClassifierRecipe.full_config(), stem_mask_weight=args.mask_weight, **sizes)
    work = Path(args.work)
    recipe = FrameClassifierRecipe(config, 0, work / "out")
    result = train_role(recipe, work / "out" / recipe.role, work / "train",
                        RunOptions(max_minutes=args.minutes, log_every=25))
    vit_start = config.stem_steps + config.teacher_steps

    rows = read_log(work / "train")
    stem = [r for r in rows if "stem_acc" in r]
    if stem:
        last = stem[-1]
        print(f"stem, step {last['step']}: pattern acc {last['stem_acc']:.3f}"
              + (f", mask-cell acc {last['mask_acc']:.3f}" if "mask_acc" in last else ""))
    vit = {r["step"] - vit_start: r for r in rows if r["step"] > vit_start and "acc" in r}
    t0 = max((r["elapsed_s"] for r in rows if r["step"] <= vit_start), default=0.0)   # when the ViT phase began
    print("ViT step | minutes of ViT | running top-1 | shipped run")
    for k in sorted(s for s in vit if s % 250 == 0):
        print(f"{k:8d} | {(vit[k]['elapsed_s'] - t0) / 60:14.1f} | {vit[k]['acc']:.3f}         | {SHIPPED.get(k, '')}")

    # the student as it stands (the checkpoint), on held-out frames
    model = recipe.build()
    model.load_state_dict(torch.load(work / "train" / "checkpoint.pt", weights_only=False)["model"])
    student = model.student.eval()
    h = corpus.heldout_frames(0, args.eval_size, IMAGE_SIZE)
    with torch.no_grad():
        pred = torch.cat([student(pixel_values=normalise(h.images[a:a + 256])).logits.argmax(-1)
                          for a in range(0, len(h.labels), 256)])
    n_p = len(PATTERNS)
    print(f"held-out ({len(h.labels)} frames) at step {result.step}: top-1 {(pred == h.labels).float().mean():.3f}, "
          f"shape {(pred // n_p == h.labels // n_p).float().mean():.3f}, "
          f"pattern {(pred % n_p == h.labels % n_p).float().mean():.3f}")


if __name__ == "__main__":
    main()
