"""Probe: does a t2v stand-in read its caption?  The clean latents it predicts, with the true, empty and a wrong caption.

The held-out denoising loss of the stand-in's stamp is the *noise* prediction's error, spread evenly over the
schedule.  It hardly registers a caption: at high noise the noise error is the clean-latent error times
``abar / (1 - abar)`` (0.005 at t = 999), and at low noise the latents show everything the caption says.  So this
probe reads the model where the caption matters: at a few noise levels, every held-out corpus clip is noised with
the same noise, the UNet's output is turned into its estimate of the clean latents (``x0_hat``, whatever the model
predicts: epsilon or v), and its mean squared error to the true latents is printed with the clip's own caption,
with the empty caption (the unconditional branch), and with another clip's caption.  A model that reads its
caption scores ``true < empty < wrong``; one that ignores it scores the three alike.  The header line gives the
error of predicting zeros (the latents' own variance), the level a model that knows nothing reaches::

    .venv/bin/python benchmarks/probe_caption_use.py neuroclips_core/zoo/standin_weights/t2v [other t2v folders]

**Measured** (corpus seed 0, 48 held-out clips, 2026-12-01), clean-latent MSE with the true / empty / wrong caption:

| t2v stand-in | t = 999 | t = 801 | t = 601 | t = 401 | t = 201 |
|---|---|---|---|---|---|
| epsilon, 1800 steps (shipped until 2026-12-01) | 2.622 / 2.631 / 2.632 | 0.552 / 0.557 / 0.560 | 0.274 / 0.277 / 0.277 | 0.165 / 0.165 / 0.165 | 0.084 / 0.084 / 0.084 |
| v-prediction, 2400 steps (shipped) | **0.491** / 0.556 / 0.656 | **0.263** / 0.312 / 0.422 | **0.146** / 0.167 / 0.237 | 0.089 / 0.096 / 0.119 | 0.046 / 0.047 / 0.051 |

(zeros: 1.00.)  The epsilon model's clean-latent estimate at t = 999 is 2.6 times worse than predicting zeros, and
no caption moves it: its output must reproduce its input to within 0.5 % there, and that error swamps everything
the caption could tell.  That is what :class:`~neuroclips_core.zoo.train.video.T2vConfig`'s ``prediction_type``
``"v_prediction"`` changed: the v model halves the clean-latent error at every noise level, and at t = 801 the
true caption takes it from 0.312 (empty) to 0.263 while another clip's raises it to 0.422.
"""
from __future__ import annotations

import torch

from _heldout import folders_and_heldout_clips
from neuroclips_core.zoo.loaders import load_role
from neuroclips_core.zoo.standins import load_standin
from neuroclips_core.zoo.train.video import clean_latent_estimate, encode_captions, per_frame, video_latents

TIMESTEPS = (999, 801, 601, 401, 201)


def clean_latent_errors(t2v: dict, x0: torch.Tensor, captions: list[str], timesteps=TIMESTEPS,
                        seed: int = 0) -> dict[int, tuple[float, float, float]]:
    """{t: (MSE of x0_hat with the true, the empty and a wrong caption)} for latents x0 (N, 4, F, h, w)."""
    unet, scheduler = t2v["unet"], t2v["scheduler"]
    n, frames = len(captions), x0.shape[2]
    texts = {"true": encode_captions(t2v["text_encoder"], t2v["tokenizer"], captions),
             "empty": encode_captions(t2v["text_encoder"], t2v["tokenizer"], [""] * n)}
    texts["wrong"] = texts["true"].roll(1, 0)           # another clip's caption (clip i gets clip i - 1's)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    out = {}
    for step in timesteps:
        t = torch.full((n,), step)
        x_t = scheduler.add_noise(x0, noise, t)
        errors = []
        for kind in ("true", "empty", "wrong"):
            x0_hat = clean_latent_estimate(
                scheduler, unet(x_t, t, encoder_hidden_states=per_frame(texts[kind], frames)).sample, x_t, t)
            errors.append(float((x0_hat - x0).pow(2).mean()))
        out[step] = tuple(errors)
    return out


def main() -> None:
    args, held = folders_and_heldout_clips(__doc__, "t2v", 48)
    x0 = video_latents(load_standin("vae"), held.clips)
    print(f"{len(held.captions)} held-out corpus clips; clean-latent MSE with the true / empty / wrong caption "
          f"(predicting zeros: {float(x0.pow(2).mean()):.2f})")
    for folder in args.folders or [None]:
        t2v = load_standin("t2v") if folder is None else load_role("t2v", folder, dtype=torch.float32)
        kind = t2v["scheduler"].config.prediction_type
        errors = clean_latent_errors(t2v, x0, held.captions, seed=args.corpus_seed)
        cells = "  ".join(f"t={t}: {a:.3f} / {b:.3f} / {c:.3f}" for t, (a, b, c) in errors.items())
        print(f"{folder or 'shipped'} ({kind}): {cells}", flush=True)


if __name__ == "__main__":
    with torch.inference_mode():
        main()
