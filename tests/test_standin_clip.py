"""The CLIP stand-in: quick-mode training from the frame classifier, the load round trip, the exact ViT ->
open_clip weight mapping, the retrieval metrics and their class-only ceiling, determinism."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from neuroclips_core.data.sim_stimuli import N_CLASSES
from neuroclips_core.zoo import corpus
from neuroclips_core.zoo.loaders import load_role
from neuroclips_core.zoo.standins import STAMP_FILE, load_standin, train_standins
from neuroclips_core.zoo.train import RECIPES, RunOptions, TrainError, read_log, train_role
from neuroclips_core.zoo.train.clip import (ClipConfig, ClipRecipe, class_only_ceiling, clip_model_cfg,
                                            clip_pixels, open_clip_tokenizer, retrieval_scores, vit_to_open_clip_visual)
from neuroclips_core.zoo.train.loop import _optimizer

QUIET = RunOptions(verbose=False)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """The frame classifier and CLIP trained in quick mode into a temporary output root."""
    root = tmp_path_factory.mktemp("clip")
    results = train_standins(["frame_classifier", "clip"], quick=True, out=root / "weights", work=root / "work",
                             options=QUIET)
    return root, results


def _random_vit(layers: int = 6, seed: int = 0):
    """A ViT of the frame classifier's sizes with every weight, bias and layernorm perturbed off its init."""
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(seed)
    vit = ViTForImageClassification(ViTConfig(image_size=64, patch_size=8, hidden_size=128, num_hidden_layers=layers,
                                              num_attention_heads=4, intermediate_size=512, num_labels=N_CLASSES))
    with torch.no_grad():
        for p in vit.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return vit.eval()


def _open_clip(config: ClipConfig | None = None):
    import open_clip

    return open_clip.model.CLIP(**clip_model_cfg(config or ClipRecipe.full_config())).eval()


# ------------------------------------------------------------------------------------------------ weight mapping
def test_mapped_vision_tower_reproduces_the_vit_exactly():
    vit, clip = _random_vit(), _open_clip()
    vit_to_open_clip_visual(vit, clip.visual)
    clip.visual.output_tokens = True
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        hidden = vit.vit(pixel_values=x).last_hidden_state                    # (3, 65, 128), after the final LN
        pooled, tokens = clip.encode_image(x)
        cls = clip.visual.ln_post(clip.visual.transformer(clip.visual._embeds(x)))[:, 0]
    assert pooled.shape == (3, 64) and tokens.shape == (3, 64, 128)
    torch.testing.assert_close(tokens, hidden[:, 1:], atol=1e-5, rtol=0)
    torch.testing.assert_close(cls, hidden[:, 0], atol=1e-5, rtol=0)
    # the pooled output is the CLS the classifier reads, projected: the classifier's logits are linear in it
    torch.testing.assert_close(pooled, cls @ clip.visual.proj, atol=1e-5, rtol=0)


def test_mapping_refuses_other_sizes():
    with pytest.raises(TrainError, match="num_hidden_layers.*init_from_frame_classifier=False"):
        vit_to_open_clip_visual(_random_vit(layers=2), _open_clip().visual)
    other = dataclasses.replace(ClipRecipe.full_config(), vision_heads=8)
    with pytest.raises(TrainError, match="num_attention_heads"):
        vit_to_open_clip_visual(_random_vit(layers=6), _open_clip(other).visual)


