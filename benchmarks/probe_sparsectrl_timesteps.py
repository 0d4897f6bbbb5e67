"""Probe: where along the noise schedule does a SparseCtrl stand-in's keyframe reach the video?

The SparseCtrl stamp's held-out loss is the noise prediction's error, which at high noise hardly depends on the
clean latents, so it moves in the fourth decimal whatever the keyframe does.  This probe reads the model as a
sampler does: every held-out corpus clip is noised with the same noise at a few timesteps, and the error of the
t2v UNet's clean-latent estimate (:func:`~neuroclips_core.zoo.train.video.keyframe_effect_by_timestep`) is printed
on frame 0 (where the keyframe sits) and on the later frames, with no keyframe, the clip's own and another clip's.
A SparseCtrl that carries its keyframe scores ``own < none < other``; where ``own`` equals ``none`` the keyframe
does nothing.  The sim's 5-step chain visits t = 801, 601, 401, 201 and 1 after the alpha-guided start::

    .venv/bin/python benchmarks/probe_sparsectrl_timesteps.py [sparsectrl folders] [--clips 16]

The t2v and VAE come from the shipped stand-ins (``$NEUROCLIPS_STANDINS`` to read another root).
"""
from __future__ import annotations

import torch

from _heldout import folders_and_heldout_clips
from neuroclips_core.zoo.loaders import load_role
from neuroclips_core.zoo.standins import load_standin
from neuroclips_core.zoo.train.video import VideoParts, keyframe_effect_by_timestep


def main() -> None:
    args, held = folders_and_heldout_clips(__doc__, "sparsectrl", 16)
    t2v, vae = load_standin("t2v"), load_standin("vae")
    print(f"{len(held.captions)} held-out corpus clips; clean-latent MSE, frame 0 | later frames, "
          f"with no keyframe / its own / another clip's")
    for folder in args.folders or [None]:
        controlnet = load_standin("sparsectrl") if folder is None else load_role("sparsectrl", folder,
                                                                                 dtype=torch.float32)
        rows = keyframe_effect_by_timestep(VideoParts(t2v, vae, controlnet), held.clips, held.captions,
                                           seed=args.corpus_seed)
        print(folder or "shipped")
        for r in rows:
            print(f"  t={r['t']:>3}  frame 0: {r['none_frame0']:.3f} / {r['own_frame0']:.3f} / "
                  f"{r['other_frame0']:.3f}   later: {r['none_later']:.3f} / {r['own_later']:.3f} / "
                  f"{r['other_later']:.3f}", flush=True)


if __name__ == "__main__":
    with torch.inference_mode():
        main()
