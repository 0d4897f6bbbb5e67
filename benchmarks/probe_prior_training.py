"""Probe: does the diffusion prior of a trained SR gain from more training?  Measured on the validation split only.

Takes a finished chapter-03 run (``runs/<profile>/subjNN/semantics/checkpoint.pt``), freezes its SR, and trains
its prior further (or a fresh prior of the same config) on the training split's clip_voxels -> keyframe tokens,
printing every ``--every`` epochs, on the **validation split** (the held-out training segments the recipe selects
on; never the test clips):

- ``val_mse``: the prior's loss (x0 MSE at uniform timesteps, conditions kept), as the recipe selects by;
- ``identification``: top-1 of the prior's *samples* against the true keyframe tokens in 4 pools of 300 (chance
  1/300), with DDIM eta 1 (the recipe's sampling) and eta 0, beside that of the clip_voxels they are sampled from.

This is what set the sim recipe's prior stage (``SemanticsRunConfig.prior_stage``, see
:mod:`neuroclips_core.semantics_run`).  The fMRI is the mean of the repetitions (the recipe draws one per epoch)
and the Reftm term is left out: a probe of length and learning rate, not a copy of the stage.  ::

    .venv/bin/python benchmarks/probe_prior_training.py --seed 12 --run-root runs/seed12 --subject 1 \\
        --lr 1e-3 --epochs 16 [--fresh] [--threads 2]
"""
from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch

from neuroclips_core.artifacts import profile_role, train_val_rows
from neuroclips_core.data.ensure import ensure_store
from neuroclips_core.metrics_semantic import retrieval_top1
from neuroclips_core.models.prior import DiffusionPrior
from neuroclips_core.notebook import chapter_config
from neuroclips_core.semantics_run import load_semantics_result, predict_clip_voxels
from neuroclips_core.semantics_targets import encode_keyframe_tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--run-root", default=None)
    ap.add_argument("--subject", type=int, default=1)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--epochs", type=int, default=16)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--every", type=int, default=4)
    ap.add_argument("--fresh", action="store_true", help="train a fresh prior of the same config instead")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    cfg = chapter_config(profile="sim", subject=args.subject, quick=False, seed=args.seed, data_root=None,
                         run_root=args.run_root)
    torch.set_num_threads(args.threads)          # after chapter_config, which sets 2
    store = ensure_store(cfg, args.subject, progress=False)
    semantics = load_semantics_result(cfg, args.subject)
    models = semantics.load_models(n_voxels=store.n_voxels)
    keyframe_index = int(semantics.summary["keyframe_index"])
    rows_train, rows_val = train_val_rows(store, float(semantics.summary["params"]["run"]["val_fraction"]))
    clip = profile_role(cfg, "clip", "cpu")

    def tokens(rows):       # (n, T, C) float32: the keyframes' CLIP tokens, the prior's x0
        return torch.from_numpy(encode_keyframe_tokens(clip, np.asarray(store.frames_train[rows][:, keyframe_index]))
                                .astype(np.float32))

    def clip_voxels(rows):  # (n, T, C) float32: the frozen SR on the mean of the repetitions, the prior's condition
        fmri = np.asarray(store.fmri_train[rows], np.float32).mean(axis=1)
        return torch.from_numpy(predict_clip_voxels(models.sr, fmri))

    x_train, x_val = tokens(rows_train), tokens(rows_val)
    c_train, c_val = clip_voxels(rows_train), clip_voxels(rows_val)

    def identification(pred: torch.Tensor) -> float:
        return retrieval_top1(pred.numpy(), x_val.numpy(), 300, 4, args.seed).as_dict()["forward"]

    def report(prior: DiffusionPrior, tag: str) -> None:
        prior.eval()
        with torch.inference_mode():
            samples = {eta: prior.sample(c_val, steps=20, eta=eta, generator=torch.Generator().manual_seed(args.seed))
                       .float() for eta in (1.0, 0.0)}
            val_mse = np.mean([prior.loss(c_val[a:a + 120], x_val[a:a + 120], torch.Generator().manual_seed(a)).item()
                               for a in range(0, len(x_val), 120)])
        print(f"{tag:>18}  val_mse {val_mse:.3f}  identification eta1 {identification(samples[1.0]):.3f}  "
              f"eta0 {identification(samples[0.0]):.3f}", flush=True)
        prior.train()

    print(f"subject {args.subject}: {len(rows_train)} training, {len(rows_val)} validation clips; clip_voxels "
          f"identification {identification(c_val):.3f} (chance {1 / 300:.4f})", flush=True)
    if args.fresh:
        torch.manual_seed(args.seed)
        prior = DiffusionPrior(models.prior.config)
    else:
        prior = copy.deepcopy(models.prior)
    report(prior, "start")
    optimizer = torch.optim.AdamW(prior.parameters(), lr=args.lr, weight_decay=0.01)
    generator = torch.Generator().manual_seed(args.seed)
    prior.train()
    for epoch in range(1, args.epochs + 1):
        t0 = time.monotonic()
        order = torch.randperm(len(x_train), generator=generator)
        for a in range(0, len(order) - args.batch + 1, args.batch):
            batch = order[a:a + args.batch]
            loss = prior.loss(c_train[batch], x_train[batch], generator)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if epoch % args.every == 0 or epoch == args.epochs:
            report(prior, f"epoch {epoch} ({time.monotonic() - t0:.0f} s)")


if __name__ == "__main__":
    main()
