"""Tiny random models for every role, in the real library classes (tests, and the starting point of stand-ins).

Each factory returns exactly what :func:`~neuroclips_core.zoo.loaders.load_role` returns for its role, so
``save_role(role, tiny_role(role), folder)`` then ``load_role(role, folder)`` is the stand-in round trip.  Sizes
are the smallest that keep every structural feature of the real model (image tokens, per-level transformer
depth, a vector condition, motion modules, a 4+1-channel SparseCtrl, ...) and follow each other:

- images 32 px for the encoders and classifiers; 64 px frames -> VAE latents 4 x 8 x 8;
- CLIP: 32 px, patch 8 -> image tokens (B, 16, 64) [bigG: (B, 256, 1664)], pooled/text (B, 32);
- unCLIP UNet cross-attends to those tokens (cross_attention_dim 64) and takes a (B, 4 * 8) vector condition;
- the video UNet, SparseCtrl and CLIP text encoder share a 32-d text width and the real 49408-token CLIP BPE.

Every factory seeds its own generator (``seed``), leaving the global RNG untouched.
"""
from __future__ import annotations

import contextlib
import functools
import gzip
import importlib.util
import json
import os
from pathlib import Path

import torch

from .loaders import Captioner, Classifier, OpenClip, UnClip

TINY_IMAGE = 32                  # encoder / classifier input size (px)
TINY_CLIP_TOKENS = (16, 64)      # (tokens, width) of the tiny CLIP's image tokens
TINY_VECTOR_DIM = 8              # per-number sinusoid size of the unCLIP vector condition (real: 256)
TINY_TEXT_WIDTH = 32             # CLIP text encoder width = video UNet / SparseCtrl cross-attention dim
TINY_NUM_LABELS = 64             # classifier classes (cc2017-sim has >= 60)
CLIP_VOCAB_SIZE = 49408
CLIP_BOS, CLIP_EOS = 49406, 49407


@contextlib.contextmanager
def _seeded(seed: int):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


# ------------------------------------------------------------------------------------------- CLIP BPE
def _bytes_to_unicode() -> dict[int, str]:
    """CLIP's (and GPT-2's) reversible byte -> printable character table."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs = list(bs)
    extra = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + extra)
            extra += 1
    return dict(zip(bs, map(chr, cs)))


@functools.lru_cache(maxsize=1)
def clip_bpe() -> tuple[dict[str, int], tuple[tuple[str, str], ...]]:
    """(vocab, merges) of OpenAI CLIP's BPE, rebuilt from the merges file shipped inside open_clip.

    Same construction as CLIP's own ``SimpleTokenizer``: 256 byte symbols, the same with ``</w>``, one token
    per merge (the first 48894), then ``<|startoftext|>`` = 49406 and ``<|endoftext|>`` = 49407.
    """
    # find_spec locates the package without importing it (importing open_clip pulls in torchvision)
    package = importlib.util.find_spec("open_clip").submodule_search_locations[0]
    lines = gzip.open(os.path.join(package, "bpe_simple_vocab_16e6.txt.gz")).read().decode("utf-8").split("\n")
    merges = tuple(tuple(line.split()) for line in lines[1:CLIP_VOCAB_SIZE - 256 - 256 - 2 + 1])
    symbols = list(_bytes_to_unicode().values())
    tokens = [*symbols, *(s + "</w>" for s in symbols), *("".join(m) for m in merges),
              "<|startoftext|>", "<|endoftext|>"]
    assert len(tokens) == CLIP_VOCAB_SIZE, len(tokens)
    return {t: i for i, t in enumerate(tokens)}, merges


def clip_tokenizer(model_max_length: int = 77):
    """The real CLIP ``CLIPTokenizer`` (49408 tokens), built in memory, padded/truncated to 77 tokens."""
    from transformers import CLIPTokenizer

    vocab, merges = clip_bpe()
    # transformers 5: vocab=/merges= objects (vocab_file=/merges_file= are silently ignored)
    return CLIPTokenizer(vocab=dict(vocab), merges=list(merges), model_max_length=model_max_length)


def clip_tokenizer_folder(path: str | os.PathLike) -> Path:
    """Write CLIP's ``vocab.json`` + ``merges.txt`` (the classic SD ``tokenizer/`` files) into ``path``.

    ``CLIPTokenizer.from_pretrained(path, model_max_length=77)`` then encodes "a photo of a cat" as
    [49406, 320, 1125, 539, 320, 2368, 49407], as OpenAI CLIP does.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    vocab, merges = clip_bpe()
    (path / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n",
                                     encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------- factories
def tiny_vae(seed: int = 0):
    """AutoencoderKL, 4 levels (32, 32, 64, 64): (B, 3, 64, 64) in [-1, 1] <-> latents (B, 4, 8, 8)."""
    from diffusers import AutoencoderKL

    with _seeded(seed):
        return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                             up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(32, 32, 64, 64),
                             layers_per_block=1, latent_channels=4, norm_num_groups=32, sample_size=64).eval()


