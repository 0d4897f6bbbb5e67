"""Stand-in for the keyframe captioner: a small BLIP-2 (``Blip2ForConditionalGeneration`` + ``Blip2Processor``).

NeuroClips captions each reconstructed keyframe with BLIP-2 (no prompt) and hands the caption to the video
model; this stand-in does the same for 64-px sim frames.  Its parts, all the real library classes:

- **vision**: a ``Blip2VisionModel`` with the frame classifier's sizes (64 px, patch 8, hidden 128, 6 layers,
  4 heads, MLP 512), *started from the trained frame classifier* (:func:`vit_to_blip2_vision`): the class
  lives in ~5-px texture that a from-scratch encoder takes thousands of steps to find (see
  :mod:`.classifiers`), and the frame classifier already found it.  It is fine-tuned at ``vision_lr_scale``
  (0.2) of the LR, so the captioning loss can add what classification did not need (colours), without
  wrecking what it learned while the Q-Former is still random.
- **Q-Former**: hidden 128, 2 layers, both with cross-attention to the 65 image tokens (the real one
  cross-attends every other layer of 12; with 2 layers that would leave one), 16 query tokens.
- **language model**: OPT, hidden 128, 3 layers, FFN 512, over a byte-level BPE (:func:`caption_tokenizer`)
  trained here on corpus captions: the captions' closed vocabulary (43 words) merges completely, so every word
  is one token and a caption is 10-18 tokens.  OPT's convention: ``</s>`` is also the BOS token, which the
  tokenizer puts before any text, and which ``generate`` puts after the ``<image>`` tokens when given no text.

**Loss.**  Language modelling of the keyframe's caption (:func:`~neuroclips_core.zoo.corpus.keyframe_batch`:
the clip's first frame with the clip's caption), without a prompt, as BLIP-2 captions for NeuroClips.  The
sequence is ``[<image> x 16, </s>, caption, </s>]`` (transformers 5: the processor puts ``num_query_tokens``
``<image>`` placeholders first, which the model fills with the projected Q-Former outputs); only the caption
and its final ``</s>`` are predicted.  The caption names the motion over the clip's 2 s, which one frame cannot
show, so the motion words are learned as a prior (the evaluation says how far they are from chance).
No dropout: every batch is fresh from an unlimited corpus, so nothing repeats and dropout would only slow
learning.

**Cost** (full config, batch 64): 2.0 steps/s on 2 uncontended threads (measured 2026-11-30: 500 steps in 4.2 min;
under heavy contention, load 6-7, 0.44-0.47 steps/s on 1 thread: vision forward+backward ~1.1 s a step, Q-Former
~0.15 s, OPT ~0.3 s, rendering ~0.1 s).  Freezing the vision part would halve the step (its backward is ~0.75 s)
but leave the class-trained features as they are.  2.43 M parameters (vision 1.22 M, Q-Former 0.53 M, OPT
0.66 M), 4.9 MB in fp16.  A run that proves too short is lengthened exactly with ``--steps captioner=N`` while it
is before its decay.

**Length.**  500 steps (4.2 min) gave captions naming the held-out keyframe's class 0.666 of the time (blind
0.023), colour 0.26, background 0.26, below the 0.8 target; the step is cheap, so the full config trains 1500.
The 1500-step run that ships (seed 0, 2026-11-30; 21 min, a third of it shared with another job): class named
0.723 (blind 0.020), colour 0.479, background 0.258, motion 0.080 (its prior 0.076), every caption well formed;
still below the target.  The class read off one 64-px frame is the frame classifier's problem again (its vision
tower starts the captioner's): the caption names the class about as often as that classifier does (0.71).
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from ...data.sim_stimuli import CLASSES, HUE_NAMES
from .. import corpus
from ..loaders import Captioner, load_role
from ..tiny import _seeded, train_bpe
from .classifiers import IMAGE_SIZE, MEAN, STD, ClassifierConfig, _augment, _uint8_frames, normalise
from .loop import Recipe, TrainConfig, TrainError, export_copy

IMAGE_TOKEN = "<image>"


@dataclass(frozen=True)
class CaptionerConfig(TrainConfig):
    """BLIP-2 sizes (the vision part fixed by the frame classifier it starts from), tokenizer and augmentation."""

    vision_patch_size: int = ClassifierConfig.patch_size
    vision_hidden_size: int = ClassifierConfig.hidden_size
    vision_layers: int = ClassifierConfig.layers
    vision_heads: int = ClassifierConfig.heads
    vision_intermediate_size: int = ClassifierConfig.intermediate_size
    num_query_tokens: int = 16
    qformer_hidden_size: int = 128
    qformer_layers: int = 2
    qformer_heads: int = 4
    qformer_intermediate_size: int = 512
    text_hidden_size: int = 128
    text_layers: int = 3
    text_heads: int = 4
    text_ffn: int = 512
    text_positions: int = 64          # >= 16 queries + BOS + the longest caption (18 tokens) + EOS
    bpe_vocab: int = 512              # a ceiling: the captions' vocabulary merges completely at ~420 tokens
    tokenizer_captions: int = 2048    # corpus training captions the BPE is trained on
    max_new_tokens: int = 24          # generation length at evaluation (and the saved generation default)
    vision_lr_scale: float = 0.2      # LR of the vision part relative to ``lr`` (when started from the classifier)
    noise_aug: float = 0.03           # per-image pixel noise sigma ~ U(0, noise_aug): keyframes to caption are
    #                                   reconstructions, not renders
    init_from_frame_classifier: bool = True


# ------------------------------------------------------------------------------------------------ tokenizer
def training_captions(seed: int, n: int) -> list[str]:
    """``n`` captions of the corpus's training split (batch 0 of ``n`` clips), without rendering any frame."""
    shots, starts, offsets = corpus._clip_starts(seed, "train", 0, n, corpus.CLIP_FRAMES, corpus.CLIP_FPS)
    return corpus._clip_captions(shots, starts, offsets)[0]


