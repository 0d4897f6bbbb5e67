"""Checks that cc2017-sim is the world the paper assumes (chapter 00).

1. **Semantics live in fine detail.**  A small CNN trained on sharp frames of freshly drawn shots (never
   the dataset's own stimuli) recognises the class of the test segment's 3 FPS frames; blurring those frames (Gaussian, sigma = width/16)
   drops it to near chance.  So a blurry video cannot carry the class, only a keyframe can.
2. **The noise is like real movie fMRI.**  The median single-repetition test-retest correlation of the
   responsive vertices, measured on the test segment's 10 repetitions exactly as the preprocessing sees
   them (delay-paired window, 4th-order detrend, z-score), lies between 0.15 and 0.5.
"""
from __future__ import annotations

import itertools

import numpy as np
from scipy.ndimage import gaussian_filter

from . import layout, simulate
from .prepare import detrend_zscore, paired_window, pearson_columns
from .cifti import read_cortex
from .sim_stimuli import N_CLASSES, render_frames, sample_shots, shot_index_of_frames

BLUR_SIGMA_FRACTION = 1 / 16


def probe_frames(seed: int, segments: list[str], size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """The 3 FPS frames of cc2017-sim segments and their class: float32 (N, size, size, 3) in [0, 1], int (N,)."""
    images, labels = [], []
    for seg in segments:
        shots = simulate.segment_shots(seed, seg)
        img, _, _, idx = simulate.sampled_frames(shots, size)
        images.append(img.reshape(-1, size, size, 3))
        labels.append(np.array([s.label for s in shots])[shot_index_of_frames(shots, idx)])
    return np.concatenate(images), np.concatenate(labels)


def fresh_frames(seed: int, n: int, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """``n`` sharp frames, each from a newly drawn shot at a random moment (a corpus disjoint from the
    dataset's stimuli, like the images a real classifier was trained on): float32 (n, size, size, 3), int (n,)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    shots = sample_shots(rng, n * 150, fps=30, shot_seconds=(5.0, 5.0))     # one 150-frame shot per image
    frames = np.array([s.start + int(rng.integers(0, 150)) for s in shots[:n]])
    images = np.concatenate([render_frames(shots, frames[a:a + 512], size) for a in range(0, n, 512)])
    return images, np.array([s.label for s in shots[:n]])


def blur(frames: np.ndarray, sigma_fraction: float = BLUR_SIGMA_FRACTION) -> np.ndarray:
    """Gaussian blur of (N, H, W, 3) frames with sigma = ``sigma_fraction`` * W pixels (channels kept apart)."""
    sigma = sigma_fraction * frames.shape[2]
    return np.stack([gaussian_filter(f, (sigma, sigma, 0), mode="nearest") for f in frames]).astype(frames.dtype)


def _probe_net():
    """Grayscale in (the class is outline and pattern, never colour), ~60 k parameters, ~12 M MACs a frame."""
    import torch.nn as nn

    def block(i, o, k, s):
        return [nn.Conv2d(i, o, k, s, k // 2), nn.BatchNorm2d(o), nn.ReLU()]

    class Gray(nn.Module):
        def forward(self, x):
            return x.mean(1, keepdim=True) * 2 - 1

    return nn.Sequential(Gray(), *block(1, 16, 5, 2), *block(16, 32, 3, 1), nn.MaxPool2d(2),
                         *block(32, 64, 3, 1), nn.MaxPool2d(2), *block(64, 64, 3, 1), nn.AdaptiveMaxPool2d(1),
                         nn.Flatten(), nn.Linear(64, N_CLASSES))


def train_frame_probe(frames: np.ndarray, labels: np.ndarray, steps: int = 1200, batch: int = 64,
                      lr: float = 3e-3, seed: int = 0, progress: bool = False):
    """Train a small CNN on sharp frames (N, H, W, 3) -> class.  Returns (model, per-step losses).

    Deliberately small (about 0.15 s a step of 48 frames on two cores): it only has to show that the class is
    recoverable from sharp frames and not from blurred ones.
    """
    import torch
    from tqdm.auto import tqdm

    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = _probe_net()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(labels).long()
    losses = []
    net.train()
    for _ in tqdm(range(steps), desc="frame probe", disable=not progress):
        i = torch.randint(len(x), (batch,), generator=g)
        xb = x[i]
        flip = torch.rand(batch, generator=g) < 0.5          # mirror images keep the class
        xb[flip] = xb[flip].flip(-1)
        loss = torch.nn.functional.cross_entropy(net(xb), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    net.eval()
    return net, np.array(losses)


def probe_predict(net, frames: np.ndarray, batch: int = 256) -> np.ndarray:
    """Class predictions (N,) for frames (N, H, W, 3)."""
    import torch

    out = []
    with torch.no_grad():
        for a in range(0, len(frames), batch):
            xb = torch.from_numpy(frames[a:a + batch]).permute(0, 3, 1, 2).contiguous()
            out.append(net(xb).argmax(1).numpy())
    return np.concatenate(out)


def test_retest_correlations(data_root, subject: int, segment: str, delay_trs: int = 2,
                             max_pairs: int | None = None) -> np.ndarray:
    """Single-repetition test-retest correlation of every cortical vertex: float32 (59412,).

    For the repetitions of ``segment`` (10 for a test segment), each run is preprocessed as in
    :func:`~neuroclips_core.data.prepare.preprocess_run` and Pearson r is averaged over all pairs of runs.
    """
    runs = []
    for r in range(1, layout.repetitions(segment) + 1):
        raw = read_cortex(layout.run_path(data_root, subject, segment, r), layout.expected_volumes(segment))
        a, b = paired_window(raw.shape[0], delay_trs)
        runs.append(detrend_zscore(raw[a:b]))
    pairs = list(itertools.combinations(range(len(runs)), 2))[:max_pairs]
    return np.mean([pearson_columns(runs[i], runs[j]) for i, j in pairs], 0).astype(np.float32)
