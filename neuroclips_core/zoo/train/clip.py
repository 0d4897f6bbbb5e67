"""The CLIP stand-in: an open_clip ``CLIP`` whose image tower starts as the trained frame classifier.

**Model** (:func:`clip_model_cfg`).  Vision tower: open_clip's ``VisionTransformer`` with the frame classifier's
exact sizes (64 px, patch 8 -> 64 patch tokens, width 128, 6 layers, 4 heads of 32, MLP 512, no ``ln_pre``,
exact GELU, LayerNorm eps 1e-12 as HF's ViT), so :func:`vit_to_open_clip_visual` copies the trained ViT into it
exactly: its patch tokens (``encode_image``'s second output, the (B, 64, 128) tokens NeuroClips regresses and
unCLIP is conditioned on) start as the frame classifier's last hidden states, which already separate the 64
classes.  Text tower: the real CLIP BPE (open_clip's ``SimpleTokenizer``, 49408 tokens), width 64, 4 layers,
4 heads; joint embedding 64.  ``context_length`` is 32, not CLIP's 77: corpus captions take at most 22 tokens
with start and end (15 on average), the causal mask makes the padding after the end token irrelevant to the
pooled output, and 77 positions would only cost 2.4x the text tower's attention and MLP work for nothing.
Preprocessing: 64 px, mean = std = 0.5 (what the frame classifier was trained with).

**Loss.**  Symmetric InfoNCE (open_clip's ``ClipLoss``) between corpus keyframes and their clips' captions,
with open_clip's learnable temperature (init 1/0.07, clamped at 100), batch 128.  The vision tower, which starts
trained, learns at ``vision_lr_scale`` (0.2) of the text tower's rate; its new projection ``visual.proj`` learns
at the full rate.

**Evaluation** (held-out keyframes, in batches of ``eval_batch`` = 100 pairs): image -> caption and caption ->
image top-1 (issue target: image -> caption top-1 >= 0.5; chance 0.01), zero-shot class top-1 from prompts of
the class name alone ("a striped disk"; chance 1/64), and the *class-only ceiling*: the top-1 of a retriever that
knows each keyframe's class perfectly and nothing else, which must pick at random among the captions of that
class in the batch.  With ``K`` ~ Binomial(99, 1/64) other captions of the same class it is
E[1 / (1 + K)] = (1 - (63/64)^100) / (100/64) = 0.508 (Poisson: (1 - e^-l) / l, l = 99/64).  So even a perfect
class reader only just touches the 0.5 target, and one that is right 90 % of the time falls short: top-1 must also
use the object's colour and the background's (8 hue names each), which the frame classifier was trained to ignore.
The caption's motion is not visible in a keyframe: it is noise the text tower has to learn to ignore.

**Cost.**  4.6 M parameters (3.2 M of them the 49408 x 64 token embedding, 1.23 M the vision tower), 9.2 MB in
float16.  A step (batch 128) is ~85 % vision-tower forward and backward.  Measured here on 1 thread, the machine
shared by two stand-in trainings and three probes on its 2 cores: 1.35 s of CPU time per step (0.74 steps/s of
CPU time; 0.3-0.5 steps/s of wall time at that load), in line with the frame classifier's log (0.59 s a step of
64 frames on 1 contended thread).  With this machine's 1.7x from 1 contended thread to 2 free ones, a step takes
~0.8 s there: the full config's 700 steps (90 k pairs) take ~10 min.  Quick mode trains and evaluates in ~3 s.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ...data.sim_stimuli import CLASSES, N_CLASSES, _with_article
from .. import corpus
from ..loaders import OpenClip, load_role
from ..tiny import CLIP_VOCAB_SIZE, _seeded
from .classifiers import ClassifierConfig
from .loop import Recipe, TrainConfig, TrainError, export_copy

IMAGE_SIZE = corpus.FRAME_SIZE
MEAN = STD = (0.5, 0.5, 0.5)          # the frame classifier's normalisation
VIT_LAYER_NORM_EPS = 1e-12            # HF ViTConfig's default, which the frame classifier keeps
LOGIT_SCALE_MAX = 100.0               # open_clip's clamp of exp(logit_scale)


@dataclass(frozen=True)
class ClipConfig(TrainConfig):
    """Tower sizes (the vision tower's are the frame classifier's, so it can start from it) and evaluation."""

    embed_dim: int = 64
    patch_size: int = ClassifierConfig.patch_size
    vision_width: int = ClassifierConfig.hidden_size
    vision_layers: int = ClassifierConfig.layers
    vision_heads: int = ClassifierConfig.heads
    vision_mlp: int = ClassifierConfig.intermediate_size
    text_width: int = 64
    text_layers: int = 4
    text_heads: int = 4
    context_length: int = 32          # captions take <= 22 tokens (see the module docstring)
    init_from_frame_classifier: bool = True
    vision_lr_scale: float = 0.2      # LR of the (pretrained) vision tower relative to ``lr``
    eval_batch: int = 100             # retrieval among this many held-out pairs

    def __post_init__(self):
        if self.eval_size < self.eval_batch or self.eval_size % self.eval_batch:
            raise ValueError(f"clip: eval_size ({self.eval_size}) must be a positive multiple of eval_batch "
                             f"({self.eval_batch}): retrieval is scored in whole batches of eval_batch pairs")


def clip_model_cfg(c: ClipConfig) -> dict:
    """The open_clip model config (``open_clip.model.CLIP(**cfg)``; saved as ``model_cfg``)."""
    return {
        "embed_dim": c.embed_dim,
        "quick_gelu": False,             # HF ViT's "gelu" is the exact (erf) GELU, as nn.GELU
        "vision_cfg": {"image_size": IMAGE_SIZE, "patch_size": c.patch_size, "width": c.vision_width,
                       "layers": c.vision_layers, "head_width": c.vision_width // c.vision_heads,
                       "mlp_ratio": c.vision_mlp / c.vision_width, "no_ln_pre": True,
                       "norm_kwargs": {"eps": VIT_LAYER_NORM_EPS}},
        "text_cfg": {"context_length": c.context_length, "vocab_size": CLIP_VOCAB_SIZE, "width": c.text_width,
                     "heads": c.text_heads, "layers": c.text_layers},
    }


def clip_preprocess_cfg() -> dict:
    """open_clip ``PreprocessCfg`` fields: 64 px, mean = std = 0.5."""
    from open_clip.transform import PreprocessCfg

    return {**PreprocessCfg().__dict__, "size": IMAGE_SIZE, "mean": MEAN, "std": STD}


@functools.lru_cache(maxsize=4)
def open_clip_tokenizer(context_length: int):
    """open_clip's ``SimpleTokenizer`` (the real CLIP BPE): texts -> (B, context_length) int64."""
    import open_clip

    return open_clip.tokenizer.SimpleTokenizer(context_length=context_length)


