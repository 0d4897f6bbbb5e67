"""The Perception Reconstructor: model shapes (sim and paper size), clip-local temporal attention, checkpoints
and the voxel-count check, the losses, blurry-video helpers (interpolation, atomic writes) and
``train_perception`` end to end (artifacts, reuse, resume = straight run) on a small synthetic store."""
from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
import torch

from neuroclips_core.artifacts import json_clean
from neuroclips_core.config import make_config
from neuroclips_core.metrics import video_metrics
from neuroclips_core.models import losses as L
from neuroclips_core.models.perception import (PerceptionCheckpointError, PerceptionConfig, PerceptionReconstructor,
                                               TemporalAttention, count_parameters, load_perception, shape_table)
from neuroclips_core.perception_run import (PerceptionRunConfig, cached_latents, load_perception_result,
                                             train_perception)
from neuroclips_core.pipelines.blurry import (decode_latents, encode_frames, interpolate_frames, predict_latents,
                                              save_npy_atomic, select_smoothing, smooth_videos)
from neuroclips_core.zoo.tiny import tiny_frame_classifier, tiny_vae

torch.set_num_threads(1)
V, SIZE, CLIPS_PER_SEG = 40, 32, 24


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def store(tmp_path_factory, synthetic_store_writer):
    return synthetic_store_writer(tmp_path_factory.mktemp("pr_store") / "store")


@pytest.fixture(scope="module")
def vae():
    return tiny_vae(seed=0)           # 32 px frames <-> latents (4, 4, 4)


def _cfg(tmp_path, seed=0):
    return make_config(profile="sim", subject=2, quick=True, seed=seed, data_root=tmp_path / "no-data",
                       run_root=tmp_path / "runs", device="cpu")


RUN = PerceptionRunConfig.quick(epochs=3, batch_size=16, lr=3e-3, val_fraction=0.25, batch_size_eval=48)


# ---------------------------------------------------------------------------------------------- model
def test_sim_size_shapes_and_latent_grid():
    cfg = PerceptionConfig.sim(500)
    assert cfg.latent_shape == (4, 16, 16) and cfg.embed_size == 4
    out = PerceptionReconstructor(cfg).eval()(torch.randn(3, 500))
    assert out.shape == (3, 6, 4, 16, 16)
    small = PerceptionConfig.sim(40, latent_shape=(4, 4, 4))
    assert small.embed_size == 1 and PerceptionReconstructor(small)(torch.randn(2, 40)).shape == (2, 6, 4, 4, 4)
    with pytest.raises(ValueError, match=r"expected fMRI of shape \(B, 500\)"):
        PerceptionReconstructor(cfg)(torch.randn(2, 499))


def test_shape_table_follows_the_forward_pass():
    model = PerceptionReconstructor(PerceptionConfig.sim(500))
    rows = shape_table(model, batch=2)
    shapes = {r["stage"]: r["output shape"] for r in rows}
    assert shapes["Inception Extension"] == (2, 6, 500)
    assert shapes["coarse embedding (GroupNorm)"] == (12, 32, 4, 4)
    assert shapes["upsample 2"] == (12, 16, 16, 16)
    assert rows[-1]["output shape"] == (2, 6, 4, 16, 16)
    assert sum(r["parameters"] for r in rows) == count_parameters(model)
    assert model.training                                   # the mode it had


def _available_ram_gb() -> float:
    try:
        with open("/proc/meminfo") as f:
            info = {line.split(":")[0]: int(line.split()[1]) for line in f}
        return info["MemAvailable"] / 2 ** 20
    except (OSError, KeyError):
        return 0.0


@pytest.mark.skipif(_available_ram_gb() < 6, reason="the paper-size PR needs ~4 GB for a forward and backward pass")
def test_paper_size_constructs_and_runs_forward_and_backward():
    t0 = time.monotonic()
    cfg = PerceptionConfig.paper(13447)
    assert cfg.latent_shape == (4, 28, 28)
    model = PerceptionReconstructor(cfg)
    n = count_parameters(model)
    assert 225e6 < n < 232e6                 # the official ~229 M at subject 1's 13447 voxels (reference §2.1)
    out = model(torch.randn(1, 13447))
    assert out.shape == (1, 6, 4, 28, 28)
    out.abs().mean().backward()
    grad = model.inception.lin0[0].weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert time.monotonic() - t0 < 60


