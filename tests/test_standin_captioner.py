"""The captioner stand-in (BLIP-2 started from the frame classifier): quick-mode training, the load round trip,
the ViT -> BLIP-2 vision map, the tokenizer and prompt convention, the caption scores, determinism."""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

from neuroclips_core.data.sim_stimuli import CLASSES
from neuroclips_core.zoo import corpus
from neuroclips_core.zoo.loaders import load_role
from neuroclips_core.zoo.standins import load_standin, train_standins
from neuroclips_core.zoo.train import RECIPES, RunOptions, TrainError, read_log, train_role
from neuroclips_core.zoo.train.captioner import (CaptionerRecipe, caption_images, caption_scores, parse_caption,
                                                 training_captions, training_inputs, vit_to_blip2_vision)
from neuroclips_core.zoo.train.classifiers import normalise

QUIET = RunOptions(verbose=False)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """The frame classifier and the captioner trained in quick mode (~10 s)."""
    root = tmp_path_factory.mktemp("captioner")
    results = train_standins(["frame_classifier", "captioner"], quick=True, out=root / "out", work=root / "work",
                             options=QUIET)
    return root, results


def _uint8(images: torch.Tensor) -> list[np.ndarray]:
    return [np.round(f.permute(1, 2, 0).numpy() * 255).astype(np.uint8) for f in images]


def test_registered_after_the_frame_classifier():
    order = list(RECIPES)
    assert RECIPES["captioner"] is CaptionerRecipe and order.index("frame_classifier") < order.index("captioner")


def test_quick_training_roundtrip(quick):
    root, results = quick
    r = results["captioner"]
    assert r.finished and r.folder == root / "out" / "captioner"
    model, processor = load_standin("captioner", root=root / "out")
    assert model.dtype == torch.float32 and not model.training
    from safetensors import safe_open

    with safe_open(str(r.folder / "model.safetensors"), "pt") as f:         # shipped in half precision
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    # the saved model is the trained one: fp16 weights come back exactly (the qkv key-bias slot included)
    trained = torch.load(root / "work" / "captioner" / "checkpoint.pt", weights_only=False)["model"]
    loaded = model.state_dict()
    for k, v in trained.items():
        torch.testing.assert_close(loaded[k], v.half().float(), atol=0, rtol=0, msg=k)
    # the vision part has the frame classifier's sizes; the OPT vocabulary includes the processor's <image>
    assert model.config.vision_config.hidden_size == 128 and model.config.vision_config.num_hidden_layers == 6
    assert model.config.text_config.vocab_size == len(processor.tokenizer)
    assert processor.tokenizer.convert_ids_to_tokens(model.config.image_token_index) == "<image>"
    assert sum(p.numel() for p in model.parameters()) * 2 / 2 ** 20 <= 8       # fp16 size budget (MB)

    x = corpus.keyframe_batch(0, 0, 3).images
    inputs = processor(images=_uint8(x), text=["a red", "an", ""], padding=True, return_tensors="pt")
    # the processor computes exactly what training feeds, and puts 16 <image> then BOS before the text
    torch.testing.assert_close(inputs.pixel_values, normalise(x), atol=1e-6, rtol=0)
    q = model.config.num_query_tokens
    assert q == 16 and (inputs.input_ids[:, :q] == model.config.image_token_index).all()
    assert (inputs.input_ids[:, q] == processor.tokenizer.bos_token_id).all()
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape == (3, inputs.input_ids.shape[1], len(processor.tokenizer)) and torch.isfinite(logits).all()


def test_caption_images_is_what_plain_generate_gives(quick):
    root, _ = quick
    captioner = load_role("captioner", root / "out" / "captioner")
    model, processor = captioner
    x = corpus.keyframe_batch(0, 1, 3, "heldout").images
    texts = caption_images(captioner, x, max_new_tokens=6, batch=2)
    assert len(texts) == 3 and all(isinstance(t, str) for t in texts)
    # a user's no-prompt route: images only; generate starts from [<image> x 16, BOS] itself
    pixels = processor(images=_uint8(x), return_tensors="pt").pixel_values
    ids = model.generate(pixel_values=pixels, max_new_tokens=6, do_sample=False)
    start = model.config.num_query_tokens + 1
    assert texts == [t.strip() for t in processor.batch_decode(ids[:, start:], skip_special_tokens=True)]


def test_evaluate_metrics_present_and_in_range(quick):
    _, results = quick
    m = results["captioner"].metrics
    for key in ("class_accuracy", "class_baseline", "colour_accuracy", "background_accuracy", "motion_accuracy",
                "motion_baseline", "exact_match", "well_formed"):
        assert 0.0 <= m[key] <= 1.0, key
    assert m["n_eval"] == CaptionerRecipe.quick_config().eval_size


def test_provenance_records_the_frame_classifier(quick):
    root, _ = quick
    import hashlib
    import json

    stamp = json.loads((root / "out" / "captioner" / "stamp.json").read_text())
    weights = root / "out" / "frame_classifier" / "model.safetensors"
    # the one weights file of the folder, hashed with its name
    expected = hashlib.sha256(b"model.safetensors" + weights.read_bytes()).hexdigest()
    assert stamp["provenance"] == {"frame_classifier_sha256": expected}