def clip_pixels(images: torch.Tensor, preprocess_cfg: dict) -> torch.Tensor:
    """Images (B, 3, S, S) in [0, 1] at the model's size -> normalised by ``preprocess_cfg``'s mean and std."""
    size = preprocess_cfg["size"]
    expected = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(images.shape[-2:]) != expected:
        raise ValueError(f"clip: images of {tuple(images.shape[-2:])} px, expected {expected} (resize them first)")
    mean = torch.tensor(preprocess_cfg["mean"], dtype=images.dtype)[:, None, None]
    std = torch.tensor(preprocess_cfg["std"], dtype=images.dtype)[:, None, None]
    return (images - mean) / std


def _pooled(out) -> torch.Tensor:
    """``encode_image``'s pooled embedding, whether or not ``visual.output_tokens`` makes it a tuple."""
    return out[0] if isinstance(out, tuple) else out


@torch.no_grad()
def embed_images(model, images: torch.Tensor, preprocess_cfg: dict, batch: int = 256) -> torch.Tensor:
    """Unit-norm image embeddings (N, embed_dim) of frames (N, 3, S, S) in [0, 1]."""
    device, dtype = model.logit_scale.device, model.logit_scale.dtype
    out = [_pooled(model.encode_image(clip_pixels(images[a:a + batch], preprocess_cfg).to(device, dtype))).float()
           for a in range(0, len(images), batch)]
    return F.normalize(torch.cat(out).cpu(), dim=-1)


@torch.no_grad()
def embed_texts(model, tokenizer, texts: list[str], batch: int = 256) -> torch.Tensor:
    """Unit-norm text embeddings (N, embed_dim)."""
    device = model.logit_scale.device
    out = [model.encode_text(tokenizer(texts[a:a + batch]).to(device)).float() for a in range(0, len(texts), batch)]
    return F.normalize(torch.cat(out).cpu(), dim=-1)


def class_only_ceiling(batch: int, classes: int = N_CLASSES) -> float:
    """Expected retrieval top-1 in a batch of ``batch`` pairs for a retriever that knows only the class:
    E[1 / (1 + K)], K ~ Binomial(batch - 1, 1 / classes) = (1 - (1 - 1/classes)^batch) / (batch / classes)."""
    p = 1 / classes
    return (1 - (1 - p) ** batch) / (batch * p)