def _with_temporal_attention_on(model):
    with torch.no_grad():
        for m in model.modules():
            if hasattr(m, "eta_temporal"):
                m.eta_temporal.fill_(0.3)
    return model.eval()


def test_a_clip_does_not_depend_on_its_batch():
    """Temporal attention stays within a clip (the official code attends across the 40 clips of a batch)."""
    torch.manual_seed(0)
    model = _with_temporal_attention_on(PerceptionReconstructor(PerceptionConfig.sim(40, latent_shape=(4, 8, 8))))
    x = torch.randn(5, 40)
    alone = model(x[:1])
    batched = model(x)
    other = model(torch.cat([x[:1], 3 * torch.randn(4, 40)]))
    torch.testing.assert_close(batched[:1], alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(other[:1], alone, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(batched[1], batched[0])


def test_temporal_attention_knows_frame_order():
    """Identical frames leave attention without position encoding symmetric; the encoding breaks it."""
    torch.manual_seed(0)
    att = TemporalAttention(8, 4, 0)
    h = torch.randn(1, 8, 3, 3).repeat(6, 1, 1, 1)           # one clip, 6 identical frames
    y = att(h, 6)
    assert not torch.allclose(y[0], y[1], atol=1e-4)
    clip2 = torch.randn(6, 8, 3, 3)
    torch.testing.assert_close(att(torch.cat([h, clip2]), 6)[:6], y)   # and attends within its clip only


def test_temporal_path_is_off_at_initialisation():
    """eta_temporal starts at 1 (as the official code): changing the temporal attention changes nothing."""
    torch.manual_seed(0)
    model = PerceptionReconstructor(PerceptionConfig.sim(40, latent_shape=(4, 8, 8))).eval()
    x = torch.randn(2, 40)
    before = model(x)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, TemporalAttention):
                m.attn.out.weight.add_(1.0)
    torch.testing.assert_close(model(x), before)
    assert not torch.allclose(_with_temporal_attention_on(model)(x), before)


def test_checkpoint_round_trip_and_voxel_count_mismatch(tmp_path):
    torch.manual_seed(0)
    model = PerceptionReconstructor(PerceptionConfig.sim(40, latent_shape=(4, 4, 4), token_dim=16)).eval()
    path = model.save(tmp_path / "pr.pt", subject=1)
    assert [p.name for p in tmp_path.iterdir()] == ["pr.pt"]
    loaded, meta = load_perception(path, n_voxels=40)
    x = torch.randn(2, 40)
    torch.testing.assert_close(loaded(x), model(x))
    assert meta["subject"] == 1
    with pytest.raises(PerceptionCheckpointError) as err:
        load_perception(path, n_voxels=55, subject=3)
    msg = str(err.value)
    assert "40 voxels (subject 1)" in msg and "subject 3 has 55" in msg and "train" in msg
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(PerceptionCheckpointError, match="expected a 'neuroclips_core.perception' checkpoint"):
        load_perception(tmp_path / "other.pt")
    with pytest.raises(PerceptionCheckpointError, match="train_perception"):
        load_perception(tmp_path / "missing.pt")


def test_token_projector_and_voxel_weights():
    model = PerceptionReconstructor(PerceptionConfig.sim(40, latent_shape=(4, 8, 8), token_dim=16))
    latents, tokens = model(torch.randn(3, 40), return_tokens=True)
    assert latents.shape == (3, 6, 4, 8, 8) and tokens.shape == (3, 6, 4, 16)     # 2 x 2 coarse grid
    assert model.voxel_weights().shape == (40,)
    with pytest.raises(ValueError, match="token_dim"):
        no_projector = PerceptionReconstructor(PerceptionConfig.sim(40, latent_shape=(4, 8, 8)))
        no_projector(torch.randn(1, 40), return_tokens=True)


# --------------------------------------------------------------------------------------------- losses
def _eq1_by_hand(pred, target, tau):
    """Eq. 1 term by term, with explicit sums over j and k (the paper's notation)."""
    b, f = pred.shape[:2]
    total = 0.0
    for c in range(b):
        x = torch.nn.functional.normalize(target[c].reshape(f, -1), dim=-1)
        y = torch.nn.functional.normalize(pred[c].reshape(f, -1), dim=-1)
        mae = sum((target[c, i] - pred[c, i]).abs().mean() for i in range(f)) / f
        xy = -sum(torch.log(torch.exp(x[j] @ y[j] / tau) / sum(torch.exp(x[j] @ y[k] / tau) for k in range(f)))
                  for j in range(f)) / (2 * f)
        yx = -sum(torch.log(torch.exp(y[j] @ x[j] / tau) / sum(torch.exp(y[j] @ x[k] / tau) for k in range(f)))
                  for j in range(f)) / (2 * f)
        total = total + mae + xy + yx
    return total / b


def test_paper_loss_is_equation_1():
    torch.manual_seed(0)
    pred, target = torch.randn(3, 6, 4, 2, 2), torch.randn(3, 6, 4, 2, 2)
    loss, parts = L.PerceptionLoss(L.LossConfig(temperature=0.5))(pred, {"latents": target})
    torch.testing.assert_close(loss, _eq1_by_hand(pred, target, 0.5), atol=1e-5, rtol=1e-5)
    assert set(parts) == {"mae", "contrastive"}


def test_contrastive_variants():
    torch.manual_seed(0)
    target = torch.randn(4, 6, 8)
    good = L.bidirectional_contrastive(target + 0.01 * torch.randn_like(target), target, 0.1)
    shuffled = L.bidirectional_contrastive(target[:, torch.randperm(6)], target, 0.1)
    assert good < 0.05 < shuffled
    # batch negatives: (B F) x (B F) logits, so a prediction matching another clip's frame is penalised
    swapped = torch.cat([target[1:2], target[:1], target[2:]])
    assert L.bidirectional_contrastive(swapped, target, 0.1, "batch") > 1.0
    assert L.bidirectional_contrastive(swapped, target, 0.1, "clip") < 10.0
    # centred: a constant offset per clip (no motion error) costs nothing
    offset = target + 3 * torch.randn(4, 1, 8)
    assert L.bidirectional_contrastive(offset, target, 0.1, centered=True) < 0.01 < \
        L.bidirectional_contrastive(offset, target, 0.1)


def test_soft_cont_loss_matches_the_official_formula():
    torch.manual_seed(0)
    s, t, ta = torch.randn(10, 6), torch.randn(10, 6), torch.randn(10, 6)
    n = [torch.nn.functional.normalize(x, dim=-1) for x in (s, t, ta)]
    tau = 0.2
    l1 = torch.sum(-torch.softmax(n[1] @ n[2].T / tau, -1) * torch.log_softmax(n[0] @ n[2].T / tau, -1), -1).mean()
    l2 = torch.sum(-torch.softmax(n[2] @ n[1].T / tau, -1) * torch.log_softmax(n[2] @ n[0].T / tau, -1), -1).mean()
    torch.testing.assert_close(L.soft_cont_loss(s, t, ta, tau), (l1 + l2) / 2)


def test_pool_tokens_and_augmentation():
    tokens = torch.arange(16.0).view(1, 16, 1)
    pooled = L.pool_tokens(tokens, 4)
    assert pooled.flatten().tolist() == [2.5, 4.5, 10.5, 12.5]
    with pytest.raises(ValueError, match="square"):
        L.pool_tokens(tokens, 3)
    frames = torch.rand(5, 3, 16, 16)
    a = L.augment_frames(frames, torch.Generator().manual_seed(1))
    b = L.augment_frames(frames, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == frames.shape and 0 <= a.min() and a.max() <= 1
    assert not torch.allclose(a, frames)


def test_official_loss_needs_a_teacher_and_trains_the_projector():
    with pytest.raises(ValueError, match="teacher"):
        L.PerceptionLoss(L.LossConfig(kind="official"))
    teacher = L.ViTTokenTeacher(tiny_frame_classifier())           # 32 px, patch 8: 4 x 4 tokens of 32
    model = PerceptionReconstructor(PerceptionConfig.sim(40, latent_shape=(4, 8, 8), token_dim=32))
    loss_fn = L.PerceptionLoss(L.LossConfig(kind="official"), teacher)
    batch = {"latents": torch.randn(2, 6, 4, 8, 8), "frames": torch.rand(2, 6, 3, 32, 32)}
    loss, parts = loss_fn(model(torch.randn(2, 40), return_tokens=True), batch, torch.Generator().manual_seed(0))
    loss.backward()
    assert set(parts) == {"mae", "soft_contrastive"} and torch.isfinite(loss)
    assert model.token_projector.net[0].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())


# -------------------------------------------------------------------------------------------- blurry
def test_linear_skip_starts_the_model_at_the_ridge_prediction():
    from neuroclips_core.models.ridge import RidgeRegression

    g = torch.Generator().manual_seed(0)
    cfg = PerceptionConfig.sim(40, (4, 8, 8), linear_skip=True)
    x = torch.randn(64, 40, generator=g)
    y = (x @ torch.randn(40, 6 * 4 * 8 * 8, generator=g)) * 0.1 + 0.5
    ridge = RidgeRegression().fit(x[:48].numpy(), y[:48].numpy(), x[48:].numpy(), y[48:].numpy())
    model = PerceptionReconstructor(cfg).eval()
    model.init_skip_from_ridge(ridge.coef_, ridge.intercept_, ridge.x_mean_)
    with torch.no_grad():
        out = model(x[48:])
    np.testing.assert_allclose(out.reshape(16, -1).numpy(), ridge.predict(x[48:].numpy()), atol=1e-4)
    # the skip stays ridge's (frozen); the gate is what opens the network's own path
    assert not model.skip.weight.requires_grad and model.decoder_gate.requires_grad
    model.train()
    model(x[:8]).square().mean().backward()
    assert model.decoder_gate.grad is not None and model.skip.weight.grad is None
    with pytest.raises(ValueError, match=r"expected ridge weights \(V, K\) = \(40, 1536\), found \(40, 10\)"):
        model.init_skip_from_ridge(np.zeros((40, 10)), np.zeros(10), np.zeros(40))
    with pytest.raises(ValueError, match="needs PerceptionConfig\\(linear_skip=True\\)"):
        PerceptionReconstructor(PerceptionConfig.sim(40, (4, 8, 8))).init_skip_from_ridge(ridge.coef_, ridge.intercept_,
                                                                                        ridge.x_mean_)


def test_refiner_starts_as_the_identity_and_skip_latents_replace_the_skip():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 40, generator=g)
    plain = PerceptionReconstructor(PerceptionConfig.sim(40, (4, 8, 8), linear_skip=True)).eval()
    torch.manual_seed(1)
    refined = PerceptionReconstructor(PerceptionConfig.sim(40, (4, 8, 8), linear_skip=True,
                                                           refiner_channels=8)).eval()
    refined.load_state_dict(plain.state_dict(), strict=False)
    with torch.no_grad():
        np.testing.assert_allclose(refined(x).numpy(), plain(x).numpy(), atol=1e-6)     # untrained: the identity
        given = torch.full((4, 6, 4, 8, 8), 0.25)
        np.testing.assert_allclose(plain(x, skip_latents=given).numpy(),
                                   (plain(x) - plain.skip(x).view(4, 6, 4, 8, 8) + given).numpy(), atol=1e-6)
        refined.refiner.net[-1].bias.fill_(0.5)                                           # a trained refiner acts
        np.testing.assert_allclose((refined(x) - plain(x)).numpy(), 0.5, atol=1e-6)
    assert [r["stage"] for r in shape_table(refined)][-2] == "latent refiner (per frame)"
    with pytest.raises(ValueError, match="skip_latents must be \\(4, 6, 4, 8, 8\\), found \\(4, 6, 4, 4, 4\\)"):
        plain(x, skip_latents=torch.zeros(4, 6, 4, 4, 4))
    with pytest.raises(ValueError, match="skip_latents needs PerceptionConfig\\(linear_skip=True\\)"):
        PerceptionReconstructor(PerceptionConfig.sim(40, (4, 8, 8)))(x, skip_latents=given)