# ------------------------------------------------------------------------------------------------ metrics
def test_class_only_ceiling_is_what_a_class_only_retriever_scores():
    # the closed form against the Poisson approximation of the brief, (1 - e^-l) / l with l = 99/64
    lam = 99 / 64
    assert abs(class_only_ceiling(100) - (1 - math.exp(-lam)) / lam) < 0.002
    assert 0.50 < class_only_ceiling(100) < 0.52 and class_only_ceiling(1) == 1.0
    # a retriever that knows the class and nothing else: embedding = class one-hot, images slightly jittered
    g = torch.Generator().manual_seed(0)
    n, batch = 100 * 300, 100
    labels = torch.randint(N_CLASSES, (n,), generator=g)
    captions = [f"caption {i}" for i in range(n)]
    text = torch.nn.functional.one_hot(labels, N_CLASSES).float()
    image = torch.nn.functional.normalize(text + 1e-3 * torch.randn(n, N_CLASSES, generator=g), dim=-1)
    m = retrieval_scores(image, text, labels, captions, batch)
    assert m["i2t_class_top1"] == 1.0
    assert abs(m["class_only_ceiling_eval"] - class_only_ceiling(batch)) < 0.01
    # ties go to the first same-class caption, i.e. to a random one of them: the ceiling, not a perfect score
    assert abs(m["i2t_top1"] - m["class_only_ceiling_eval"]) < 0.015
    # an ideal model scores 1; a shuffled one chance
    unique = torch.nn.functional.normalize(torch.randn(n, 64, generator=g), dim=-1)
    assert retrieval_scores(unique, unique, labels, captions, batch)["t2i_top1"] == 1.0
    shuffled = retrieval_scores(unique, unique[torch.randperm(n, generator=g)], labels, captions, batch)
    assert shuffled["i2t_top1"] < 0.03
    # identical caption texts are indistinguishable: retrieving the twin counts as a hit
    twins = ["same", "same", "other", "else"]
    swapped = unique[:4][[1, 0, 2, 3]]
    assert retrieval_scores(unique[:4], swapped, labels[:4], twins, 4)["i2t_top1"] == 1.0


def test_eval_size_must_be_whole_batches():
    with pytest.raises(ValueError, match="multiple of eval_batch"):
        dataclasses.replace(ClipRecipe.full_config(), eval_size=150)


def test_captions_fit_the_context():
    tokenizer = open_clip_tokenizer(ClipRecipe.full_config().context_length)
    captions = corpus.keyframe_batch(0, 0, 512).captions
    ids = tokenizer(captions)
    assert ids.shape == (512, 32) and tokenizer.vocab_size == 49408
    assert (ids[:, -1] == 0).all()                                  # nothing truncated: room left for every one
    assert (ids.argmax(1) == (ids != 0).sum(1) - 1).all()           # the end token (the highest id) ends each


# ------------------------------------------------------------------------------------------------ quick training
def test_clip_needs_the_frame_classifier(tmp_path):
    recipe = ClipRecipe(ClipRecipe.quick_config(), 0, tmp_path)
    with pytest.raises(TrainError, match="--roles frame_classifier,clip"):
        recipe.build()
    # without the initialisation it builds from scratch and records no provenance
    config = dataclasses.replace(ClipRecipe.quick_config(), init_from_frame_classifier=False)
    assert ClipRecipe(config, 0, tmp_path).build() is not None and ClipRecipe(config, 0, tmp_path).provenance() == {}


def test_clip_is_registered_after_the_frame_classifier():
    order = list(RECIPES)
    assert order.index("frame_classifier") < order.index("clip")


def test_quick_clip_round_trip(quick):
    root, results = quick
    assert results["clip"].finished
    folder = root / "weights" / "clip"
    for model, tokenizer, preprocess_cfg, model_cfg in (load_role("clip", folder),
                                                       load_standin("clip", root=root / "weights")):
        assert tokenizer.context_length == 32 and not model.training
        assert model.logit_scale.dtype == torch.float32 and model.visual.output_tokens
        assert model_cfg == clip_model_cfg(ClipRecipe.full_config())      # quick mode: the shipped architecture
        assert preprocess_cfg["size"] in (64, (64, 64))     # open_clip reports it as (H, W) once loaded
        assert list(preprocess_cfg["mean"]) == list(preprocess_cfg["std"]) == [0.5] * 3
        b = corpus.keyframe_batch(0, 0, 3)
        with torch.no_grad():
            pooled, tokens = model.encode_image(clip_pixels(b.images, preprocess_cfg))
            text = model.encode_text(tokenizer(b.captions))
        assert pooled.shape == (3, 64) and tokens.shape == (3, 64, 128) and text.shape == (3, 64)
        assert torch.isfinite(pooled).all() and torch.isfinite(text).all()
        assert model.logit_scale.exp() <= 100 + 1e-3
    from safetensors import safe_open

    with safe_open(str(folder / "open_clip_model.safetensors"), "pt") as f:     # shipped in half precision
        assert f.get_tensor("visual.conv1.weight").dtype == torch.float16
    assert (folder / "open_clip_model.safetensors").stat().st_size < 10e6


