"""The Semantics Reconstructor's training driver on a small synthetic store (moving squares, high SNR) with the tiny
CLIP: artifacts and their reuse, the clip-target cache, same seed = same retrieval, resume = straight run, the
objective's stages, Reftm pre-training and its absence, bad inputs, and a trained SR above chance."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from neuroclips_core import semantics_targets
from neuroclips_core.config import ConfigError, make_config
from neuroclips_core.models.losses import SemanticsLossConfig
from neuroclips_core.models.prior import DiffusionPrior, PriorConfig
from neuroclips_core.models.semantics import (ReftmProjector, SemanticsCheckpointError, SemanticsConfig,
                                              SemanticsReconstructor)
from neuroclips_core.models.semantics_objective import SemanticsObjective, SemanticsTrainee
from neuroclips_core.reftm_pretrain import ReftmPretrainConfig, caption_chance, pretrain_reftm
from neuroclips_core.semantics_run import (SemanticsRunConfig, StageSchedule, load_semantics_result, reftm_plan,
                                           train_semantics)
from neuroclips_core.semantics_targets import cached_keyframe_tokens
from neuroclips_core.zoo.tiny import TINY_CLIP_TOKENS, tiny_clip

torch.set_num_threads(1)
V, SEGMENTS, PER_SEG = 40, 8, 24          # 8 x 24 training clips (6 segments train, 2 validate), 24 test clips
RUN = SemanticsRunConfig.quick(
    sr_model={"hidden": 64, "n_blocks": 1},
    prior_model={"depth": 1, "heads": 2, "dim_head": 16, "sample_steps": 5},
    backbone_stage=StageSchedule(10, 32, 1e-2), prior_stage=StageSchedule(2, 16, 1e-3), val_fraction=0.25,
    reftm_pretrain=ReftmPretrainConfig.quick(n_pairs=128, val_pairs=64, eval_pairs=100, eval_batch=50, epochs=2,
                                             chunk=128),
    batch_size_eval=48)


@pytest.fixture(scope="module")
def store(tmp_path_factory, synthetic_store_writer):
    return synthetic_store_writer(tmp_path_factory.mktemp("sr_store") / "store", n_train_segments=SEGMENTS,
                                  captions=True)


@pytest.fixture(scope="module")
def clip():
    return tiny_clip(seed=0)             # 32 px, tokens (16, 64), text width 32


def _cfg(root, seed=0):
    return make_config(profile="sim", subject=2, quick=True, seed=seed, data_root=root / "no-data",
                       run_root=root / "runs", device="cpu")


@pytest.fixture(scope="module")
def straight(tmp_path_factory, store, clip):
    """One straight run, shared by the tests that only read what it wrote."""
    root = tmp_path_factory.mktemp("straight")
    return _cfg(root), train_semantics(_cfg(root), run=RUN, store=store, clip=clip, progress=False)


def _without_timings(retrieval: dict) -> dict:
    """retrieval.json less what depends on the clock or the run folder (timings, paths)."""
    out = {k: v for k, v in retrieval.items() if k not in ("timings", "reftm")}
    out["stages"] = {stage: {k: v for k, v in s.items() if k not in ("seconds", "clips_per_s")}
                     for stage, s in retrieval["stages"].items()}
    out["reftm"] = {k: v for k, v in retrieval["reftm"].items() if k != "path"}
    return out


# ---------------------------------------------------------------------------------------------- artifacts
def test_every_artifact_with_its_shape_then_reuse(straight, store):
    cfg, r = straight
    folder = cfg.run_root / "sim" / "subj02" / "semantics"
    assert r.folder == folder and not r.reused
    for name in ("checkpoint.pt", "history.json", "retrieval.json", "prior_tokens_test.npy", "params.json",
                 "train_backbone/best.pt", "train_prior/last.pt"):
        assert (folder / name).is_file(), name
    assert not list(folder.rglob(".*tmp*"))
    tokens = r.prior_tokens()
    assert tokens.shape == (PER_SEG, *TINY_CLIP_TOKENS) and tokens.dtype == np.float16
    assert np.isfinite(tokens.astype(np.float32)).all() and tokens.std() > 0
    m = r.retrieval
    assert (m["n_train"], m["n_val"], m["n_test"], m["keyframe_index"]) == (6 * PER_SEG, 2 * PER_SEG, PER_SEG, 2)
    test = m["test"]["clip_voxels"]
    assert test["pool_size"] == PER_SEG and test["chance"] == pytest.approx(1 / PER_SEG)
    assert set(m["test"]) == {"clip_voxels", "prior_tokens", "ridge"} and m["reftm"]["used"]
    assert set(r.history) == {"backbone", "prior"} and len(r.history["backbone"]["epochs"]) == 10
    assert {"fwd_top1", "bwd_top1", "chance", "contrastive", "reftm_clip_voxels"} <= \
        set(r.history["backbone"]["epochs"][0]["val"])
    assert {"prior_mse", "reftm_prior"} <= set(r.history["prior"]["epochs"][0]["train"])

    sr, prior, reftm, meta = r.load_models(n_voxels=V)
    assert sr.config.token_shape == TINY_CLIP_TOKENS and prior.config.n_tokens == TINY_CLIP_TOKENS[0]
    assert reftm.proj.shape == (TINY_CLIP_TOKENS[1], 32) and meta["keyframe_index"] == 2
    with pytest.raises(SemanticsCheckpointError, match=f"trained for {V} voxels.*has {V + 3}"):
        r.load_models(n_voxels=V + 3)

    stamp = (folder / "checkpoint.pt").stat().st_mtime_ns
    again = train_semantics(cfg, run=RUN, store=store, clip=tiny_clip(seed=0), progress=False)
    assert again.reused and again.retrieval == m
    assert (folder / "checkpoint.pt").stat().st_mtime_ns == stamp            # nothing trained or written
    assert load_semantics_result(cfg).retrieval == m


def test_clip_targets_are_encoded_once_and_same_seed_gives_same_retrieval(straight, store, clip, monkeypatch):
    """Retraining in the same run folder reads the keyframe tokens and caption embeddings from the cache (no CLIP
    call) and, with the same seed, reproduces every number."""
    cfg, first = straight
    calls = {"image": 0, "text": 0}
    image_tokens, caption_embeddings = semantics_targets.image_tokens, semantics_targets.caption_embeddings

    def count(kind, fn):
        def wrapped(*args, **kwargs):
            calls[kind] += 1
            return fn(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(semantics_targets, "image_tokens", count("image", image_tokens))
    monkeypatch.setattr(semantics_targets, "caption_embeddings", count("text", caption_embeddings))
    again = train_semantics(cfg, run=RUN, store=store, clip=clip, progress=False, retrain=True)
    assert not again.reused and calls == {"image": 0, "text": 0}
    assert _without_timings(again.retrieval) == _without_timings(first.retrieval)
    np.testing.assert_array_equal(again.prior_tokens(), first.prior_tokens())
    # the cache is keyed by the keyframes themselves: another keyframe index is encoded (once)
    cache = cfg.run_root / "sim" / "cache" / "clip_tokens"
    n_files = len(list(cache.iterdir()))
    frame0, _ = cached_keyframe_tokens(clip, store.frames_test, 0, cache)
    again0, _ = cached_keyframe_tokens(clip, store.frames_test, 0, cache)
    frame2, _ = cached_keyframe_tokens(clip, store.frames_test, 2, cache)          # the run's, from the cache
    assert calls["image"] == 1 and len(list(cache.iterdir())) == n_files + 1
    np.testing.assert_array_equal(frame0, again0)
    assert frame0.shape == frame2.shape and not np.array_equal(frame0, frame2)


def test_interrupted_training_resumes_to_the_straight_result(tmp_path, straight, store, clip):
    _, reference = straight
    cfg = _cfg(tmp_path)
    part = train_semantics(cfg, run=RUN, store=store, clip=clip, progress=False, stop_after_epochs=3)
    assert part.retrieval == {} and len(part.history["backbone"]["epochs"]) == 3
    assert not (part.folder / "prior_tokens_test.npy").exists()
    part = train_semantics(cfg, run=RUN, store=store, clip=clip, progress=False, stop_after_epochs=11)
    assert part.retrieval == {} and len(part.history["prior"]["epochs"]) == 1     # inside the prior stage
    resumed = train_semantics(cfg, run=RUN, store=store, clip=clip, progress=False)
    assert _without_timings(resumed.retrieval) == _without_timings(reference.retrieval)
    np.testing.assert_array_equal(resumed.prior_tokens(), reference.prior_tokens())


def test_a_trained_sr_retrieves_validation_keyframes_far_above_chance(straight):
    """High-SNR synthetic fMRI, 144 training clips: forward top-1 among the 48 validation clips (chance 1/48)."""
    _, r = straight
    val = r.retrieval["validation"]["clip_voxels"]
    assert val["pool_size"] == 2 * PER_SEG and val["chance"] == pytest.approx(1 / 48)
    assert val["forward"] >= 10 * val["chance"] and val["backward"] >= 10 * val["chance"]
    test = r.retrieval["test"]["clip_voxels"]
    assert test["forward"] >= 5 * test["chance"]
    # the epoch kept is the best validation epoch, not the last
    epochs = r.history["backbone"]["epochs"]
    best = max(e["val"]["fwd_top1"] for e in epochs)
    assert r.retrieval["stages"]["backbone"]["best"] == best


# ------------------------------------------------------------------------------------------------- Reftm
def test_reftm_pretraining_raises_heldout_image_to_text_retrieval_and_is_reused(tmp_path, clip):
    config = ReftmPretrainConfig.quick(n_pairs=1024, eval_pairs=400, eval_batch=10, epochs=10, lr=3e-2)
    r = pretrain_reftm(clip, tmp_path, config)
    assert r.chance == pytest.approx(0.1, abs=0.01) and not r.reused
    assert r.before < 1.3 * r.chance and r.after > r.before + 0.05            # measured: 0.108 -> 0.195
    assert not any(p.requires_grad for p in r.projector.parameters())
    assert [p.name for p in tmp_path.iterdir()] == [r.path.name]            # the training state is gone
    again = pretrain_reftm(clip, tmp_path, config)
    assert again.reused and again.after == r.after
    torch.testing.assert_close(again.projector.proj, r.projector.proj)


def test_caption_chance_counts_repeated_captions():
    assert caption_chance(["a", "b", "c", "d"], 4) == pytest.approx(0.25)
    assert caption_chance(["a", "a", "b", "c"], 4) == pytest.approx((2 / 4 * 2 + 1 / 4 * 2) / 4)


def test_store_without_captions_turns_reftm_off_or_refuses(tmp_path, synthetic_store_writer, clip):
    bare = synthetic_store_writer(tmp_path / "bare")               # captions null, as real data before captioning
    use, note = reftm_plan(bare, RUN)
    assert not use and "96 of 96 training clips" in note and "no caption" in note
    with pytest.raises(ConfigError, match="Reftm was requested.*no caption"):
        train_semantics(_cfg(tmp_path), run=SemanticsRunConfig.quick(reftm=True), store=bare, clip=clip,
                        progress=False)
    assert not (tmp_path / "runs" / "sim" / "subj02" / "semantics").exists()     # refused before any work


def test_joint_recipe_without_captions(tmp_path, synthetic_store_writer, clip):
    """The paper's Eq. 4 as one stage (1 BiMixCo epoch, then SoftCLIP) on a store with no captions: no Reftm terms,
    a note saying why, the epoch kept by the validation loss."""
    bare = synthetic_store_writer(tmp_path / "bare")
    run = SemanticsRunConfig.quick(**{**{k: getattr(RUN, k) for k in ("sr_model", "prior_model", "val_fraction")},
                                      "loss": SemanticsLossConfig.for_recipe("paper"),
                                      "joint_stage": StageSchedule(4, 16, 3e-3)})
    r = train_semantics(_cfg(tmp_path), run=run, store=bare, clip=clip, progress=False)
    assert list(r.history) == ["joint"] and r.retrieval["stages"]["joint"]["select"] == "loss"
    train_terms = r.history["joint"]["epochs"][0]["train"]
    assert {"contrastive", "prior_mse"} <= set(train_terms) and not any(k.startswith("reftm") for k in train_terms)
    assert not r.retrieval["reftm"]["used"] and "no caption" in r.retrieval["notes"][0]
    assert r.load_models().reftm is None and r.prior_tokens().shape == (PER_SEG, *TINY_CLIP_TOKENS)


# ------------------------------------------------------------------------------------------- bad inputs
def test_token_shape_other_than_the_clips_is_refused(tmp_path, store, clip):
    run = SemanticsRunConfig.quick(sr_model={"token_shape": (64, 128)})
    with pytest.raises(ConfigError, match=r"tokens \(64, 128\).*CLIP model gives tokens \(16, 64\)"):
        train_semantics(_cfg(tmp_path), run=run, store=store, clip=clip, progress=False)
    with pytest.raises(ConfigError, match=r"prior config is for tokens \(8, 64\).*gives \(16, 64\)"):
        SemanticsRunConfig.quick(prior_model={"n_tokens": 8}).prior_config((16, 64))


# --------------------------------------------------------------------------------------------- objective
def _trainee(stage: str, recipe: str = "official", use_text: bool = True):
    torch.manual_seed(0)
    sr = SemanticsReconstructor(SemanticsConfig(n_voxels=V, hidden=16, n_blocks=1, token_shape=(4, 8), text_dim=6))
    prior = DiffusionPrior(PriorConfig.sim(4, 8, depth=1, heads=2, dim_head=8))
    objective = SemanticsObjective(SemanticsLossConfig.for_recipe(recipe), stage, 4, lambda: 0, use_text)
    return SemanticsTrainee(sr, prior, ReftmProjector(8, 6), objective)


def test_each_stage_trains_only_its_networks():
    batch = {"fmri": torch.randn(6, V), "tokens": torch.randn(6, 4, 8), "text": torch.randn(6, 6)}
    for stage, trained in (("backbone", {"sr"}), ("prior", {"prior"})):
        model = _trainee(stage).train()
        loss, parts = model(batch, torch.Generator().manual_seed(0))
        loss.backward()
        got = {name for name in ("sr", "prior", "reftm")
               if any(p.grad is not None and p.grad.abs().sum() > 0 for p in getattr(model, name).parameters())}
        assert got == trained, stage
        assert not model.sr.training if stage == "prior" else model.sr.training     # frozen parts stay in eval
    _, val_parts = _trainee("backbone").eval()(batch, torch.Generator().manual_seed(0))
    assert val_parts["chance"] == pytest.approx(1 / 6) and 0 <= val_parts["fwd_top1"] <= 1
    with pytest.raises(ValueError, match="stages .*'backbone', 'prior'.* not 'joint'"):
        _trainee("joint")