def test_out_of_fold_skip_never_sees_the_clip_it_predicts():
    from neuroclips_core.models.ridge import RidgeRegression
    from neuroclips_core.perception_refine import out_of_fold_skip

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 2, 30)).astype(np.float32)
    y = x.mean(1) @ rng.normal(size=(30, 5)).astype(np.float32) + rng.normal(size=(60, 5)).astype(np.float32)
    oof = out_of_fold_skip(x, y, lam=1.0, folds=5)
    assert oof.shape == (60, 2, 5) and oof.dtype == np.float32
    y_moved = y.copy()
    y_moved[0] += 100.0                         # a clip's own target never reaches its prediction ...
    np.testing.assert_allclose(out_of_fold_skip(x, y_moved, lam=1.0, folds=5)[0], oof[0], atol=1e-4)
    in_sample = RidgeRegression(lambdas=(1.0,)).fit(x.mean(1), y).predict(x.mean(1))
    err = lambda p: float(((p - y) ** 2).mean())   # ... so its errors are unseen-data errors, above in-sample
    assert err(oof.mean(1)) > 1.2 * err(in_sample)
    with pytest.raises(ValueError, match="folds must be between 2 and the 60 clips, found 1"):
        out_of_fold_skip(x, y, lam=1.0, folds=1)


