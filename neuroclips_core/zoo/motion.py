"""Object motion read from pixels alone: where the moving object is in each frame and which way it goes.

Judges generated videos (the text-to-video and SparseCtrl stand-ins, the book's decoded videos) against the
ground-truth motion of the clips they should show.  It needs no mask, label or renderer state, so generated
frames and ground-truth frames are read the same way.

The sim's scenes are one object over a smooth two-colour background that stays fixed within a shot (DESIGN §3),
so the object is whatever differs from the clip's background:

1. **Background** (:func:`background_estimate`): the per-pixel temporal median of the clip, then a quadratic
   colour surface fitted to it robustly (refitted on the pixels it explains best).  The median alone still
   holds the object wherever a large, slow object covers a pixel in more than half of the frames (objects span
   a third to a half of the frame and move a tenth to a half of it in a clip); the smooth fit reads the
   background through it.  A generated video's background is smooth too, if blotchy: the fit keeps the blotches
   out of the object.
2. **Object** (:func:`object_trajectory`): per frame, the pixels whose colour lies far from the background
   (distance above ``threshold``, or above half the frame's 99th-percentile distance when that is higher, so a
   faint generated object still stands out from background noise); its centroid, weighted by how far each
   pixel lies above the threshold.  Frames where nothing stands out are filled from their neighbours.
3. **Velocity** (:func:`clip_velocity`): the mean centroid of the last quarter of the clip minus that of the
   first quarter, over the time between them, in frame widths per second (x right, y down): the units of the
   corpus' ``velocity``, which is the object's displacement from first to last frame over the clip's duration.

Direction agreement (:func:`motion_direction_agreement`) counts a clip as right when the measured and the
reference velocity lie within 90 degrees of each other (positive cosine), over the clips whose reference moves
at least ``min_speed``.  Why not the sign per axis: a caption says "moving right" whenever the horizontal speed
is over twice the vertical one, and the small vertical part's sign is then neither described nor reliably
measurable.  Chance is 0.5.

Validated on ground-truth corpus clips (``tests/test_standin_video.py``): on the first 256 held-out clips (seed 0),
the measured direction is right on 0.99 of the 207 whose object moves at least 0.05 frame widths per second
(mean cosine 0.98, measured/true speed 1.01; median centroid error 0.004 frame widths), still 0.99 with
Gaussian pixel noise of sigma 0.08 and 0.97 after a 5-px box blur; time-reversed clips score 0.01 and a
frozen frame 0.
"""
from __future__ import annotations

import numpy as np
import torch

DEFAULT_MIN_SPEED = 0.05     # frame widths per second: slower objects move < 6 px over a 2-s clip at 64 px


def _quadratic_design(size: int) -> torch.Tensor:
    """(S * S, 6) monomials 1, x, y, x^2, xy, y^2 of pixel centres in [-1, 1]."""
    g = (torch.arange(size, dtype=torch.float64) + 0.5) / size * 2 - 1
    y, x = torch.meshgrid(g, g, indexing="ij")
    x, y = x.reshape(-1), y.reshape(-1)
    return torch.stack([torch.ones_like(x), x, y, x * x, x * y, y * y], 1)


def background_estimate(clip: torch.Tensor, keep: float = 0.6, iterations: int = 3) -> torch.Tensor:
    """The clip's background (3, S, S): a quadratic colour surface fitted to the temporal median.

    Args:
        clip: (T, 3, S, S) frames in [0, 1].
        keep: fraction of pixels (those the current fit explains best) each refit uses; the object covers at most
            about a quarter of the median image.
        iterations: refits after the first least-squares fit on every pixel.
    """
    median = clip.double().median(0).values                        # (3, S, S)
    size = median.shape[-1]
    a = _quadratic_design(size)                                    # (P, 6)
    b = median.reshape(3, -1).T                                    # (P, 3)
    use = torch.ones(len(b), dtype=torch.bool)
    for _ in range(iterations + 1):
        coef = torch.linalg.lstsq(a[use], b[use]).solution         # (6, 3)
        residual = (a @ coef - b).norm(dim=1)
        use = residual <= residual.quantile(keep)
    return (a @ coef).T.reshape(3, size, size).float()