def retrieval_scores(image_emb: torch.Tensor, text_emb: torch.Tensor, labels: torch.Tensor, captions: list[str],
                     batch: int) -> dict:
    """Top-1 retrieval within consecutive batches of ``batch`` (image, caption) pairs.

    A retrieval counts as a hit when the retrieved partner's caption is the item's own caption text (so two
    items with the same caption, indistinguishable by construction, do not count against the model); exact
    score ties go to the first item, never in the model's favour.

    Args:
        image_emb, text_emb: (N, D) unit-norm embeddings of pair i (N a multiple of ``batch``).
        labels: (N,) class ids.
        captions: the N caption strings.

    Returns:
        ``i2t_top1`` (image -> best caption), ``t2i_top1`` (caption -> best image), ``i2t_class_top1`` (the best
        caption has the image's class) and ``class_only_ceiling_eval`` (mean over items of 1 / captions of its
        class in its batch: a class-only retriever's expected top-1 on exactly these batches).
    """
    text_ids: dict[str, int] = {}
    caption_id = torch.tensor([text_ids.setdefault(c, len(text_ids)) for c in captions])   # same text, same id
    hits = {"i2t_top1": [], "t2i_top1": [], "i2t_class_top1": [], "class_only_ceiling_eval": []}
    own = torch.arange(batch)
    for a in range(0, len(labels) - batch + 1, batch):
        s = image_emb[a:a + batch] @ text_emb[a:a + batch].T          # (batch images, batch captions)
        y, ids = labels[a:a + batch], caption_id[a:a + batch]
        same = ids[:, None] == ids[None]                                # (batch, batch) identical caption text
        hits["i2t_top1"].append(same[own, s.argmax(1)])
        hits["t2i_top1"].append(same[own, s.argmax(0)])
        hits["i2t_class_top1"].append(y[s.argmax(1)] == y)
        hits["class_only_ceiling_eval"].append(1 / (y[:, None] == y[None]).sum(1).float())
    return {k: float(torch.cat(v).float().mean()) for k, v in hits.items()}