def test_gaussian_blur_matches_scipy_and_refine_needs_the_skip():
    from scipy.ndimage import gaussian_filter

    from neuroclips_core.config import ConfigError
    from neuroclips_core.perception_refine import gaussian_blur

    img = torch.rand(2, 3, 20, 20, generator=torch.Generator().manual_seed(0))
    ours = gaussian_blur(img, 2.0).numpy()
    ref = gaussian_filter(img.numpy(), sigma=(0, 0, 2.0, 2.0), mode="nearest", truncate=3.0)
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    assert gaussian_blur(img, 0.0) is img
    with pytest.raises(ConfigError, match="refine_epochs > 0 needs ridge_skip=True"):
        PerceptionRunConfig(ridge_skip=False)
    assert PerceptionRunConfig.paper().refine_epochs == 0


def test_smoothing_is_chosen_by_the_score_it_maximises():
    rng = np.random.default_rng(0)
    gt = np.zeros((3, 2, 64, 64, 3), np.uint8)
    gt[:, :, 16:48, 16:48] = 200                                         # a flat square: texture-free truth
    noisy = np.clip(gt + rng.normal(0, 60, gt.shape), 0, 255).astype(np.uint8)
    assert smooth_videos(noisy, 0) is noisy
    smoothed = smooth_videos(noisy, 2.0)
    assert smoothed.dtype == np.uint8 and smoothed.shape == noisy.shape and smoothed.std() < noisy.std()
    sigma, scores = select_smoothing(noisy, gt, (0.0, 1.0, 2.0))
    assert sigma > 0 and scores[sigma] == max(scores.values()) and scores[0.0] < scores[sigma]
    assert select_smoothing(gt, gt, (0.0, 2.0))[0] == 0.0                # nothing to remove from the truth itself
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        smooth_videos(noisy, -1)


