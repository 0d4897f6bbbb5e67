"""Stand-in training: the corpus, quick-mode training of each role, the load round trip, resuming, the stamp.

Quick mode trains each role for a few steps on small batches (same architectures as the shipped stand-ins), so
these tests check the machinery, not the quality; the quality targets are checked by the stamps of the shipped
weights (``test_shipped_standins``, skipped until they are trained).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

from neuroclips_core.data import simulate
from neuroclips_core.data.sim_stimuli import CLASSES
from neuroclips_core.zoo import corpus
from neuroclips_core.zoo.standins import (SHIPPED_BUDGET_MB, STAMP_FILE, STANDIN_DIR, StandinError,
                                          evaluate_standin, folder_size_mb, load_standin, parse_steps,
                                          train_standins)
from neuroclips_core.zoo.targets import beats_floor, targets_for
from neuroclips_core.zoo.train import RECIPES, RunOptions, TrainError, read_log, train_role
from neuroclips_core.zoo.train.classifiers import (FrameClassifierRecipe, VideoClassifierRecipe,
                                                   clip_mean_frame_logits, inflate_vit_to_videomae, normalise)

ROOT = Path(__file__).resolve().parents[1]
QUIET = RunOptions(verbose=False)


# ------------------------------------------------------------------------------------------------ corpus
def test_corpus_batches_are_deterministic_and_well_formed():
    a = corpus.frame_batch(3, 5, 8, with_masks=True)
    b = corpus.frame_batch(3, 5, 8, with_masks=True)
    assert a.images.shape == (8, 3, 64, 64) and a.images.dtype == torch.float32
    assert a.masks.shape == (8, 64, 64) and a.masks.any()
    assert 0 <= a.images.min() and a.images.max() <= 1
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert torch.equal(a.images * 255, (a.images * 255).round())          # 8-bit, as stored frames are
    assert not torch.equal(a.images, corpus.frame_batch(3, 6, 8).images)
    assert not torch.equal(a.images, corpus.frame_batch(3, 5, 8, split="heldout").images)

    c = corpus.clip_batch(3, 0, 4)
    assert c.clips.shape == (4, corpus.CLIP_FRAMES, 3, 64, 64) and c.velocity.shape == (4, 2)
    for label, caption in zip(c.labels.tolist(), c.captions):
        assert CLASSES[label] in caption
    # consecutive frames of a clip come from one shot: same background corner, small change
    assert (c.clips[:, 1:, :, :4, :4] - c.clips[:, :-1, :, :4, :4]).abs().max() < 0.05
    assert len(corpus.heldout_clips(3, 6, chunk=4).captions) == 6


def test_corpus_is_disjoint_from_cc2017_sim_stimuli():
    def signature(shots):
        return {(s.label, tuple(round(x, 9) for x in s.color), tuple(round(x, 9) for x in s.pos0)) for s in shots}

    corpus_sig = set()
    for split in ("train", "heldout"):
        for index in range(3):
            corpus_sig |= signature(corpus.corpus_shots(0, split, index, 64)[0])
    sim_sig = set()
    for seg in ("seg1", "seg2", "test1"):
        sim_sig |= signature(simulate.segment_shots(0, seg))
    assert len(corpus_sig) == 6 * 64 and len(sim_sig) > 100
    assert not corpus_sig & sim_sig
    train = signature(corpus.corpus_shots(0, "train", 0, 64)[0])
    assert not train & signature(corpus.corpus_shots(0, "heldout", 0, 64)[0])


# ------------------------------------------------------------------------------------------------ quick training
@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """Every role trained in quick mode into a temporary output root (~30-40 s on 2 cores)."""
    root = tmp_path_factory.mktemp("standins")
    results = train_standins(quick=True, out=root / "weights", work=root / "work", options=QUIET)
    return root, results


def test_quick_training_saves_every_role_with_a_stamp(quick):
    root, results = quick
    assert list(results) == list(RECIPES)
    for role, r in results.items():
        assert r.finished and r.folder == root / "weights" / role
        stamp = json.loads((r.folder / STAMP_FILE).read_text())
        assert stamp["simulator_version"] == simulate.SIMULATOR_VERSION and stamp["role"] == role
        assert stamp["config"]["steps"] == RECIPES[role].quick_config().steps and stamp["seed"] == 0
        assert stamp["train_seconds"] > 0 and stamp["metrics"] and stamp["library_versions"]["torch"]
        assert "train-standins --roles " + role in stamp["retrain"]
        log = read_log(root / "work" / role)
        assert log and log[-1]["step"] == stamp["config"]["steps"]
    # the shipped layout is the same (only the step counts differ): it must fit the package budget
    assert folder_size_mb(root / "weights") <= SHIPPED_BUDGET_MB


@pytest.mark.parametrize("role", ["frame_classifier", "video_classifier"])
def test_classifier_roundtrip(quick, role):
    root, _ = quick
    model, processor = load_standin(role, root=root / "weights")
    assert model.dtype == torch.float32 and not model.training
    assert model.config.id2label[5] == CLASSES[5] and model.config.num_labels == len(CLASSES)
    from safetensors import safe_open

    with safe_open(str(root / "weights" / role / "model.safetensors"), "pt") as f:   # shipped in half precision
        assert f.get_tensor(next(iter(f.keys()))).dtype == torch.float16
    if role == "frame_classifier":
        x = corpus.frame_batch(0, 0, 3).images
        frames = [np.round(f.permute(1, 2, 0).numpy() * 255).astype(np.uint8) for f in x]
        pixels = processor(images=frames, return_tensors="pt").pixel_values
    else:
        x = corpus.clip_batch(0, 0, 2).clips
        videos = [[np.round(f.permute(1, 2, 0).numpy() * 255).astype(np.uint8) for f in clip] for clip in x]
        pixels = processor(videos, return_tensors="pt").pixel_values
    # the saved processor computes exactly the normalisation the model was trained with
    torch.testing.assert_close(pixels, normalise(x), atol=1e-6, rtol=0)
    with torch.no_grad():
        logits = model(pixel_values=pixels).logits
    assert logits.shape == (len(x), len(CLASSES)) and torch.isfinite(logits).all()


def test_vae_roundtrip(quick):
    root, results = quick
    vae = load_standin("vae", root=root / "weights")
    assert vae.dtype == torch.float32 and 0.05 < vae.config.scaling_factor < 20
    x = corpus.frame_batch(0, 0, 2).images * 2 - 1
    with torch.no_grad():
        z = vae.encode(x).latent_dist.mode()
        assert z.shape == (2, 4, 16, 16)                      # shallow latents: downsampling factor 4
        assert vae.decode(z).sample.shape == (2, 3, 64, 64)
    assert {"psnr", "ssim", "classifier_top1_reconstructed"} <= set(results["vae"].metrics)


def test_evaluating_again_fills_in_the_judge_trained_later(quick, tmp_path):
    # a VAE trained before the frame classifier existed has no class-survival metric; once the classifier sits
    # beside it, evaluating again fills it in and keeps the training record
    root, _ = quick
    shutil.copytree(root / "weights" / "vae", tmp_path / "vae")
    before = json.loads((tmp_path / "vae" / STAMP_FILE).read_text())
    assert evaluate_standin("vae", tmp_path)["classifier_top1_reconstructed"] is None
    shutil.copytree(root / "weights" / "frame_classifier", tmp_path / "frame_classifier")
    metrics = evaluate_standin("vae", tmp_path)
    assert 0.0 <= metrics["classifier_top1_reconstructed"] <= 1.0
    after = json.loads((tmp_path / "vae" / STAMP_FILE).read_text())
    assert after["metrics"] == json.loads(json.dumps(metrics)) and "evaluated" in after
    assert after["metrics"]["psnr"] == pytest.approx(before["metrics"]["psnr"], abs=1e-4)
    assert {k: after[k] for k in ("config", "train_seconds", "seed")} == \
        {k: before[k] for k in ("config", "train_seconds", "seed")}
    with pytest.raises(ValueError, match="no stand-in recipe"):
        evaluate_standin("nonsense", tmp_path)


# ------------------------------------------------------------------------------------------------ resuming
def _frame_recipe(out: Path, **changes):
    import dataclasses

    config = dataclasses.replace(FrameClassifierRecipe.quick_config(),
                                 **{"steps": 4, "batch": 4, "eval_size": 8, "stem_steps": 1, "stem_batch": 16,
                                    "teacher_steps": 1, **changes})
    return FrameClassifierRecipe(config, 0, out)


def _weights(work: Path) -> dict:
    return torch.load(work / "checkpoint.pt", weights_only=False)["model"]


def test_interrupted_run_resumes_to_the_straight_run(tmp_path):
    opts = RunOptions(log_every=1, verbose=False)
    straight = train_role(_frame_recipe(tmp_path / "a"), tmp_path / "a" / "fc", tmp_path / "wa", opts)
    part = train_role(_frame_recipe(tmp_path / "b"), tmp_path / "b" / "fc", tmp_path / "wb",
                      RunOptions(log_every=1, verbose=False, max_steps=2))
    assert not part.finished and part.step == 2 and not (tmp_path / "b" / "fc").exists()
    resumed = train_role(_frame_recipe(tmp_path / "b"), tmp_path / "b" / "fc", tmp_path / "wb", opts)
    assert straight.finished and resumed.finished and resumed.step == straight.step == 4
    la, lb = read_log(tmp_path / "wa"), read_log(tmp_path / "wb")
    assert [r["step"] for r in lb] == [1, 2, 3, 4]
    assert [r["loss"] for r in la] == [r["loss"] for r in lb]
    wa, wb = _weights(tmp_path / "wa"), _weights(tmp_path / "wb")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # a checkpoint is never resumed under another config
    with pytest.raises(TrainError, match=r"(?s)config.lr: checkpoint 0.001, now 0.0005.*delete"):
        train_role(_frame_recipe(tmp_path / "b", lr=5e-4), tmp_path / "b" / "fc", tmp_path / "wb", opts)


def test_a_run_is_lengthened_exactly_before_its_decay(tmp_path):
    opts = RunOptions(log_every=1, verbose=False)
    train_role(_frame_recipe(tmp_path, steps=8), tmp_path / "a" / "fc", tmp_path / "wa", opts)
    # 4 steps decay from step 3 (the last 20 %): stopped at step 2, the run can still become 8 steps long
    train_role(_frame_recipe(tmp_path, steps=4), tmp_path / "b" / "fc", tmp_path / "wb",
               RunOptions(log_every=1, verbose=False, max_steps=2))
    longer = train_role(_frame_recipe(tmp_path, steps=8), tmp_path / "b" / "fc", tmp_path / "wb", opts)
    assert longer.finished and longer.step == 8
    wa, wb = _weights(tmp_path / "wa"), _weights(tmp_path / "wb")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # once decayed (finished), another step count is refused
    with pytest.raises(TrainError, match=r"config.steps: checkpoint 8, now 12"):
        train_role(_frame_recipe(tmp_path, steps=12), tmp_path / "b" / "fc", tmp_path / "wb", opts)


# ------------------------------------------------------------------------------------------------ stamps, errors
def test_stamp_of_another_simulator_version_is_refused(quick, tmp_path):
    root, _ = quick
    shutil.copytree(root / "weights" / "frame_classifier", tmp_path / "frame_classifier")
    stamp_path = tmp_path / "frame_classifier" / STAMP_FILE
    stamp = json.loads(stamp_path.read_text())
    stamp["simulator_version"] = "0.0.1"
    stamp_path.write_text(json.dumps(stamp))
    with pytest.raises(StandinError, match=r"0\.0\.1.*\n.*train-standins --roles frame_classifier"):
        load_standin("frame_classifier", root=tmp_path)
    stamp_path.unlink()
    with pytest.raises(StandinError, match="no stamp.json.*\n.*train-standins --roles frame_classifier"):
        load_standin("frame_classifier", root=tmp_path)
    with pytest.raises(StandinError, match="no stand-in in .*\n.*train-standins --roles vae"):
        load_standin("vae", root=tmp_path)


def test_video_classifier_needs_the_frame_classifier(tmp_path):
    recipe = VideoClassifierRecipe(VideoClassifierRecipe.quick_config(), 0, tmp_path)
    with pytest.raises(TrainError, match="--roles frame_classifier,video_classifier"):
        recipe.build()


def test_video_classifier_distils_the_frame_classifiers_clip_mean(quick):
    import dataclasses

    import torch.nn.functional as F

    root, _ = quick
    config = VideoClassifierRecipe.quick_config()
    assert config.kd_weight > 0 and VideoClassifierRecipe.full_config().kd_weight > 0
    recipe = VideoClassifierRecipe(config, 0, root / "weights")
    model = recipe.build()
    loss, parts = recipe.loss(model, 0, torch.Generator().manual_seed(0))
    assert {"acc", "kd", "teacher_acc"} <= set(parts) and parts["kd"] >= 0 and torch.isfinite(loss)
    # the teacher is the trained frame classifier, frozen
    teacher = recipe.frame_teacher
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    frame = load_standin("frame_classifier", root=root / "weights")
    frame_model = frame.model
    raw = corpus.clip_batch(0, 0, config.batch, "train", 64, config.num_frames).clips
    clips = normalise(raw)
    with torch.no_grad():
        torch.testing.assert_close(teacher(pixel_values=clips.flatten(0, 1)).logits,
                                   frame_model(pixel_values=clips.flatten(0, 1)).logits)
        # the KL term is the one against the clip-mean of its frame logits (no augmentation here: noise_aug 0)
        clean = dataclasses.replace(config, noise_aug=0.0)
        student = model(pixel_values=clips).logits.float()
        target = frame_model(pixel_values=clips.flatten(0, 1)).logits.unflatten(0, clips.shape[:2]).mean(1)
        t = config.kd_temperature
        expected = F.kl_div(F.log_softmax(student / t, -1), F.softmax(target / t, -1), reduction="batchmean") * t * t
        _, clean_parts = VideoClassifierRecipe(clean, 0, root / "weights").loss(model, 0,
                                                                                torch.Generator().manual_seed(0))
    assert clean_parts["kd"] == pytest.approx(float(expected), rel=1e-4)
    # the same clip verdict through the classifier's own processor (what chapter 00b shows beside the VideoMAE)
    torch.testing.assert_close(clip_mean_frame_logits(frame, raw), target, atol=1e-4, rtol=1e-4)
    # the same draw without distillation: the labels' loss alone, so the KL term is exactly what was added
    plain_loss, plain_parts = VideoClassifierRecipe(dataclasses.replace(config, kd_weight=0.0), 0,
                                                    root / "weights").loss(model, 0, torch.Generator().manual_seed(0))
    assert "kd" not in plain_parts
    assert float(loss.detach()) == pytest.approx(float(plain_loss.detach()) + config.kd_weight * parts["kd"], rel=1e-4)
    with pytest.raises(TrainError, match="kd_weight > 0 distils the frame classifier"):
        VideoClassifierRecipe(dataclasses.replace(config, init_from_frame_classifier=False), 0, root).build()


def test_missing_roles_name_the_whole_training_chain(tmp_path):
    # unclip uses vae and clip, and clip in turn starts from the frame classifier: the command must train all
    # three first, in dependency order, or it would only fail again one role later
    recipe = RECIPES["unclip"](RECIPES["unclip"].quick_config(), 0, tmp_path)
    assert recipe.prerequisites() == ["frame_classifier", "vae", "clip"]
    with pytest.raises(TrainError, match=r"needs the trained vae and clip.*--roles frame_classifier,vae,clip,unclip "):
        recipe.require(*recipe.uses())


def test_inflated_patch_embedding_sees_a_static_clip_as_the_frame():
    from transformers import (VideoMAEConfig, VideoMAEForVideoClassification, ViTConfig,
                              ViTForImageClassification)

    sizes = dict(image_size=16, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                 intermediate_size=64, num_labels=5)
    vit = ViTForImageClassification(ViTConfig(**sizes)).eval()
    vmae = VideoMAEForVideoClassification(VideoMAEConfig(num_frames=4, tubelet_size=2, **sizes)).eval()
    inflate_vit_to_videomae(vit, vmae)
    frame = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        image_tokens = vit.vit.embeddings.patch_embeddings(frame)                      # (1, 4, 32)
        video_tokens = vmae.videomae.embeddings.patch_embeddings(frame[:, None].repeat(1, 4, 1, 1, 1))  # (1, 8, 32)
    torch.testing.assert_close(video_tokens, image_tokens.repeat(1, 2, 1))
    torch.testing.assert_close(vmae.classifier.weight, vit.classifier.weight)


def test_frame_classifier_phases(tmp_path):
    """The stem trains first (only the ViT's first block and the stem head get gradients), then the teacher alone
    (the ViT gets no gradient), then the ViT learns from labels, the frozen teacher's logits and its feature maps;
    each phase warms up anew; only the ViT is saved."""
    import dataclasses

    from neuroclips_core.zoo.train.classifiers import TextureTeacher, parse_hint_layers

    logits, features = TextureTeacher()(torch.rand(2, 3, 64, 64), grid=8)
    assert logits.shape == (2, len(CLASSES))
    assert {k: tuple(v.shape) for k, v in features.items()} == {"early": (2, 64, 48), "mid": (2, 64, 64),
                                                                 "final": (2, 64, 128)}
    config = dataclasses.replace(FrameClassifierRecipe.quick_config(), steps=12, stem_steps=4, teacher_steps=4,
                                 warmup=2, batch=4, stem_batch=32)
    recipe = FrameClassifierRecipe(config, 0, tmp_path)
    model = recipe.build()
    assert [round(recipe.lr_factor(s), 3) for s in (0, 1, 4, 5, 8, 9)] == [1.0, 2.0, 0.5, 1.0, 0.5, 1.0]
    g = torch.Generator().manual_seed(0)
    loss, parts = recipe.loss(model, 0, g)
    loss.backward()
    assert set(parts) == {"stem_acc"}
    trained = {n for n, p in model.named_parameters() if p.grad is not None}
    assert trained and all(n.startswith(("stem_head.", "student.vit.embeddings.patch_embeddings.",
                                         "student.vit.layers.0.mlp.", "student.vit.layers.0.layernorm_after."))
                           for n in trained), trained
    model.zero_grad(set_to_none=True)
    loss, parts = recipe.loss(model, 4, g)
    loss.backward()
    assert set(parts) == {"teacher_acc"} and model.student.classifier.weight.grad is None
    model.zero_grad(set_to_none=True)
    loss, parts = recipe.loss(model, 8, g)
    loss.backward()
    assert set(parts) == {"acc", "kd", "hint"} and all(np.isfinite(v) for v in parts.values())
    assert model.student.classifier.weight.grad is not None
    assert all(m.weight.grad is not None for m in model.hints) and len(model.hints) == 3
    assert all(p.grad is None for p in model.teacher.parameters())            # frozen in the ViT phase
    assert not model.teacher.training
    exported = recipe.export(model).model
    assert type(exported).__name__ == "ViTForImageClassification" and exported.dtype == torch.float16
    with pytest.raises(TrainError, match="teacher_steps"):
        FrameClassifierRecipe(dataclasses.replace(config, teacher_steps=8), 0, tmp_path).build()
    with pytest.raises(TrainError, match="LAYER:STAGE"):
        parse_hint_layers("1:early,9:mid", 6)
    with pytest.raises(TrainError, match="LAYER:STAGE"):
        parse_hint_layers("1:texture", 6)


def test_patch_stem_is_the_first_blocks_token_while_its_attention_is_silent(tmp_path):
    """What the stem phase trains, per patch, is what the ViT's first block outputs for that patch at the start
    of the ViT phase (up to the small position embeddings)."""
    from neuroclips_core.zoo.train.classifiers import patch_stem

    model = FrameClassifierRecipe(FrameClassifierRecipe.quick_config(), 0, tmp_path).build().student.eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        tokens = model.vit(pixel_values=normalise(x), output_hidden_states=True).hidden_states[1][:, 1:]
        no_position = model.vit.embeddings.position_embeddings.zero_()
        tokens0 = model.vit(pixel_values=normalise(x), output_hidden_states=True).hidden_states[1][:, 1:]
        patches = x.unfold(2, 8, 8).unfold(3, 8, 8).permute(0, 2, 3, 1, 4, 5).reshape(-1, 3, 8, 8)
        stem = patch_stem(model, patches).reshape(2, 64, -1)
    assert no_position.abs().max() == 0
    torch.testing.assert_close(tokens0, stem, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(tokens, stem, atol=1e-5)       # the test sees position embeddings when present


def test_texture_patches_are_reproducible_labelled_patterns():
    """Texture batches are pure functions of (seed, index); each label's patches are that pattern (two colours
    over the patch, or one when the patch falls within a stripe) or, for the background label, a smooth
    gradient with no two-colour structure."""
    from neuroclips_core.data.sim_stimuli import PATTERNS

    a, b = corpus.texture_patches(0, 3, 256), corpus.texture_patches(0, 3, 256)
    assert torch.equal(a.patches, b.patches) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.patches, corpus.texture_patches(0, 4, 256).patches)
    assert a.patches.shape == (256, 3, 8, 8) and set(a.labels.tolist()) == set(range(len(PATTERNS) + 1))
    flat = a.patches.flatten(2)                                                # (B, 3, 64)
    distinct = torch.tensor([len(torch.unique(p, dim=0)) for p in flat.transpose(1, 2)])
    textured = a.labels < len(PATTERNS)
    assert (distinct[textured] <= 2).all() and (distinct[textured] == 2).float().mean() > 0.8
    assert (distinct[~textured] > 2).float().mean() > 0.5                    # gradients, not two flat colours


def test_patch_mask_targets_keep_every_edge_patch_with_its_cell_shares(tmp_path):
    """The stem's outline target: patches cut in the ViT's raster, each with the object's share of its 2-px
    cells; every patch the outline crosses is kept, with as many from the rest; and a quick run trains it."""
    import dataclasses

    from neuroclips_core.zoo.train.classifiers import patch_mask_targets

    images = torch.rand(2, 3, 16, 16)
    masks = torch.zeros(2, 16, 16, dtype=torch.bool)
    masks[0, 2:7, 3:12] = True                     # crosses patches (0, 0) and (0, 1) of frame 0
    patches, targets = patch_mask_targets(images, masks, patch=8, generator=torch.Generator().manual_seed(0))
    assert patches.shape == (4, 3, 8, 8) and targets.shape == (4, 16)
    torch.testing.assert_close(patches[0], images[0, :, :8, :8])
    torch.testing.assert_close(patches[1], images[0, :, :8, 8:])
    expected = torch.nn.functional.avg_pool2d(masks[0, None, :8, :8].float(), 2).flatten()
    torch.testing.assert_close(targets[0], expected)
    assert targets[0, 5] == 0.5 and targets[0, 13] == 0.25 and targets[0, 6] == 1 and targets[0, 0] == 0
    assert ((targets[2:].mean(1) == 0) | (targets[2:].mean(1) == 1)).all()              # the rest: whole

    with pytest.raises(TrainError, match="even patch_size"):
        FrameClassifierRecipe(dataclasses.replace(FrameClassifierRecipe.quick_config(), stem_mask_weight=1.0,
                                                  patch_size=7), 0, tmp_path).build()
    config = dataclasses.replace(FrameClassifierRecipe.quick_config(), stem_mask_weight=1.0, stem_mask_frames=2)
    result = train_role(FrameClassifierRecipe(config, 0, tmp_path / "out"), tmp_path / "out" / "frame_classifier",
                        tmp_path / "work", RunOptions(verbose=False, log_every=1))
    assert result.finished
    stem = [r for r in read_log(tmp_path / "work") if r["step"] <= config.stem_steps]
    assert stem and all(np.isfinite(r["mask"]) and 0 <= r["mask_acc"] <= 1 for r in stem)


def test_parse_steps_and_cli_help():
    assert parse_steps("vae=10, frame_classifier=20") == {"vae": 10, "frame_classifier": 20}
    with pytest.raises(ValueError, match="role=N"):
        parse_steps("vae")
    r = subprocess.run([sys.executable, "-m", "neuroclips_core", "train-standins", "--help"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    for option in ("--roles", "--quick", "--out", "--work", "--seed", "--steps", "--max-minutes"):
        assert option in r.stdout


# ------------------------------------------------------------------------------------------------ shipped weights
#: floors a shipped stand-in is known not to beat, with why (each stays an open target of issue 3; the test
#: reports it as an expected failure and holds every other floor of the role)
KNOWN_AT_CHANCE = {
    ("t2v", "direction_agreement"):
        "neither t2v stand-in learned the caption's direction of motion: the epsilon one scored 0.545 (p = 0.33), "
        "the v-prediction one 0.364, 0.364 and 0.523 over three generation seeds on the same 44 moving clips; in "
        "NeuroClips' use the motion comes from the blurry video (the SparseCtrl's alpha_direction_agreement)",
}


@pytest.mark.parametrize("role", list(RECIPES))
def test_shipped_standins(role):
    """Once trained and shipped: each loads, matches this simulator, fits the size budget, and every metric read
    against a floor (chance, a blind guess, an unrelated frame) is above it.  Whether a stand-in also meets its
    issue target is what ``python -m neuroclips_core standins`` reports (exit 4 while one is unmet): a stand-in
    below target may ship, and says so in its stamp and in chapter 00b."""
    folder = STANDIN_DIR / role
    if not folder.is_dir():
        pytest.skip(f"no shipped {role} stand-in yet (python -m neuroclips_core train-standins --roles {role})")
    load_standin(role)
    metrics = json.loads((folder / STAMP_FILE).read_text())["metrics"]
    assert targets_for(role), f"issue 3 sets no quality target for {role}"
    assert folder_size_mb(STANDIN_DIR) <= SHIPPED_BUDGET_MB
    # a metric judged by another stand-in (e.g. the frame classifier on VAE reconstructions) is None until that
    # one ships; the role is re-evaluated then (python -m neuroclips_core standins --evaluate ROLE)
    pending = [t.metric for t in targets_for(role) if metrics.get(t.metric) is None]
    known = [t for t in targets_for(role) if (role, t.metric) in KNOWN_AT_CHANCE and beats_floor(t, metrics) is False]
    for target in targets_for(role):
        if target.metric not in pending and target not in known:
            assert beats_floor(target, metrics) is not False, (role, target.metric, metrics.get(target.metric),
                                                                target)
    if known:
        pytest.xfail("; ".join(f"{t.metric} {metrics[t.metric]:.3f} is not above its floor "
                               f"{metrics[t.baseline]:.3f}: {KNOWN_AT_CHANCE[(role, t.metric)]}" for t in known))
    if pending:
        pytest.skip(f"{role}: {', '.join(pending)} not measured yet (needs a stand-in that is not shipped); "
                    f"rerun python -m neuroclips_core standins --evaluate {role} once it is")


def test_targets_and_floors_read_a_stamps_metrics():
    from neuroclips_core.zoo.targets import TARGETS, meets

    frame, = [t for t in TARGETS if t.role == "frame_classifier"]
    assert meets(frame, {"top1": 0.95, "chance": 1 / 64}) and not meets(frame, {"top1": 0.71, "chance": 1 / 64})
    assert beats_floor(frame, {"top1": 0.71, "chance": 1 / 64}) is True            # below target, above chance
    assert beats_floor(frame, {"top1": 0.01, "chance": 1 / 64}) is False
    assert beats_floor(frame, {"top1": None, "chance": 1 / 64}) is None           # not measured yet
    ssim = [t for t in TARGETS if t.role == "sparsectrl" and t.above][0]           # a margin over an unrelated frame
    assert meets(ssim, {"ssim_frame0": 0.5, "ssim_frame0_unrelated": 0.3})
    assert not meets(ssim, {"ssim_frame0": 0.4, "ssim_frame0_unrelated": 0.3})
    assert beats_floor(ssim, {"ssim_frame0": 0.4, "ssim_frame0_unrelated": 0.3}) is True
    vae = [t for t in TARGETS if t.metric == "classifier_top1_reconstructed"][0]   # read against a ceiling
    assert beats_floor(vae, {"classifier_top1_reconstructed": 0.45, "classifier_top1_original": 0.7}) is None