def test_same_seed_same_losses(quick, tmp_path):
    root, _ = quick
    opts = RunOptions(log_every=1, verbose=False, max_steps=2)

    def losses(seed, name):
        recipe = CaptionerRecipe(CaptionerRecipe.quick_config(), seed, root / "out")
        train_role(recipe, tmp_path / name / "captioner", tmp_path / name / "work", opts)
        return [r["loss"] for r in read_log(tmp_path / name / "work")]

    a, b, c = losses(0, "a"), losses(0, "b"), losses(1, "c")
    assert len(a) == 2 and a == b and a != c


def test_needs_the_frame_classifier(tmp_path):
    recipe = CaptionerRecipe(CaptionerRecipe.quick_config(), 0, tmp_path)
    with pytest.raises(TrainError, match="--roles frame_classifier,captioner"):
        recipe.build()


# ------------------------------------------------------------------------------------------------ vision map
def test_vit_to_blip2_vision_gives_the_vits_hidden_states():
    from transformers import Blip2VisionConfig, Blip2VisionModel, ViTConfig, ViTForImageClassification

    sizes = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                 intermediate_size=64)
    torch.manual_seed(0)
    vit = ViTForImageClassification(ViTConfig(num_labels=5, **sizes)).eval()
    with torch.no_grad():             # the init leaves biases and layernorms trivial: make every tensor count
        for p in vit.parameters():
            p.add_(0.1 * torch.randn_like(p))
    blip = Blip2VisionModel(Blip2VisionConfig(layer_norm_eps=vit.config.layer_norm_eps, **sizes)).eval()
    vit_to_blip2_vision(vit, blip)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want = vit.vit(pixel_values=x).last_hidden_state                          # (2, 17, 32), final layernorm
        got = blip(pixel_values=x).last_hidden_state
    assert got.shape == want.shape == (2, 17, 32)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    # the key bias is kept in the fused qkv bias's key slot (softmax ignores it, but the map is exact)
    layer = vit.vit.layers[1].attention
    torch.testing.assert_close(blip.encoder.layers[1].self_attn.qkv.bias[32:64], layer.k_proj.bias)
    # a mismatched layernorm eps (BLIP-2's default) is refused, not silently approximated
    with pytest.raises(TrainError, match="layer_norm_eps"):
        vit_to_blip2_vision(vit, Blip2VisionModel(Blip2VisionConfig(**sizes)))


# ------------------------------------------------------------------------------------------------ text side
def test_tokenizer_is_deterministic_and_words_are_single_tokens():
    recipe = CaptionerRecipe(CaptionerRecipe.quick_config(), 0, Path("unused"))
    tok = recipe.processor.tokenizer
    again = CaptionerRecipe(CaptionerRecipe.full_config(), 0, Path("unused")).processor.tokenizer
    assert tok.get_vocab() == again.get_vocab()          # quick and full: same tokenizer, same architecture
    assert 300 <= len(tok) <= 512
    held = corpus.heldout_keyframes(0, 64).captions
    for caption in held:
        ids = tok(caption).input_ids
        assert ids[0] == tok.bos_token_id and len(ids) == 1 + len(caption.split())
        assert tok.decode(ids, skip_special_tokens=True) == caption


def test_training_inputs_predict_only_the_caption():
    tok = CaptionerRecipe(CaptionerRecipe.quick_config(), 0, Path("unused")).processor.tokenizer
    captions = training_captions(0, 2)
    short = "a red striped disk floating almost still over a blue background"
    inputs = training_inputs(tok, [captions[0], short], 4, image_token_id=99)
    ids, mask, labels = inputs["input_ids"], inputs["attention_mask"], inputs["labels"]
    n = len(short.split())
    assert (ids[:, :4] == 99).all() and (ids[:, 4] == tok.bos_token_id).all()
    assert (labels[:, :5] == -100).all()
    assert labels[1, 5:5 + n].tolist() == tok(short, add_special_tokens=False).input_ids
    assert labels[1, 5 + n] == tok.eos_token_id and mask[1, 5 + n] == 1
    assert (labels[1, 6 + n:] == -100).all() and (mask[1, 6 + n:] == 0).all()


def test_caption_scores():
    h = corpus.heldout_keyframes(0, 16)
    assert all(parse_caption(c) is not None for c in h.captions)
    parts = parse_caption("an orange speckled triangle moving down and to the right while spinning and growing "
                          "over a purple background")
    assert parts == ("orange", "speckled triangle", "moving down and to the right", "spinning and growing", "purple")
    assert parse_caption("a purple blob moving up over a red background") is None
    perfect = caption_scores(h.captions, h.captions, h.labels)
    assert all(perfect[k] == 1.0 for k in ("class_accuracy", "colour_accuracy", "background_accuracy",
                                           "motion_accuracy", "exact_match", "well_formed"))
    assert perfect["class_baseline"] < 0.5
    # a captioner that names the wrong class, everything else right
    wrong = [c.replace(CLASSES[y], CLASSES[(y + 1) % 64]) for c, y in zip(h.captions, h.labels.tolist())]
    scores = caption_scores(wrong, h.captions, h.labels)
    assert scores["class_accuracy"] == 0.0 and scores["exact_match"] == 0.0
    assert scores["colour_accuracy"] == scores["motion_accuracy"] == scores["well_formed"] == 1.0
    # one that says nothing in the grammar
    assert caption_scores(["a thing"] * 16, h.captions, h.labels)["well_formed"] == 0.0
    with pytest.raises(ValueError, match="as many"):
        caption_scores(h.captions[:3], h.captions, h.labels)