def test_interpolation_keeps_the_frames_at_0_3_6_9_12_15():
    rng = np.random.default_rng(0)
    clips = rng.integers(0, 256, (2, 6, 4, 4, 3), dtype=np.uint8)
    out = interpolate_frames(clips, 16)
    assert out.shape == (2, 16, 4, 4, 3) and out.dtype == np.uint8
    assert np.array_equal(out[:, 0], clips[:, 0]) and np.array_equal(out[:, 15], clips[:, 5])
    for j in range(6):
        assert np.array_equal(out[:, 3 * j], clips[:, j])
    a, b = clips[:, 1].astype(float), clips[:, 2].astype(float)
    assert np.array_equal(out[:, 4], np.rint(2 / 3 * a + 1 / 3 * b).astype(np.uint8))
    assert np.array_equal(out[:, 5], np.rint(1 / 3 * a + 2 / 3 * b).astype(np.uint8))
    with pytest.raises(ValueError, match="expected videos"):
        interpolate_frames(clips[0])


def test_save_npy_atomic_never_leaves_half_files(tmp_path):
    path = tmp_path / "blurry_test.npy"
    save_npy_atomic(path, np.zeros((2, 3), np.uint8))
    save_npy_atomic(path, np.ones((2, 3), np.uint8))
    assert np.load(path).sum() == 6 and [p.name for p in tmp_path.iterdir()] == ["blurry_test.npy"]
    with pytest.raises(ValueError):
        save_npy_atomic(path, np.array([{"not": "an array"}], dtype=object))   # np.save refuses pickles
    assert np.load(path).sum() == 6 and [p.name for p in tmp_path.iterdir()] == ["blurry_test.npy"]