def object_trajectory(clip: torch.Tensor, threshold: float = 0.12) -> torch.Tensor:
    """Centroid (T, 2) of the moving object in each frame, (x, y) in frame widths (0 left/top .. 1 right/bottom).

    Args:
        clip: (T, 3, S, S) frames in [0, 1] (ground truth or generated).
        threshold: colour distance (Euclidean, RGB in [0, 1]) from the background above which a pixel counts as
            object; raised per frame to half that frame's 99th-percentile distance.

    Frames where no pixel stands out take the centroid of the nearest frame that has one (the frame centre if
    none has).
    """
    if clip.ndim != 4 or clip.shape[1] != 3:
        raise ValueError(f"object_trajectory expects one clip (T, 3, S, S), got shape {tuple(clip.shape)}")
    clip = clip.float()
    size = clip.shape[-1]
    distance = (clip - background_estimate(clip)[None]).norm(dim=1)            # (T, S, S)
    level = torch.maximum(torch.full((len(clip),), threshold),
                          0.5 * distance.flatten(1).quantile(0.99, dim=1))     # (T,)
    weight = (distance - level[:, None, None]).clamp_min(0)                     # (T, S, S)
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    total = weight.sum((1, 2))
    found = total > 0
    centre = torch.full((len(clip), 2), 0.5)
    centre[found, 0] = (weight.sum(1) * coords).sum(1)[found] / total[found]    # x: columns
    centre[found, 1] = (weight.sum(2) * coords).sum(1)[found] / total[found]    # y: rows
    if found.any() and not found.all():
        idx = torch.arange(len(clip))
        have = idx[found]
        nearest = have[(idx[:, None] - have[None]).abs().argmin(1)]
        centre = centre[nearest]
    return centre


def clip_velocity(trajectory: torch.Tensor, fps: float) -> torch.Tensor:
    """Mean velocity (2,) in frame widths per second of a centroid track (T, 2) sampled at ``fps``: the mean of its
    last quarter minus the mean of its first quarter, over the time between their centres."""
    n = len(trajectory)
    q = max(1, n // 4)
    span = (n - q) / fps
    return (trajectory[-q:].mean(0) - trajectory[:q].mean(0)) / span


def clip_velocities(clips: torch.Tensor, fps: float) -> torch.Tensor:
    """:func:`clip_velocity` of :func:`object_trajectory` for each clip of (N, T, 3, S, S): (N, 2)."""
    return torch.stack([clip_velocity(object_trajectory(c), fps) for c in clips])


def motion_direction_agreement(generated: torch.Tensor, reference_velocity: torch.Tensor,
                               min_speed: float = DEFAULT_MIN_SPEED, fps: float = 8.0) -> dict:
    """How often the object in ``generated`` moves the way ``reference_velocity`` says.

    Args:
        generated: clips (N, T, 3, S, S) in [0, 1].
        reference_velocity: (N, 2) ground-truth mean velocities, frame widths per second (x right, y down), e.g.
            the corpus' ``velocity`` of the clips the videos should show.
        min_speed: clips whose reference moves slower are left out (their direction is not defined).
        fps: frame rate of ``generated``.

    Returns:
        ``agreement``: fraction of moving clips whose measured velocity lies within 90 degrees of the reference
        (chance 0.5; NaN when no clip moves); ``mean_cosine``: mean cosine of the angle between them (a clip
        measured as still counts 0); ``speed_ratio``: median measured / reference speed; ``n_moving``.
    """
    if len(generated) != len(reference_velocity):
        raise ValueError(f"{len(generated)} clips but {len(reference_velocity)} reference velocities")
    ref = reference_velocity.float()
    moving = ref.norm(dim=1) >= min_speed
    n = int(moving.sum())
    if n == 0:
        return {"agreement": float("nan"), "mean_cosine": float("nan"), "speed_ratio": float("nan"), "n_moving": 0}
    measured = clip_velocities(generated[moving], fps)
    ref = ref[moving]
    cosine = (measured * ref).sum(1) / (measured.norm(dim=1) * ref.norm(dim=1)).clamp_min(1e-12)
    return {"agreement": float((cosine > 0).float().mean()), "mean_cosine": float(cosine.mean()),
            "speed_ratio": float(np.median((measured.norm(dim=1) / ref.norm(dim=1)).numpy())), "n_moving": n}
