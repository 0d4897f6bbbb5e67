"""cc2017-sim stimuli: procedurally rendered movie shots with a known semantic class per clip.

A segment is a sequence of *shots* (2.5-8 s each, hard cuts between them, so some 2-s clips straddle a
cut, as in real movies).  A shot shows one object over a smooth two-colour background.  The object's
**class** = outline (8 shapes) x surface pattern (8 fine textures) = 64 classes, so the paper's 50-way test
is well defined.  The class lives in fine detail -- the pattern has a period of ~5 px in a 64-px frame and
the outline is a few pixels of corners and notches -- which a blur of sigma = width/16 removes.  Everything a
blurry video can carry varies freely *within* a class: object colour, background colours, position, size,
direction and speed of motion, rotation, looming.  That keeps the paper's premise true: the Perception
Reconstructor can recover layout and motion, only the Semantics Reconstructor can recover the class.

Rendering is resolution independent (objects live in normalised [0, 1] image coordinates), so the same
shots give the 30 FPS mp4s, the 3 FPS frames and the low-resolution inputs of the simulated brain.
"""
from __future__ import annotations

import colorsys
from dataclasses import asdict, dataclass

import numpy as np

SHAPES = ("disk", "square", "triangle", "star", "cross", "hexagon", "heart", "crescent")
PATTERNS = ("striped", "checkered", "dotted", "ringed", "zigzag", "grid", "wavy", "speckled")
CLASSES = tuple(f"{p} {s}" for s in SHAPES for p in PATTERNS)   # class id = shape * 8 + pattern
N_CLASSES = len(CLASSES)
HUE_NAMES = ((0.04, "red"), (0.10, "orange"), (0.19, "yellow"), (0.45, "green"), (0.55, "teal"),
             (0.72, "blue"), (0.83, "purple"), (0.95, "pink"), (1.01, "red"))
PATTERN_CYCLES = 2.6       # pattern cycles per object radius: period ~5 px for a 13-px radius in 64-px frames