def vit_to_open_clip_visual(vit, visual) -> None:
    """Copy a HF ViT (``ViTForImageClassification`` or ``ViTModel``) into an open_clip ``VisionTransformer`` of
    the same sizes (in place), so that ``visual``'s patch tokens equal the ViT's ``last_hidden_state[:, 1:]``.

    open_clip's patch convolution has no bias: since it adds the same vector to every patch token before the
    position embeddings, it is folded into ``positional_embedding[1:]``.  The CLS token becomes
    ``class_embedding``; q, k, v stack into ``nn.MultiheadAttention``'s ``in_proj`` (q, k, v order); the ViT's
    final layernorm becomes ``ln_post`` (so the pooled CLS is the classifier's input).  ``visual.proj`` (the new
    projection to the joint space) is left as it is.

    Raises:
        TrainError: sizes, GELU flavour, layernorm eps or layout (``ln_pre``, CLS pooling) differ.
    """
    encoder = getattr(vit, "vit", vit)
    vc = encoder.config
    block = visual.transformer.resblocks[0]
    found = {"hidden_size": visual.transformer.width, "num_hidden_layers": visual.transformer.layers,
             "num_attention_heads": block.attn.num_heads, "intermediate_size": block.mlp.c_fc.out_features,
             "patch_size": visual.patch_size[0], "image_size": visual.image_size[0],
             "layer_norm_eps": visual.ln_post.eps}
    wrong = {k: (getattr(vc, k), v) for k, v in found.items() if getattr(vc, k) != v}
    act = block.mlp.gelu
    if vc.hidden_act != "gelu" or type(act) is not torch.nn.GELU or act.approximate != "none":
        wrong["activation"] = (vc.hidden_act, repr(act))
    if not isinstance(visual.ln_pre, torch.nn.Identity) or visual.pool_type != "tok" or not vc.qkv_bias:
        wrong["layout"] = ("no ln_pre, CLS pooling, q/k/v biases",
                           f"ln_pre {type(visual.ln_pre).__name__}, pool {visual.pool_type}, qkv_bias {vc.qkv_bias}")
    if wrong:
        raise TrainError(f"clip: cannot start the vision tower from the frame classifier; (ViT, open_clip) "
                         f"differ in {wrong}. Build the tower with clip_model_cfg() of a ClipConfig whose vision "
                         f"sizes equal the frame classifier's, or set init_from_frame_classifier=False.")
    src = {k: v.float() for k, v in encoder.state_dict().items()}
    emb = "embeddings.patch_embeddings.projection"
    state = {"conv1.weight": src[f"{emb}.weight"],
             "class_embedding": src["embeddings.cls_token"].reshape(-1),
             "positional_embedding": src["embeddings.position_embeddings"][0]
             + torch.cat([torch.zeros(1, vc.hidden_size), src[f"{emb}.bias"].expand(visual.positional_embedding
                                                                                     .shape[0] - 1, -1)]),
             "ln_post.weight": src["layernorm.weight"], "ln_post.bias": src["layernorm.bias"]}
    for i in range(vc.num_hidden_layers):
        a, b = f"layers.{i}.", f"transformer.resblocks.{i}."
        state[b + "attn.in_proj_weight"] = torch.cat([src[f"{a}attention.{p}_proj.weight"] for p in "qkv"])
        state[b + "attn.in_proj_bias"] = torch.cat([src[f"{a}attention.{p}_proj.bias"] for p in "qkv"])
        pairs = {"attn.out_proj": "attention.o_proj", "ln_1": "layernorm_before", "ln_2": "layernorm_after",
                 "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}
        for ours, theirs in pairs.items():
            for p in ("weight", "bias"):
                state[f"{b}{ours}.{p}"] = src[f"{a}{theirs}.{p}"]
    state["proj"] = visual.proj.detach().float()
    visual.load_state_dict({k: v.to(visual.proj.dtype) for k, v in state.items()}, strict=True)


class ClipRecipe(Recipe):
    """open_clip ``CLIP``: keyframes (B, 3, 64, 64) -> pooled (B, 64) + tokens (B, 64, 128); captions -> (B, 64)."""

    role = "clip"
    config_class = ClipConfig

    @staticmethod
    def full_config() -> ClipConfig:
        return ClipConfig(steps=700, batch=128, lr=1e-3, warmup=50, eval_size=1000)

    @staticmethod
    def quick_config() -> ClipConfig:
        return ClipConfig(steps=3, batch=16, lr=1e-3, warmup=2, eval_size=32, eval_batch=16)

    @property
    def tokenizer(self):
        return open_clip_tokenizer(self.config.context_length)

    def uses(self) -> tuple[str, ...]:
        return ("frame_classifier",) if self.config.init_from_frame_classifier else ()

    def build(self):
        import open_clip

        with _seeded(self.seed):
            model = open_clip.model.CLIP(**clip_model_cfg(self.config))
        if self.config.init_from_frame_classifier:
            self.require("frame_classifier")
            vit_to_open_clip_visual(load_role("frame_classifier", self.role_folder("frame_classifier"),
                                              dtype=torch.float32).model, model.visual)
        return model

    def lr_scale(self, name, param) -> float:
        pretrained = self.config.init_from_frame_classifier and name.startswith("visual.") and name != "visual.proj"
        return self.config.vision_lr_scale if pretrained else 1.0

    def loss(self, model, step, generator):
        from open_clip.loss import ClipLoss

        c = self.config
        b = corpus.keyframe_batch(self.seed, step, c.batch, "train", IMAGE_SIZE)
        device = model.logit_scale.device
        # open_clip clamps the temperature after every optimizer step; the loop has no post-step hook, and
        # clamping before each forward gives the same sequence of values
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(LOGIT_SCALE_MAX))
        image = F.normalize(_pooled(model.encode_image(clip_pixels(b.images, clip_preprocess_cfg()).to(device))),
                            dim=-1)
        text = F.normalize(model.encode_text(self.tokenizer(b.captions).to(device)), dim=-1)
        scale = model.logit_scale.exp()
        loss = ClipLoss()(image.float(), text.float(), scale)
        with torch.no_grad():
            s = image.float() @ text.float().T
            acc = float((s.argmax(1) == torch.arange(len(s), device=device)).float().mean())
        return loss, {"i2t_acc": acc, "logit_scale": float(scale.detach())}

    def export(self, model):
        clip = export_copy(model, "float32")
        with torch.no_grad():
            clip.logit_scale.clamp_(0, math.log(LOGIT_SCALE_MAX))
        return OpenClip(export_copy(clip, self.config.save_dtype), self.tokenizer, clip_preprocess_cfg(),
                        clip_model_cfg(self.config))

    def evaluate(self, loaded) -> dict:
        c = self.config
        model, tokenizer, preprocess_cfg, _ = loaded
        h = corpus.heldout_keyframes(self.seed, c.eval_size, IMAGE_SIZE)
        image = embed_images(model, h.images, preprocess_cfg)
        metrics = retrieval_scores(image, embed_texts(model, tokenizer, h.captions), h.labels, h.captions,
                                   c.eval_batch)
        prompts = embed_texts(model, tokenizer, [_with_article(name) for name in CLASSES])
        metrics["zeroshot_top1"] = float(((image @ prompts.T).argmax(1) == h.labels).float().mean())
        metrics.update(class_only_ceiling=class_only_ceiling(c.eval_batch), chance_retrieval=1 / c.eval_batch,
                       chance_class=1 / N_CLASSES, logit_scale=model.logit_scale.exp().item(), n_eval=len(h.labels))
        return metrics