def test_vae_round_trip_shapes_and_batch_invariance(store, vae):
    latents = encode_frames(vae, store.frames_test[:5], batch_size=12)
    assert latents.shape == (5, 6, 4, 4, 4) and latents.dtype == np.float32
    frames = decode_latents(vae, latents, batch_size=7)
    assert frames.shape == (5, 6, SIZE, SIZE, 3) and frames.dtype == np.uint8
    model = PerceptionReconstructor(PerceptionConfig.sim(V, latent_shape=(4, 4, 4))).eval()
    x = np.asarray(store.fmri_test[:, 0])
    np.testing.assert_allclose(predict_latents(model, x, batch_size=5), predict_latents(model, x, batch_size=24),
                               atol=1e-4)   # float32 kernels differ by batch size


def test_cached_latents_encode_only_the_rows_asked_for_once(tmp_path, store, vae):
    rows = np.array([7, 3, 50])
    first = cached_latents(vae, store.frames_train, tmp_path, rows, batch_size=12)
    assert first.shape == (len(store.frames_train), 6, 4, 4, 4)
    assert np.isnan(first[0]).all() and not np.isnan(first[rows]).any()
    np.testing.assert_allclose(first[rows], encode_frames(vae, np.asarray(store.frames_train)[np.sort(rows)])
                               [np.argsort(np.argsort(rows))], atol=1e-5)
    (cached,) = list(tmp_path.iterdir())
    np.save(cached, np.zeros_like(np.load(cached)))        # a second call reads the cache, not the VAE
    assert np.all(cached_latents(vae, store.frames_train, tmp_path, rows)[rows] == 0)
    assert len(list(tmp_path.iterdir())) == 1


def test_vae_fingerprint_is_the_same_in_every_process():
    """The reuse check compares fingerprints across sessions: they must not depend on Python's hash seed."""
    import subprocess
    import sys

    code = ("from neuroclips_core.zoo.tiny import tiny_vae; from neuroclips_core.perception_run import "
            "module_fingerprint; print(module_fingerprint(tiny_vae()))")
    prints = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": seed}).stdout.strip() for seed in ("1", "2")}
    assert len(prints) == 1 and len(prints.pop()) == 40