def class_table() -> list[dict]:
    """``[{"id", "name", "shape", "pattern"}, ...]`` for the 64 classes (id = shape_index * 8 + pattern_index)."""
    return [{"id": i, "name": CLASSES[i], "shape": SHAPES[i // len(PATTERNS)], "pattern": PATTERNS[i % len(PATTERNS)]}
            for i in range(N_CLASSES)]


def hue_name(h: float) -> str:
    return next(name for edge, name in HUE_NAMES if h < edge)


def _with_article(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


@dataclass
class Shot:
    """One shot: frames [start, stop) of a segment at 30 FPS.  Positions and sizes are in frame units (0..1)."""

    start: int
    stop: int
    label: int
    color: tuple        # object colour A (rgb 0..1); the pattern's second colour is a darker A
    dark: float         # value multiplier of the pattern's second colour
    bg0: tuple          # background gradient colours (rgb 0..1)
    bg1: tuple
    bg_angle: float     # gradient direction (radians)
    pos0: tuple         # object centre at shot start
    vel: tuple          # frame-widths per second (x right, y down)
    radius0: float      # object radius at shot start
    growth: float       # d log(radius) / dt, per second
    angle0: float       # radians
    spin: float         # radians per second
    texture_seed: int   # for the speckled pattern

    def caption(self, velocity: tuple | None = None) -> str:
        """Describe the shot; ``velocity`` (frame widths per second) is the motion actually seen in a clip
        (objects bounce off the frame edges, so it can differ from the shot's initial ``vel``)."""
        h, s, v = colorsys.rgb_to_hsv(*self.color)
        bh = colorsys.rgb_to_hsv(*[(a + b) / 2 for a, b in zip(self.bg0, self.bg1)])[0]
        vx, vy = self.vel if velocity is None else velocity
        speed = float(np.hypot(vx, vy))
        if speed < 0.03:
            motion = "floating almost still"
        else:
            horiz = "right" if vx > 0 else "left"
            vert = "down" if vy > 0 else "up"
            if abs(vx) > 2 * abs(vy):
                motion = f"moving {horiz}"
            elif abs(vy) > 2 * abs(vx):
                motion = f"moving {vert}"
            else:
                motion = f"moving {vert} and to the {horiz}"
        extra = []
        if abs(self.spin) > 1.2:
            extra.append("spinning")
        if self.growth > 0.12:
            extra.append("growing")
        elif self.growth < -0.12:
            extra.append("shrinking")
        extra_txt = (" while " + " and ".join(extra)) if extra else ""
        return (f"{_with_article(hue_name(h))} {CLASSES[self.label]} {motion}{extra_txt} "
                f"over {_with_article(hue_name(bh))} background")

    def to_json(self) -> dict:
        d = asdict(self)
        d["class_name"] = CLASSES[self.label]
        return d


def random_color(rng, sat=(0.55, 1.0), val=(0.7, 1.0)) -> tuple:
    return tuple(colorsys.hsv_to_rgb(rng.random(), rng.uniform(*sat), rng.uniform(*val)))


def sample_shots(rng: np.random.Generator, n_frames: int, fps: int = 30,
                 shot_seconds: tuple[float, float] = (2.5, 8.0)) -> list[Shot]:
    """Cut ``n_frames`` into shots of random length and draw each shot's content independently."""
    shots, start = [], 0
    while start < n_frames:
        stop = min(n_frames, start + int(rng.uniform(*shot_seconds) * fps))
        if n_frames - stop < int(shot_seconds[0] * fps):   # no tiny shot at the end of a segment
            stop = n_frames
        speed = 0.0 if rng.random() < 0.15 else rng.uniform(0.05, 0.22)
        direction = rng.uniform(0, 2 * np.pi)
        bg0 = random_color(rng, sat=(0.1, 0.45), val=(0.25, 0.6))
        bg1 = random_color(rng, sat=(0.1, 0.45), val=(0.25, 0.6))
        shots.append(Shot(
            start=start, stop=stop, label=int(rng.integers(N_CLASSES)),
            color=random_color(rng), dark=float(rng.uniform(0.15, 0.4)),
            bg0=bg0, bg1=bg1, bg_angle=float(rng.uniform(0, 2 * np.pi)),
            pos0=(float(rng.uniform(0.3, 0.7)), float(rng.uniform(0.3, 0.7))),
            vel=(float(speed * np.cos(direction)), float(speed * np.sin(direction))),
            radius0=float(rng.uniform(0.17, 0.26)), growth=float(rng.uniform(-0.15, 0.15)),
            angle0=float(rng.uniform(0, 2 * np.pi)), spin=float(rng.uniform(-1.8, 1.8)),
            texture_seed=int(rng.integers(2**31)),
        ))
        start = stop
    return shots


def _bounce(p: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Reflect positions into [lo, hi] (objects bounce off the frame edges instead of leaving it)."""
    span = hi - lo
    q = np.mod(p - lo, 2 * span)
    return lo + np.where(q > span, 2 * span - q, q)


def shot_state(shot: Shot, frames: np.ndarray, fps: int = 30) -> dict:
    """Object state at absolute frame indices ``frames`` (n,): centre (n,2), radius (n,), angle (n,), velocity (n,2)."""
    t = (np.asarray(frames, float) - shot.start) / fps
    radius = np.clip(shot.radius0 * np.exp(shot.growth * t), 0.13, 0.32)
    raw = np.asarray(shot.pos0)[None] + t[:, None] * np.asarray(shot.vel)[None]
    lo, hi = radius[:, None] * 0.8, 1 - radius[:, None] * 0.8
    centre = _bounce(raw, lo, hi)
    # velocity after bouncing: sign flips where the unfolded path was reflected
    eps = 1e-3
    ahead = _bounce(raw + eps * np.asarray(shot.vel)[None], lo, hi)
    vel = (ahead - centre) / eps
    return {"centre": centre, "radius": radius, "angle": shot.angle0 + shot.spin * t, "velocity": vel}


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside test in object coordinates (radius 1, centre 0)."""
    r = np.hypot(u, v)
    if shape == "disk":
        return r <= 0.92
    if shape == "square":
        return np.maximum(abs(u), abs(v)) <= 0.75
    if shape == "triangle":
        inside = np.ones_like(u, bool)
        for k in range(3):   # three half-planes of an equilateral triangle with circumradius 1
            a = -np.pi / 2 + 2 * np.pi * k / 3
            inside &= (u * np.cos(a) + v * np.sin(a)) <= 0.5
        return inside
    if shape == "star":
        theta = np.arctan2(v, u) + np.pi / 2
        tri = np.abs(((theta * 5 / (2 * np.pi)) % 1.0) - 0.5) * 2      # 1 at the tips, 0 between them
        return r <= 0.42 + 0.58 * tri
    if shape == "cross":
        return ((abs(u) <= 0.3) & (abs(v) <= 0.92)) | ((abs(v) <= 0.3) & (abs(u) <= 0.92))
    if shape == "hexagon":
        d = np.max(np.stack([abs(u * np.cos(a) + v * np.sin(a)) for a in (0, np.pi / 3, 2 * np.pi / 3)]), 0)
        return d <= 0.8
    if shape == "heart":
        x, y = u * 1.25, -v * 1.25 + 0.25
        return (x * x + y * y - 1) ** 3 - x * x * y ** 3 <= 0
    if shape == "crescent":
        return (r <= 0.95) & (np.hypot(u - 0.45, v + 0.1) > 0.72)
    raise ValueError(f"unknown shape {shape!r}")


def pattern_mask(pattern: str, u: np.ndarray, v: np.ndarray, seed: int) -> np.ndarray:
    """Binary surface pattern (True = dark colour) in object coordinates, ~PATTERN_CYCLES per radius."""
    f = PATTERN_CYCLES
    if pattern == "striped":
        return np.sin(2 * np.pi * f * u) > 0
    if pattern == "checkered":
        return np.sin(2 * np.pi * f * u) * np.sin(2 * np.pi * f * v) > 0
    if pattern == "dotted":
        fu, fv = (u * f) % 1.0 - 0.5, (v * f) % 1.0 - 0.5
        return np.hypot(fu, fv) < 0.28
    if pattern == "ringed":
        return np.sin(2 * np.pi * f * np.hypot(u, v)) > 0
    if pattern == "zigzag":
        tri = np.abs((u * f) % 1.0 - 0.5)
        return np.sin(2 * np.pi * (f * v + 1.2 * tri)) > 0
    if pattern == "grid":
        return (np.abs((u * f) % 1.0 - 0.5) > 0.32) | (np.abs((v * f) % 1.0 - 0.5) > 0.32)
    if pattern == "wavy":
        return np.sin(2 * np.pi * f * (u + 0.18 * np.sin(2 * np.pi * 0.9 * v))) > 0
    if pattern == "speckled":
        # a fixed random binary texture on a lattice of ~2.2 cells per pattern period, hashed per object
        iu, iv = np.floor(u * f * 2.2).astype(np.int64), np.floor(v * f * 2.2).astype(np.int64)
        h = (iu * 73856093) ^ (iv * 19349663) ^ (seed & 0x7FFFFFFF)
        h = (h * 2654435761) & 0xFFFFFFFF
        return (h >> 16) & 1 == 1
    raise ValueError(f"unknown pattern {pattern!r}")


def render_shot_frames(shot: Shot, frames: np.ndarray, size: int, fps: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Render absolute frame indices ``frames`` (n,) of ``shot`` at ``size`` x ``size``.

    Returns:
        images: float32 (n, size, size, 3) in [0, 1]
        masks: bool (n, size, size), True where the object is
    """
    frames = np.asarray(frames)
    st = shot_state(shot, frames, fps)
    grid = ((np.arange(size) + 0.5) / size).astype(np.float32)
    gy, gx = np.meshgrid(grid, grid, indexing="ij")
    # background: a two-colour gradient (fixed within a shot: the layout a blurry frame can still carry)
    g = (gx - 0.5) * np.cos(shot.bg_angle) + (gy - 0.5) * np.sin(shot.bg_angle)
    g = np.clip(g + 0.5, 0, 1)[..., None]
    bg = ((1 - g) * np.asarray(shot.bg0) + g * np.asarray(shot.bg1)).astype(np.float32)
    shape, pattern = SHAPES[shot.label // len(PATTERNS)], PATTERNS[shot.label % len(PATTERNS)]
    col_a = np.asarray(shot.color, np.float32)
    col_b = col_a * np.float32(shot.dark)
    images = np.repeat(bg[None], len(frames), 0)
    masks = np.zeros((len(frames), size, size), bool)
    centre = st["centre"].astype(np.float32)
    angle, radius = st["angle"].astype(np.float32), st["radius"].astype(np.float32)
    for i in range(len(frames)):
        # only the object's bounding box (no shape reaches beyond 1.1 radii) is evaluated: ~4x less work
        reach = 1.1 * radius[i]
        y0, y1 = (np.clip([centre[i, 1] - reach, centre[i, 1] + reach], 0, 1) * size).astype(int) + [0, 1]
        x0, x1 = (np.clip([centre[i, 0] - reach, centre[i, 0] + reach], 0, 1) * size).astype(int) + [0, 1]
        # object coordinates: translate, rotate, scale to radius 1
        dx, dy = gx[y0:y1, x0:x1] - centre[i, 0], gy[y0:y1, x0:x1] - centre[i, 1]
        ca, sa = np.cos(angle[i]), np.sin(angle[i])
        u, v = (ca * dx + sa * dy) / radius[i], (-sa * dx + ca * dy) / radius[i]
        inside = _shape_mask(shape, u, v)
        dark = pattern_mask(pattern, u, v, shot.texture_seed)
        crop = images[i, y0:y1, x0:x1]
        crop[inside] = np.where(dark[inside, None], col_b, col_a)
        masks[i, y0:y1, x0:x1] = inside
    return images, masks


def shot_index_of_frames(shots: list[Shot], frames: np.ndarray) -> np.ndarray:
    starts = np.array([s.start for s in shots])
    return np.searchsorted(starts, np.asarray(frames), side="right") - 1


def render_frames(shots: list[Shot], frames: np.ndarray, size: int, fps: int = 30,
                  with_masks: bool = False):
    """Render arbitrary absolute frame indices of a segment: float32 (n, size, size, 3) in [0, 1].

    With ``with_masks`` also returns bool masks (n, size, size) and object velocities (n, 2).
    """
    frames = np.asarray(frames)
    which = shot_index_of_frames(shots, frames)
    out = np.empty((len(frames), size, size, 3), np.float32)
    masks = np.empty((len(frames), size, size), bool)
    vel = np.empty((len(frames), 2), np.float32)
    for si in np.unique(which):
        sel = np.nonzero(which == si)[0]
        out[sel], masks[sel] = render_shot_frames(shots[si], frames[sel], size, fps)
        vel[sel] = shot_state(shots[si], frames[sel], fps)["velocity"]
    return (out, masks, vel) if with_masks else out


def to_uint8(images: np.ndarray) -> np.ndarray:
    return np.clip(images * 255 + 0.5, 0, 255).astype(np.uint8)


def clip_annotations(shots: list[Shot], n_clips: int, frames_per_clip: int = 60, fps: int = 30) -> dict:
    """Per-clip ground truth from the shot covering most of the clip: its class, a caption of what the clip
    shows (direction from the object's actual displacement within the clip), the object's mean velocity
    (frame widths per second, x right, y down) and whether the clip straddles a cut."""
    labels, captions, velocities, straddles = [], [], [], []
    for k in range(n_clips):
        frames = np.arange(k * frames_per_clip, (k + 1) * frames_per_clip)
        idx = shot_index_of_frames(shots, frames)
        counts = np.bincount(idx - idx.min())
        major_i = idx.min() + int(np.argmax(counts))
        major = shots[major_i]
        seen = frames[idx == major_i]
        centre = shot_state(major, seen[[0, -1]], fps)["centre"]
        velocity = (centre[1] - centre[0]) / max((seen[-1] - seen[0]) / fps, 1e-6)
        labels.append(int(major.label))
        captions.append(major.caption(tuple(float(v) for v in velocity)))
        velocities.append([round(float(v), 4) for v in velocity])
        straddles.append(bool(idx.min() != idx.max()))
    return {"labels": labels, "captions": captions, "velocity": velocities, "straddles_cut": straddles}