def caption_tokenizer(captions: list[str], vocab_size: int):
    """A byte-level BPE trained on ``captions`` (any text still encodes) that puts ``</s>`` (OPT's BOS) before
    the text: ``tok("a red disk").input_ids`` = [</s>, a, Ġred, Ġdisk]."""
    from tokenizers.processors import TemplateProcessing

    tok = train_bpe(captions, vocab_size)
    tok.backend_tokenizer.post_processor = TemplateProcessing(
        single=f"{tok.bos_token} $A", special_tokens=[(tok.bos_token, tok.bos_token_id)])
    return tok


def caption_processor(captions: list[str], vocab_size: int, num_query_tokens: int):
    """``Blip2Processor``: the frame classifier's image preprocessing (resize to 64, rescale to [0, 1], mean =
    std = 0.5) and :func:`caption_tokenizer`, plus the ``<image>`` token the processor adds itself."""
    from transformers import Blip2Processor, BlipImageProcessor

    image_processor = BlipImageProcessor(do_resize=True, size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
                                         do_rescale=True, do_normalize=True, image_mean=[MEAN] * 3,
                                         image_std=[STD] * 3)
    return Blip2Processor(image_processor=image_processor, tokenizer=caption_tokenizer(captions, vocab_size),
                          num_query_tokens=num_query_tokens)


def training_inputs(tokenizer, captions: list[str], num_query_tokens: int, image_token_id: int) -> dict:
    """``input_ids`` / ``attention_mask`` / ``labels`` (B, L) of ``[<image> x Q, </s>, caption, </s>, <pad>...]``.

    ``labels`` is -100 on the image tokens, the BOS (always given, never predicted) and the padding.
    """
    text = tokenizer([c + tokenizer.eos_token for c in captions], padding=True, return_tensors="pt")
    b = len(captions)
    ids = torch.cat([torch.full((b, num_query_tokens), image_token_id), text.input_ids], 1)
    mask = torch.cat([torch.ones(b, num_query_tokens, dtype=text.attention_mask.dtype), text.attention_mask], 1)
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :num_query_tokens + 1] = -100
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