TINY_CLIP_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": TINY_IMAGE, "layers": 2, "width": TINY_CLIP_TOKENS[1], "head_width": 16,
                   "patch_size": 8, "mlp_ratio": 2.0},
    "text_cfg": {"context_length": 77, "vocab_size": CLIP_VOCAB_SIZE, "width": 32, "heads": 4, "layers": 2},
}


def tiny_clip(seed: int = 0) -> OpenClip:
    """open_clip ``CLIP``: images (B, 3, 32, 32) -> pooled (B, 32) and tokens (B, 16, 64); text (B, 77) -> (B, 32)."""
    import copy

    import open_clip
    from open_clip.transform import PreprocessCfg

    with _seeded(seed):
        model = open_clip.model.CLIP(**copy.deepcopy(TINY_CLIP_CFG)).eval()
    model.visual.output_tokens = True
    preprocess = {**PreprocessCfg().__dict__, "size": TINY_IMAGE}
    open_clip.model.set_model_preprocess_cfg(model, preprocess)
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=TINY_CLIP_CFG["text_cfg"]["context_length"])
    return OpenClip(model, tokenizer, preprocess, copy.deepcopy(TINY_CLIP_CFG))


def tiny_unclip_config(cross_attention_dim: int = TINY_CLIP_TOKENS[1]) -> dict:
    """An SDXL/unclip6-shaped UNet config in small: 3 levels, no attention at the first, per-level transformer
    depth (1, 1, 2), 2 resnets per level, linear projections, a ``label_emb`` vector (class_embed projection)."""
    return dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=[32, 32, 64],
                down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
                up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
                transformer_layers_per_block=[1, 1, 2], attention_head_dim=[2, 2, 4],
                cross_attention_dim=cross_attention_dim, use_linear_projection=True, norm_num_groups=32,
                class_embed_type="projection", projection_class_embeddings_input_dim=4 * TINY_VECTOR_DIM)


def tiny_unclip(seed: int = 0) -> UnClip:
    """``UNet2DConditionModel`` (latents (B, 4, 8, 8), tokens (B, 16, 64), vector (B, 32)) + unclip6's scheduler."""
    from diffusers import UNet2DConditionModel

    from .loaders import load_scheduler
    from .sgm_unclip import CONFIG_DIR

    with _seeded(seed):
        unet = UNet2DConditionModel(**tiny_unclip_config()).eval()
    return UnClip(unet, load_scheduler(CONFIG_DIR))