# ------------------------------------------------------------------------------------ train_perception
def _same_scores(a, b, rtol: float = 1e-3) -> bool:
    """Two nested metrics dicts with the same keys and numbers equal to ``rtol`` (a uint8 video whose float32
    decode differs in the last digits rounds a few pixels the other way: SSIM moves by ~1e-6, a tiny motion
    energy by more, relatively)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same_scores(a[k], b[k], rtol) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_same_scores(x, y, rtol) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return b is not None and a is not None and bool(np.isclose(a, b, rtol=rtol, atol=1e-6))
    return a == b


def test_train_perception_writes_every_artifact_and_reuses_them(tmp_path, store, vae):
    cfg = _cfg(tmp_path)
    r = train_perception(cfg, run=RUN, store=store, vae=vae, progress=False)
    folder = cfg.run_root / "sim" / "subj02" / "perception"
    assert r.folder == folder and not r.reused
    for name in ("checkpoint.pt", "history.json", "blurry_test.npy", "metrics.json", "params.json",
                 "baselines/mean_frame_test.npy", "baselines/ridge_test.npy", "train/last.pt", "train/best.pt",
                 "refine/last.pt", "refine/best.pt"):
        assert (folder / name).is_file(), name
    blurry = r.blurry()
    assert blurry.shape == (CLIPS_PER_SEG, 6, SIZE, SIZE, 3) and blurry.dtype == np.uint8
    m = json.loads((folder / "metrics.json").read_text())
    for who in (m["pr"], m["baselines"]["mean_frame"], m["baselines"]["ridge"]):
        assert {"ssim_s1", "ssim_s2", "ssim_s2p", "psnr", "pixcorr", "motion"} <= set(who)
    assert m["n_train"] == 72 and m["n_val"] == 24 and m["n_test"] == CLIPS_PER_SEG
    assert set(m["verdict"]) >= {"ssim_s2_beats_mean_frame", "pixcorr_beats_ridge", "moves_with_stimulus", "all"}
    assert len(r.history["epochs"]) == RUN.epochs and r.history["best_epoch"] >= 1
    # stage 2 ran, and stage 1's own videos are scored beside the refined ones
    assert len(r.history["refine"]["epochs"]) == RUN.refine_epochs and m["refine"]["best_epoch"] >= 1
    assert {"ssim_s2", "pixcorr"} <= set(m["pr_stage1"]) and m["smoothing"]["pr_stage1"]["sigma"] in RUN.smoothing
    assert not list(folder.rglob(".*tmp*"))
    model = r.load_model(n_voxels=V)
    with pytest.raises(PerceptionCheckpointError, match=f"trained for {V} voxels"):
        r.load_model(n_voxels=V + 1)
    x = np.asarray(store.fmri_test, np.float32).mean(1)
    b = RUN.batch_size_eval
    sigma = m["smoothing"]["pr"]["sigma"]                     # the blurry video = the decode, low-passed
    assert sigma in RUN.smoothing and m["smoothing"]["pr"]["val_ssim_s2"][str(sigma)] == \
        max(m["smoothing"]["pr"]["val_ssim_s2"].values())
    static = smooth_videos(decode_latents(vae, predict_latents(model, x, b), b), sigma)
    gt = np.asarray(store.frames_test)
    # the same scores, up to float32 summation order (a decode's last digits depend on threads and batching)
    assert _same_scores(json.loads(json.dumps(json_clean(video_metrics(static, gt)))), m["pr_static"])
    assert blurry.shape == static.shape and m["pr"] == json.loads(json.dumps(json_clean(video_metrics(blurry, gt))))
    assert set(m["motion_path"]["val_r"]) == {"dy", "dx", "speed"}
    # the motion path only translates frames: each clip's middle is where the PR put it
    middle = np.abs(blurry[:, 2:4].astype(int) - static[:, 2:4].astype(int)).mean()
    ends = np.abs(blurry[:, [0, 5]].astype(int) - static[:, [0, 5]].astype(int)).mean()
    assert middle <= ends

    t0 = time.monotonic()
    again = train_perception(cfg, run=RUN, store=store, vae=vae, progress=False)
    assert again.reused and again.metrics == m and time.monotonic() - t0 < 5
    assert load_perception_result(cfg).metrics == m


def test_interrupted_training_resumes_to_the_straight_result(tmp_path, store, vae):
    run = PerceptionRunConfig.quick(**{**RUN.to_dict(), "loss": RUN.loss, "refine_epochs": 2})
    straight = train_perception(_cfg(tmp_path / "a"), run=run, store=store, vae=vae, progress=False)
    cfg = _cfg(tmp_path / "b")
    # stopped in stage 1, then in the refiner's stage 2 (epochs are counted over both stages)
    for stop in (1, run.epochs + 1):
        part = train_perception(cfg, run=run, store=store, vae=vae, progress=False, stop_after_epochs=stop)
        assert part.metrics == {} and not (part.folder / "blurry_test.npy").exists()
    assert len(json.loads((part.folder / "refine" / "history.json").read_text())["epochs"]) == 1
    resumed = train_perception(cfg, run=run, store=store, vae=vae, progress=False)
    assert np.array_equal(resumed.blurry(), straight.blurry())
    strip = {k: v for k, v in straight.metrics.items() if k != "timings"}
    assert {k: v for k, v in resumed.metrics.items() if k != "timings"} == strip


def test_same_seed_same_metrics_other_seed_other_model(tmp_path, store, vae):
    a = train_perception(_cfg(tmp_path / "a"), run=RUN, store=store, vae=vae, progress=False)
    b = train_perception(_cfg(tmp_path / "b"), run=RUN, store=store, vae=vae, progress=False)
    c = train_perception(_cfg(tmp_path / "c", seed=1), run=RUN, store=store, vae=vae, progress=False)
    assert a.metrics["pr"] == b.metrics["pr"]
    assert a.metrics["pr"] != c.metrics["pr"]


def test_changed_parameters_retrain_and_another_subject_store_is_refused(tmp_path, store, vae,
                                                                        synthetic_store_writer):
    cfg = _cfg(tmp_path)
    first = train_perception(cfg, run=RUN, store=store, vae=vae, progress=False)
    changed = train_perception(cfg, run=PerceptionRunConfig.quick(**{**RUN.to_dict(), "loss": RUN.loss, "lr": 1e-3}),
                               store=store, vae=vae, progress=False)
    assert not changed.reused and changed.metrics["params"] != first.metrics["params"]
    other = synthetic_store_writer(tmp_path / "other_store", seed=1, n_voxels=V + 7)
    with pytest.raises(PerceptionCheckpointError, match=f"{V} voxels.*has {V + 7}"):
        load_perception(changed.checkpoint, n_voxels=other.n_voxels, subject=2)


def test_changed_low_pass_grid_rescores_without_retraining(tmp_path, store, vae):
    cfg = _cfg(tmp_path)
    first = train_perception(cfg, run=RUN, store=store, vae=vae, progress=False)
    last = first.folder / "train" / "last.pt"
    stamp = (last.stat().st_mtime_ns, (first.folder / "refine" / "last.pt").stat().st_mtime_ns)
    run = PerceptionRunConfig.quick(**{**RUN.to_dict(), "loss": RUN.loss, "smoothing": (0.0, 1.0)})
    again = train_perception(cfg, run=run, store=store, vae=vae, progress=False)
    assert not again.reused and again.metrics["params"] == first.metrics["params"]
    assert (last.stat().st_mtime_ns, (first.folder / "refine" / "last.pt").stat().st_mtime_ns) == stamp
    assert again.metrics["evaluation"]["smoothing"] == [0.0, 1.0] and again.metrics["smoothing"]["pr"]["sigma"] in (0, 1)
    assert again.metrics["val_mae"] == first.metrics["val_mae"]
    assert train_perception(cfg, run=run, store=store, vae=vae, progress=False).reused


def test_official_loss_through_train_perception(tmp_path, store, vae):
    run = PerceptionRunConfig.quick(epochs=1, batch_size=16, val_fraction=0.25, baselines=False,
                                    loss=L.LossConfig(kind="official"))
    r = train_perception(_cfg(tmp_path), run=run, store=store, vae=vae, progress=False,
                         teacher=L.ViTTokenTeacher(tiny_frame_classifier()))
    assert "soft_contrastive" in r.history["epochs"][0]["train"] and "baselines" not in r.metrics
    assert r.load_model().config.token_dim == 32                 # the tiny ViT teacher's width
