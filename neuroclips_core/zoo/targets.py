"""The quality each stand-in must reach (issue 3), and the table that sets the stamps' numbers beside them.

Every number comes from a stand-in's ``stamp.json`` (``metrics``, measured on held-out corpus clips by the
recipe's ``evaluate`` when it was trained); nothing here computes or types in a result.  A target compares one
metric with a threshold; ``baseline`` names the metric (or a constant, for chance) the number should be read
against, so the table shows both.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Target:
    role: str
    metric: str                 # key of the stamp's ``metrics``
    threshold: float            # metric >= threshold (or, with ``above``, metric - baseline >= threshold)
    what: str                   # the sentence of the issue this checks
    baseline: str | float | None = None   # a metrics key or a constant (chance) to read the number against
    above: bool = False         # the threshold is a margin over the baseline, not an absolute level


TARGETS: tuple[Target, ...] = (
    Target("frame_classifier", "top1", 0.9, "frame classifier top-1 on held-out frames", "chance"),
    Target("video_classifier", "top1", 0.8, "video classifier top-1 on held-out clips", "chance"),
    Target("vae", "psnr", 24.0, "VAE reconstruction PSNR (dB)"),
    Target("vae", "classifier_top1_reconstructed", 0.8, "frame classifier still right on VAE reconstructions",
           "classifier_top1_original"),
    Target("clip", "i2t_top1", 0.5, "CLIP image-to-caption top-1 in batches of 100 held-out pairs",
           "class_only_ceiling"),
    Target("captioner", "class_accuracy", 0.8, "captions of held-out keyframes name the right class",
           "class_baseline"),
    Target("unclip", "classifier_top1_generated", 0.5,
           "images generated from true clip tokens are classified correctly", "chance"),
    Target("t2v", "direction_agreement", 0.6,
           "text-to-video alone: the object moves the way the caption says, in clips whose ground truth moves",
           "direction_chance"),
    Target("sparsectrl", "ssim_frame0", 0.15,
           "frame 0 of a video generated with SparseCtrl on the keyframe: SSIM to the keyframe, margin over an "
           "unrelated frame's", "ssim_frame0_unrelated", above=True),
    Target("sparsectrl", "alpha_direction_agreement", 0.6,
           "started from a blurry clip by Eq. 5 with the keyframe at frame 0 (NeuroClips' use), the generated object "
           "moves the right way, in clips whose ground truth moves", "direction_chance"),
)


#: baselines a useful stand-in must beat (chance, a blind guess, an unrelated frame); the others are ceilings or
#: references (the classifier on original frames, a perfect class reader) it is read against, not above
FLOOR_BASELINES = frozenset({"chance", "class_baseline", "direction_chance", "ssim_frame0_unrelated"})


def targets_for(role: str) -> list[Target]:
    return [t for t in TARGETS if t.role == role]


def baseline_value(target: Target, metrics: dict) -> float | None:
    if target.baseline is None:
        return None
    if isinstance(target.baseline, (int, float)):
        return float(target.baseline)
    value = metrics.get(target.baseline)
    return None if value is None else float(value)


def meets(target: Target, metrics: dict) -> bool:
    """Whether ``metrics`` (a stamp's) reach ``target``; False when the metric is missing or None."""
    value = metrics.get(target.metric)
    if value is None:
        return False
    if target.above:
        base = baseline_value(target, metrics)
        return base is not None and value - base >= target.threshold
    return value >= target.threshold


def beats_floor(target: Target, metrics: dict) -> bool | None:
    """Whether the measured metric is above its baseline, for a baseline in :data:`FLOOR_BASELINES` (None for a
    target read against a ceiling or against nothing, or when the metric or its baseline is missing).

    The weaker check a shipped stand-in always passes, met or not: it learned something.  Its target is the
    stronger one, and ``python -m neuroclips_core standins`` reports both."""
    base, value = baseline_value(target, metrics), metrics.get(target.metric)
    if target.baseline not in FLOOR_BASELINES or base is None or value is None:
        return None
    return value > base


def stamp_metrics(role: str, root: str | os.PathLike | None = None) -> dict | None:
    """The held-out metrics in ``root/<role>/stamp.json`` (default: the shipped stand-ins); None if untrained."""
    from .standins import STAMP_FILE, standin_folder

    path = standin_folder(role, root) / STAMP_FILE
    return json.loads(path.read_text())["metrics"] if path.is_file() else None


def targets_table(root: str | os.PathLike | None = None):
    """A DataFrame: one row per target with the measured value, its baseline, the threshold and whether it is met
    (``measured`` is NaN and ``met`` False for a stand-in not trained yet)."""
    import pandas as pd

    rows = []
    for t in TARGETS:
        metrics = stamp_metrics(t.role, root) or {}
        rows.append({"role": t.role, "what": t.what, "metric": t.metric, "measured": metrics.get(t.metric),
                     "baseline": baseline_value(t, metrics), "target": (f"baseline + {t.threshold:g}" if t.above
                                                                         else f">= {t.threshold:g}"),
                     "above floor": beats_floor(t, metrics), "met": meets(t, metrics)})
    return pd.DataFrame(rows).astype({"measured": float, "baseline": float})


def stamp_summary(root: str | os.PathLike | None = None):
    """A DataFrame: per trained stand-in, its training steps, minutes, parameters' file size and final loss."""
    import pandas as pd

    from .standins import STAMP_FILE, folder_size_mb, standin_root
    from .train import RECIPES

    base = standin_root(root)
    rows = []
    for role in RECIPES:
        path = base / role / STAMP_FILE
        if not path.is_file():
            continue
        stamp = json.loads(path.read_text())
        rows.append({"role": role, "steps": stamp["config"]["steps"], "batch": stamp["config"]["batch"],
                     "train_min": stamp["train_seconds"] / 60, "size_mb": folder_size_mb(base / role),
                     "final_loss": stamp["final_loss"], "simulator": stamp["simulator_version"]})
    return pd.DataFrame(rows)