def train_bpe(corpus: list[str], vocab_size: int):
    """A byte-level BPE (GPT-2/OPT style) trained on ``corpus``: any text encodes, common words are one token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="</s>", bos_token="</s>",
                                   unk_token="<unk>", model_max_length=64)


DEFAULT_CAPTION_CORPUS = ("a red ball is moving to the left over a green field",
                          "a small dog is running on the beach", "a car drives down a street at night",
                          "a person is walking in a room", "a bird flying over the sea")


def tiny_captioner(seed: int = 0, corpus: list[str] | None = None, num_query_tokens: int = 8) -> Captioner:
    """BLIP-2 with an OPT decoder and a byte-level BPE trained on ``corpus`` (vocab <= 400).

    ``processor(images=..., text=..., return_tensors="pt")`` resizes to 32 px and prepends ``num_query_tokens``
    ``<image>`` tokens (transformers 5 convention); ``model.generate(**inputs)`` returns prompt + caption ids.
    """
    from transformers import (Blip2Config, Blip2ForConditionalGeneration, Blip2Processor, Blip2QFormerConfig,
                              Blip2VisionConfig, BlipImageProcessor, OPTConfig)

    tok = train_bpe(list(corpus or DEFAULT_CAPTION_CORPUS) * 4, vocab_size=400)
    processor = Blip2Processor(image_processor=BlipImageProcessor(size={"height": TINY_IMAGE, "width": TINY_IMAGE}),
                               tokenizer=tok, num_query_tokens=num_query_tokens)
    vocab = len(tok)           # after the processor added <image>
    pad, eos = tok.pad_token_id, tok.eos_token_id
    cfg = Blip2Config(
        vision_config=Blip2VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, image_size=TINY_IMAGE, patch_size=8).to_dict(),
        qformer_config=Blip2QFormerConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                          intermediate_size=64, encoder_hidden_size=32).to_dict(),
        text_config=OPTConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, ffn_dim=64,
                              num_attention_heads=4, word_embed_proj_dim=32, max_position_embeddings=128,
                              pad_token_id=pad, bos_token_id=eos, eos_token_id=eos).to_dict(),
        num_query_tokens=num_query_tokens, image_token_index=tok.convert_tokens_to_ids("<image>"))
    with _seeded(seed):
        model = Blip2ForConditionalGeneration(cfg).eval()
    model.generation_config.pad_token_id = pad
    model.generation_config.eos_token_id = eos
    return Captioner(model, processor)


def _tiny_unet2d(cross_attention_dim: int = TINY_TEXT_WIDTH):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(32, 64), down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
                                up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"],
                                cross_attention_dim=cross_attention_dim, attention_head_dim=8, norm_num_groups=32)


def tiny_t2v(seed: int = 0, split: bool = False) -> dict:
    """AnimateDiff parts: ``unet`` (UNetMotionModel: latents (B, 4, F, 8, 8), text (B*F, 77, 32)), ``text_encoder``
    (CLIPTextModel, 32-d), ``tokenizer`` (real CLIP BPE, 77), ``scheduler`` (the official DDIM settings).

    ``split=True`` returns the AnimateDiff release layout instead: ``unet`` a UNet2DConditionModel and
    ``motion_adapter`` a MotionAdapter (v3: no motion module in the mid block).
    """
    from diffusers import DDIMScheduler, MotionAdapter, UNetMotionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    with _seeded(seed):
        unet2d = _tiny_unet2d().eval()
        adapter = MotionAdapter(block_out_channels=(32, 64), motion_layers_per_block=1, motion_num_attention_heads=4,
                                motion_norm_num_groups=32, motion_max_seq_length=32, use_motion_mid_block=False)
        text_encoder = CLIPTextModel(CLIPTextConfig(
            vocab_size=CLIP_VOCAB_SIZE, hidden_size=TINY_TEXT_WIDTH, intermediate_size=64, num_attention_heads=4,
            num_hidden_layers=2, max_position_embeddings=77, bos_token_id=CLIP_BOS, eos_token_id=CLIP_EOS,
            pad_token_id=CLIP_EOS)).eval()
    # the official AnimateDiff inference scheduler (neuroclips-official-code.md §6.1)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="linear", steps_offset=1,
                              clip_sample=False)
    parts = dict(text_encoder=text_encoder, tokenizer=clip_tokenizer(), scheduler=scheduler)
    if split:
        return dict(unet=unet2d, motion_adapter=adapter, **parts)
    return dict(unet=UNetMotionModel.from_unet2d(unet2d, adapter).eval(), **parts)


def tiny_sparsectrl(seed: int = 0):
    """RGB ``SparseControlNetModel`` matching :func:`tiny_t2v`'s UNet: condition (B, 4, F, 8, 8) VAE latents +
    mask (B, 1, F, 8, 8) -> down/mid residuals for the video UNet."""
    from diffusers import SparseControlNetModel

    from .loaders import SPARSECTRL_RGB

    # built directly: from_unet() cannot set the RGB options and mutates the UNet's config
    with _seeded(seed):
        return SparseControlNetModel(in_channels=4, block_out_channels=(32, 64), layers_per_block=1,
                                     down_block_types=("CrossAttnDownBlockMotion", "DownBlockMotion"),
                                     cross_attention_dim=TINY_TEXT_WIDTH, attention_head_dim=8, norm_num_groups=32,
                                     motion_num_attention_heads=4, motion_max_seq_length=32,
                                     **SPARSECTRL_RGB).eval()


def _labels(num_labels: int) -> dict:
    return dict(num_labels=num_labels, id2label={i: f"class_{i}" for i in range(num_labels)},
                label2id={f"class_{i}": i for i in range(num_labels)})


def tiny_frame_classifier(seed: int = 0, num_labels: int = TINY_NUM_LABELS) -> Classifier:
    """ViT: images -> processor (resize 32, mean/std 0.5) -> pixel_values (B, 3, 32, 32) -> logits (B, num_labels)."""
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    cfg = ViTConfig(image_size=TINY_IMAGE, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=64, **_labels(num_labels))
    with _seeded(seed):
        model = ViTForImageClassification(cfg).eval()
    processor = ViTImageProcessor(size={"height": TINY_IMAGE, "width": TINY_IMAGE}, image_mean=[0.5] * 3,
                                  image_std=[0.5] * 3)
    return Classifier(model, processor)


def tiny_video_classifier(seed: int = 0, num_labels: int = TINY_NUM_LABELS, num_frames: int = 16) -> Classifier:
    """VideoMAE: list of ``num_frames`` frames -> pixel_values (B, F, 3, 32, 32) -> logits (B, num_labels)."""
    from transformers import VideoMAEConfig, VideoMAEForVideoClassification, VideoMAEImageProcessor

    cfg = VideoMAEConfig(image_size=TINY_IMAGE, patch_size=8, num_frames=num_frames, tubelet_size=2, hidden_size=32,
                         num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, **_labels(num_labels))
    with _seeded(seed):
        model = VideoMAEForVideoClassification(cfg).eval()
    processor = VideoMAEImageProcessor(size={"shortest_edge": TINY_IMAGE},
                                       crop_size={"height": TINY_IMAGE, "width": TINY_IMAGE})
    return Classifier(model, processor)


TINY_FACTORIES = {"vae": tiny_vae, "clip": tiny_clip, "unclip": tiny_unclip, "captioner": tiny_captioner,
                  "t2v": tiny_t2v, "sparsectrl": tiny_sparsectrl, "frame_classifier": tiny_frame_classifier,
                  "video_classifier": tiny_video_classifier}


def tiny_role(role: str, seed: int = 0):
    """The tiny random model(s) of ``role``, shaped like ``load_role``'s result."""
    from .weights import get_role_or_error

    get_role_or_error(role)
    return TINY_FACTORIES[role](seed=seed)