# ------------------------------------------------------------------------------------------------ vision init
def vit_to_blip2_vision(vit, vision_model) -> None:
    """Copy a ``ViTForImageClassification``'s encoder into a ``Blip2VisionModel`` of the same sizes (in place),
    so that both give the same ``last_hidden_state`` (B, 1 + P, D) for the same ``pixel_values``.

    Both are pre-norm encoders with a CLS token and learned positions over [CLS, patches], the same exact GELU
    and the same attention scale.  The map: ``cls_token`` -> ``class_embedding``, ``position_embeddings`` ->
    ``position_embedding``, patch projection -> ``patch_embedding``; per layer q/k/v -> the fused ``qkv``
    (weights and biases concatenated: transformers 5 keeps the fused bias as one parameter with a key slot, so
    the key bias is kept too, although softmax ignores it), ``o_proj`` -> ``projection``, ``layernorm_before``
    / ``layernorm_after`` -> ``layer_norm1`` / ``layer_norm2``, the MLP as is; ViT's final ``layernorm`` ->
    ``post_layernorm`` (BLIP-2 applies it to every token, as ViT does).  The classifier head has no counterpart.
    The layernorm eps must match (ViT's 1e-12, not BLIP-2's default 1e-6): checked with the sizes.
    """
    vc, bc = vit.config, vision_model.config
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "patch_size",
                "image_size", "hidden_act", "layer_norm_eps", "qkv_bias"):
        if getattr(vc, key) != getattr(bc, key):
            raise TrainError(f"captioner: cannot start from the frame classifier: {key} is {getattr(vc, key)!r} "
                             f"in the ViT and {getattr(bc, key)!r} in the Blip2 vision config; give both the same "
                             f"sizes or set init_from_frame_classifier=False.")
    src = vit.vit.state_dict()
    state = {"embeddings.class_embedding": src["embeddings.cls_token"],
             "embeddings.position_embedding": src["embeddings.position_embeddings"],
             "embeddings.patch_embedding.weight": src["embeddings.patch_embeddings.projection.weight"],
             "embeddings.patch_embedding.bias": src["embeddings.patch_embeddings.projection.bias"],
             "post_layernorm.weight": src["layernorm.weight"], "post_layernorm.bias": src["layernorm.bias"]}
    names = {"self_attn.projection": "attention.o_proj", "layer_norm1": "layernorm_before",
             "layer_norm2": "layernorm_after", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}
    for i in range(vc.num_hidden_layers):
        a, b = f"encoder.layers.{i}.", f"layers.{i}."
        for p in ("weight", "bias"):
            state[f"{a}self_attn.qkv.{p}"] = torch.cat([src[f"{b}attention.{x}_proj.{p}"] for x in "qkv"])
            for new, old in names.items():
                state[f"{a}{new}.{p}"] = src[f"{b}{old}.{p}"]
    vision_model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)


# ------------------------------------------------------------------------------------------------ captioning
def prompt_inputs(captioner: Captioner, n: int, prompt: str | None = None) -> dict:
    """``input_ids`` / ``attention_mask`` (n, Q + L) that start the captions.

    No prompt: ``[<image> x Q, BOS]``, exactly what ``generate`` builds when called with images only (the
    official BLIP-2 call).  A prompt: ``[<image> x Q, tokenizer(prompt)]``, what the processor builds for images
    with that text.  The same prompt for all n, so there is no padding.
    """
    model, processor = captioner
    q = model.config.num_query_tokens
    if prompt is None:
        text = torch.tensor([[model.config.text_config.bos_token_id]] * n)
    else:
        text = processor.tokenizer([prompt] * n, return_tensors="pt").input_ids
    ids = torch.cat([torch.full((n, q), model.config.image_token_index, dtype=text.dtype), text], 1)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