def test_quick_clip_metrics_and_provenance(quick):
    root, results = quick
    m = results["clip"].metrics
    for key in ("i2t_top1", "t2i_top1", "i2t_class_top1", "zeroshot_top1", "class_only_ceiling_eval"):
        assert 0 <= m[key] <= 1, (key, m[key])
    config = ClipRecipe.quick_config()
    assert m["n_eval"] == config.eval_size and m["chance_retrieval"] == 1 / config.eval_batch
    assert m["class_only_ceiling"] == pytest.approx(class_only_ceiling(config.eval_batch))
    assert m["chance_class"] == 1 / N_CLASSES and 1 < m["logit_scale"] <= 100
    stamp = json.loads((root / "weights" / "clip" / STAMP_FILE).read_text())
    weights = root / "weights" / "frame_classifier" / "model.safetensors"
    expected = hashlib.sha256(b"model.safetensors" + weights.read_bytes()).hexdigest()
    assert stamp["provenance"] == {"frame_classifier_sha256": expected}
    assert stamp["metrics"] == m


def test_vision_tower_starts_as_the_frame_classifier(quick):
    root, _ = quick
    recipe = ClipRecipe(ClipRecipe.quick_config(), 0, root / "weights")
    model = recipe.build().eval()
    model.visual.output_tokens = True
    vit = load_role("frame_classifier", root / "weights" / "frame_classifier", dtype=torch.float32).model
    x = clip_pixels(corpus.frame_batch(0, 0, 4).images, {"size": 64, "mean": [0.5] * 3, "std": [0.5] * 3})
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(x)[1], vit.vit(pixel_values=x).last_hidden_state[:, 1:],
                                   atol=1e-5, rtol=0)
    # the pretrained tower learns slower; its new projection, the text tower and the temperature do not
    opt = _optimizer(recipe, model)
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    lr = recipe.config.lr
    assert lr_of[id(named["visual.conv1.weight"])] == pytest.approx(lr * recipe.config.vision_lr_scale)
    assert lr_of[id(named["visual.transformer.resblocks.5.attn.in_proj_weight"])] < lr
    for name in ("visual.proj", "token_embedding.weight", "text_projection", "logit_scale"):
        assert lr_of[id(named[name])] == pytest.approx(lr), name


def test_same_seed_same_losses(quick, tmp_path):
    root, _ = quick
    out = root / "weights"      # holds the quick frame classifier the runs start from
    opts = RunOptions(log_every=1, verbose=False, max_steps=2)
    config = dataclasses.replace(ClipRecipe.quick_config(), batch=8)
    for name in ("a", "b"):
        train_role(ClipRecipe(config, 0, out), tmp_path / name / "clip", tmp_path / f"w{name}", opts)
    la, lb = read_log(tmp_path / "wa"), read_log(tmp_path / "wb")
    assert [r["step"] for r in la] == [1, 2] and [r["loss"] for r in la] == [r["loss"] for r in lb]
    assert abs(la[0]["loss"] - math.log(8)) < 1.0          # InfoNCE over 8 pairs starts near log(batch)
    train_role(ClipRecipe(config, 1, out), tmp_path / "c" / "clip", tmp_path / "wc", opts)
    assert read_log(tmp_path / "wc")[0]["loss"] != la[0]["loss"]