@torch.no_grad()
def generate_captions(captioner: Captioner, pixel_values: torch.Tensor, prompt: str | None = None,
                      max_new_tokens: int | None = None) -> list[str]:
    """Greedy captions (one ``generate`` call, as BLIP-2 captions for NeuroClips: no sampling, one beam) of
    ``pixel_values`` (B, 3, S, S) as the processor makes them; only the new tokens are decoded, stripped.
    ``max_new_tokens=None`` keeps the model's generation defaults (the official call passes no arguments)."""
    model, processor = captioner
    inputs = {k: v.to(model.device) for k, v in prompt_inputs(captioner, len(pixel_values), prompt).items()}
    length = {} if max_new_tokens is None else {"max_new_tokens": int(max_new_tokens)}
    ids = model.generate(pixel_values=pixel_values.to(model.device, model.dtype), **inputs, do_sample=False,
                         num_beams=1, **length)
    texts = processor.batch_decode(ids[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    return [text.strip() for text in texts]


def caption_frames(captioner: Captioner, frames: np.ndarray, max_new_tokens: int | None = 24,
                   prompt: str | None = None, batch: int = 128) -> list[str]:
    """Greedy captions of uint8 frames (N, H, W, 3), as a user makes them: the captioner's own processor (resize,
    normalise), then :func:`generate_captions` in batches of ``batch``."""
    _, processor = captioner
    out = []
    for a in range(0, len(frames), batch):
        pixels = processor.image_processor(list(frames[a:a + batch]), return_tensors="pt").pixel_values
        out += generate_captions(captioner, pixels, prompt, max_new_tokens)
    return out


def caption_images(captioner: Captioner, images: torch.Tensor, max_new_tokens: int = 24,
                   batch: int = 128) -> list[str]:
    """Greedy captions of images (N, 3, S, S) in [0, 1] without a prompt: 8-bit frames through
    :func:`caption_frames`."""
    return caption_frames(captioner, _uint8_frames(images.cpu()), max_new_tokens, batch=batch)


class CaptionParts(NamedTuple):
    """The fields of a sim caption: "an orange speckled triangle moving down and to the right while spinning
    over a purple background" -> ("orange", "speckled triangle", "moving down and to the right", "spinning",
    "purple")."""

    colour: str
    class_name: str
    motion: str
    extra: str          # "spinning", "growing", "spinning and shrinking", ... or ""
    background: str


_COLOURS = "|".join(sorted({name for _, name in HUE_NAMES}))
_CAPTION = re.compile(rf"^an? ({_COLOURS}) (\w+ \w+) (floating almost still|moving [a-z ]+?)"
                      rf"(?: while ([a-z ]+?))? over an? ({_COLOURS}) background$")


def parse_caption(text: str) -> CaptionParts | None:
    """The fields of a caption in the sim's grammar (``Shot.caption``), or None if it does not follow it."""
    m = _CAPTION.match(text.strip())
    if m is None or m.group(2) not in CLASSES:
        return None
    colour, class_name, motion, extra, background = m.groups()
    return CaptionParts(colour, class_name, motion, extra or "", background)


def caption_scores(generated: list[str], truth: list[str], labels: torch.Tensor) -> dict:
    """How well generated captions describe their keyframes (each a fraction of the N items):

    - ``class_accuracy``: the caption contains the keyframe's class name ("speckled triangle");
      ``class_baseline``: it contains the class name of another keyframe (the next one: held-out keyframes
      are independent draws), i.e. what a captioner blind to the image scores (~1/64);
    - ``colour_accuracy`` / ``background_accuracy``: the object's / background's colour word is right;
    - ``motion_accuracy``: the motion phrase ("moving up and to the left", "floating almost still") is right;
      ``motion_baseline``: it is another keyframe's (the clip's motion cannot be seen in its first frame);
    - ``exact_match``: the whole caption is right; ``well_formed``: it follows the sim's caption grammar.
    """
    if not len(generated) == len(truth) == len(labels):
        raise ValueError(f"expected as many generated captions as truths and labels, got {len(generated)}, "
                         f"{len(truth)}, {len(labels)}")
    names = [CLASSES[i] for i in labels.tolist()]
    parsed, true = [parse_caption(g) for g in generated], [parse_caption(t) for t in truth]
    other = true[1:] + true[:1]

    def frac(hits) -> float:
        return float(np.mean(list(hits)))

    def field(p, t, name) -> bool:
        return p is not None and getattr(p, name) == getattr(t, name)

    return {"class_accuracy": frac(n in g for g, n in zip(generated, names)),
            "class_baseline": frac(n in g for g, n in zip(generated, names[1:] + names[:1])),
            "colour_accuracy": frac(field(p, t, "colour") for p, t in zip(parsed, true)),
            "background_accuracy": frac(field(p, t, "background") for p, t in zip(parsed, true)),
            "motion_accuracy": frac(field(p, t, "motion") for p, t in zip(parsed, true)),
            "motion_baseline": frac(field(p, t, "motion") for p, t in zip(parsed, other)),
            "exact_match": frac(g == t for g, t in zip(generated, truth)),
            "well_formed": frac(p is not None for p in parsed)}


# ------------------------------------------------------------------------------------------------ recipe
class CaptionerRecipe(Recipe):
    """``Blip2ForConditionalGeneration`` + ``Blip2Processor``: keyframes (B, 3, 64, 64) -> captions."""

    role = "captioner"
    config_class = CaptionerConfig

    @staticmethod
    def full_config() -> CaptionerConfig:
        return CaptionerConfig(steps=1500, batch=64, lr=1e-3, warmup=50, eval_size=512)

    @staticmethod
    def quick_config() -> CaptionerConfig:
        return CaptionerConfig(steps=4, batch=8, lr=1e-3, warmup=2, eval_size=16)

    @functools.cached_property
    def processor(self):
        """The processor (tokenizer trained on this seed's corpus captions), built once per recipe."""
        c = self.config
        return caption_processor(training_captions(self.seed, c.tokenizer_captions), c.bpe_vocab,
                                 c.num_query_tokens)

    def uses(self) -> tuple[str, ...]:
        return ("frame_classifier",) if self.config.init_from_frame_classifier else ()

    def blip2_config(self):
        from transformers import Blip2Config, Blip2QFormerConfig, Blip2VisionConfig, OPTConfig

        c, tok = self.config, self.processor.tokenizer
        eos = tok.eos_token_id
        vision = Blip2VisionConfig(image_size=IMAGE_SIZE, patch_size=c.vision_patch_size,
                                   hidden_size=c.vision_hidden_size, num_hidden_layers=c.vision_layers,
                                   num_attention_heads=c.vision_heads, intermediate_size=c.vision_intermediate_size,
                                   hidden_act="gelu", layer_norm_eps=1e-12, qkv_bias=True)   # as ViTConfig
        qformer = Blip2QFormerConfig(hidden_size=c.qformer_hidden_size, num_hidden_layers=c.qformer_layers,
                                     num_attention_heads=c.qformer_heads, intermediate_size=c.qformer_intermediate_size,
                                     encoder_hidden_size=c.vision_hidden_size, cross_attention_frequency=1,
                                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        text = OPTConfig(vocab_size=len(tok), hidden_size=c.text_hidden_size, num_hidden_layers=c.text_layers,
                         ffn_dim=c.text_ffn, num_attention_heads=c.text_heads, word_embed_proj_dim=c.text_hidden_size,
                         max_position_embeddings=c.text_positions, dropout=0.0, attention_dropout=0.0,
                         pad_token_id=tok.pad_token_id, bos_token_id=eos, eos_token_id=eos)
        return Blip2Config(vision_config=vision.to_dict(), qformer_config=qformer.to_dict(),
                           text_config=text.to_dict(), num_query_tokens=c.num_query_tokens,
                           image_token_index=tok.convert_tokens_to_ids(IMAGE_TOKEN))

    def build(self):
        from transformers import Blip2ForConditionalGeneration

        c, tok = self.config, self.processor.tokenizer
        with _seeded(self.seed):
            model = Blip2ForConditionalGeneration(self.blip2_config())
            # BLIP-2's own init (zeros) makes the 16 queries identical until the LM's positions tell them apart
            torch.nn.init.normal_(model.query_tokens, std=model.config.initializer_range)
        generation = model.generation_config
        generation.pad_token_id, generation.bos_token_id = tok.pad_token_id, tok.eos_token_id
        generation.eos_token_id, generation.max_new_tokens = tok.eos_token_id, c.max_new_tokens
        if c.init_from_frame_classifier:
            self.require("frame_classifier")
            folder = self.role_folder("frame_classifier")
            vit_to_blip2_vision(load_role("frame_classifier", folder, dtype=torch.float32).model,
                                model.vision_model)
        return model

    def lr_scale(self, name, param) -> float:
        started = self.config.init_from_frame_classifier and name.startswith("vision_model.")
        return self.config.vision_lr_scale if started else 1.0

    def loss(self, model, step, generator):
        c = self.config
        b = corpus.keyframe_batch(self.seed, step, c.batch, "train", IMAGE_SIZE)
        inputs = training_inputs(self.processor.tokenizer, b.captions, c.num_query_tokens,
                                 model.config.image_token_index)
        inputs = {k: v.to(model.device) for k, v in inputs.items()}
        x = normalise(_augment(b.images, c.noise_aug, generator)).to(model.device)
        out = model(pixel_values=x, **inputs)
        # next-token accuracy on the caption tokens (logits[t] predicts token t + 1)
        target = inputs["labels"][:, 1:]
        hits = (out.logits[:, :-1].argmax(-1) == target)[target != -100]
        return out.loss, {"token_acc": float(hits.float().mean())}

    def export(self, model):
        return Captioner(export_copy(model, self.config.save_dtype), self.processor)

    def evaluate(self, loaded) -> dict:
        h = corpus.heldout_keyframes(self.seed, self.config.eval_size, IMAGE_SIZE)
        generated = caption_images(loaded, h.images, max_new_tokens=self.config.max_new_tokens)
        return {**caption_scores(generated, h.captions, h.labels), "n_eval": len(h.captions)}
