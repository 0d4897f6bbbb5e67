"""The video stand-ins: a text-to-video AnimateDiff (``t2v``) and its RGB SparseCtrl (``sparsectrl``).

NeuroClips generates its videos with AnimateDiff v3 (SD 1.5's UNet inflated with motion modules, SD's CLIP text
encoder) steered by an RGB SparseCtrl that holds the decoded keyframe at frame 0.  The stand-ins are the same
diffusers classes in small, trained here on corpus clips (16 frames at 8 FPS, 64 px) in the VAE stand-in's
latent space: (B, 4, 16, 16, 16) scaled latents (:mod:`.diffusion`'s ``encode_scaled``, posterior samples).
The VAE (and for the SparseCtrl the t2v parts) are frozen and held on the recipe, not inside the trained module;
the provenance (:meth:`Recipe.uses`) records the sha256 of their weights, so a resumed run must use the same ones.

**t2v** (:class:`T2vRecipe`): ``UNetMotionModel.from_unet2d(UNet2DConditionModel, MotionAdapter)``, as AnimateDiff
is assembled, and a ``CLIPTextModel`` with the real 49408-token CLIP BPE tokenizer (77 positions), trained
together on the clips' captions (class, colour, direction of motion, background).

- **Text encoder = the CLIP stand-in's text tower** (:func:`open_clip_text_to_hf`, exact), as SD's text encoder
  is CLIP's; it then trains with the UNet at ``text_lr_scale`` of the rate.  A text encoder trained from scratch
  with the UNet gave caption states that barely depended on the caption (their spread across captions was 8 %
  of their scale after 550 steps).
- UNet (:func:`t2v_unet_config`): three levels at 16 x 16, 8 x 8 and 4 x 4 latent pixels with 32, 64 and 128
  channels, one resnet per level (two on the way up), cross-attention at the two coarser levels and in the mid
  block, heads of 32 channels, a motion module (AnimateDiff's pair of temporal self-attentions) after every
  resnet of every level and none in the mid block (v3).  Attention at 16 x 16 and 64 channels there each cost
  1.6-2x the step time in probes; the budget buys steps instead.
- **Image phase first** (``keyframe_steps``): the first steps train on single keyframes (``num_frames=1``: the
  motion modules see sequences of one frame) with ``keyframe_batch`` items a step, then clips.  A clip's 16
  frames show one scene, so at the same cost per step the image phase sees 16x the scenes and captions; it is
  AnimateDiff's order too (an image model first, motion modules on top).  Measured at equal steps (550, 250 of
  them on keyframes, vs 465-470 on clips only, ~the same wall time): held-out denoising loss 0.141 vs 0.149
  with a text encoder from scratch, 0.142 vs 0.148 with CLIP's.
- **Loss weighting** (:func:`timestep_weights`, ``high_noise_weight``): what a caption says is readable from the
  noisy latents at all but the highest noise levels, where the plain epsilon loss hardly depends on it, and the
  probes above ignored their captions entirely (the held-out loss with the empty caption was the same).  Each
  item's error is weighted by ``min(1 / alphas_cumprod[t], cap)``: the v-prediction loss, capped.  The shipped
  recipe uses cap 1000, i.e. the v-loss itself (the schedule's largest 1 / alphas_cumprod is 633), which counts
  an error in the clean latents alike at every noise level; cap 20 (the first full run) left the top 40 % of the
  schedule, where the caption and the keyframe decide a sample's layout, almost unweighted.
- **v-prediction** (``prediction_type``; the shipped t2v, and so its SparseCtrl): the UNet outputs the velocity
  ``sqrt(abar) eps - sqrt(1 - abar) x0`` (Salimans & Ho 2022; SD 2's choice) where AnimateDiff outputs the noise.
  With the noise as output, the capped v weighting above asked the UNet, at the highest noise levels, to reproduce
  its input to within half a percent, and the small UNet's error there swamped everything a caption could tell:
  its clean-latent estimate at t = 999 was 2.6 times worse than predicting zeros, with or without the caption
  (``benchmarks/probe_caption_use.py``).  The velocity is mostly the clean latents there, so the same loss asks
  for what the caption says.  Only the scheduler's ``prediction_type`` changes: the schedule, DDIM, CFG, Eq. 5
  and the pipelines read it (:func:`training_target`, :func:`predicted_noise`); the loss weights are the same
  capped v weighting written for a v error (:func:`timestep_weights`), so cap 1000 is the plain v loss.
- Caption dropout (``caption_dropout`` 10 %): the caption is replaced by the empty one, the unconditional
  branch diffusers' AnimateDiff pipelines use when no negative prompt is given.
- **Schedule**: trained and sampled under AnimateDiff's own noise schedule, the DDIM settings of the official
  inference config (:func:`animatediff_scheduler`: "linear" betas 0.00085 .. 0.012, ``steps_offset`` 1; AnimateDiff
  trains its motion modules under the same linear betas, not SD's "scaled_linear" of
  :func:`.diffusion.training_scheduler`), so NeuroClips' alpha guidance (blurry latents noised to t = 961) means
  for the stand-in what it means for the real model.

**sparsectrl** (:class:`SparseCtrlRecipe`): ``SparseControlNetModel`` in the RGB layout
(:data:`~neuroclips_core.zoo.loaders.SPARSECTRL_RGB`: the keyframe's VAE latent, 4 channels, plus a mask channel,
through the simplified condition embedding), with the t2v UNet's channels, heads and cross-attention width
(:func:`sparsectrl_config`), started from the trained t2v UNet (:func:`init_controlnet_from_unet`: input
convolution, time embedding, down blocks and mid block, as a ControlNet starts from its UNet) and trained with the
t2v model frozen, as SparseCtrl was.  Two departures from diffusers' defaults, both for a short CPU budget: the
condition embedding starts as the UNet's ``conv_in`` on the latent channels
(:func:`init_condition_embedding_from_conv_in`; diffusers zero-initialises it, and with the zero output convolutions behind it neither gets a
keyframe-dependent gradient at the start), and training timesteps are drawn with T2I-Adapter's cubic bias
towards high noise (``timestep_power`` 3, :func:`offset_noised`), where a condition decides the layout.
Condition: the latent of the clip's frame 0 at frame 0, mask 1 there and 0 elsewhere (NeuroClips' use: the
keyframe on frame 0), the caption as text (dropped 10 % of the time too: classifier-free guidance runs SparseCtrl
on both branches).  diffusers' ``SparseControlNetModel`` zeroes its noisy input (the official
``set_noisy_sample_input_to_zero``): it sees the condition, the timestep and the text only.

**Sampling** (:func:`generate_videos`): DDIM with classifier-free guidance, batched; it gives exactly what
diffusers' ``AnimateDiffPipeline`` / ``AnimateDiffSparseControlNetPipeline`` give with the same parts and
starting noise (tested; the SparseCtrl pipeline takes one keyframe per call).

**Evaluation** (``eval_size`` held-out clips).  t2v: the held-out denoising loss with the true and with the
empty caption (how much the caption helps); videos generated from the captions (DDIM 25 steps, CFG 7.5), the
object's measured direction of motion (:mod:`neuroclips_core.zoo.motion`) against the caption's true velocity
(chance 0.5).  sparsectrl (+ t2v): the held-out loss with and without the keyframe's residuals; videos from
(held-out keyframe at frame 0, caption): frame 0's SSIM to its keyframe beside its SSIM to an unrelated keyframe
(issue target: >= 0.15 above), direction agreement on the clips that move, later frames' SSIM to the true clip
beside that of the keyframe frozen in place; and the generation as NeuroClips runs it (:func:`alpha_guided_videos`):
the chain started from a blurry clip (:func:`blurred_clips`, the clip through 8 x 8 pixels, standing in for the
PR's output) by Eq. 5 at theta 0.3 with 10 DDIM steps, the keyframe at frame 0: its direction agreement (target
>= 0.6) beside the blurry clip's own.  Both add the frame classifier's top-1 on the generated frames when one is
in the output folder.

**Measured** (the full configs, seed 0).  t2v, shipped (2026-12-01, 1 thread): v-prediction, 2400 steps (1200 on
keyframes) in 30.3 min, evaluation 4 min; held-out loss 0.069 with the caption and 0.070 with the empty one (the
noise-prediction loss, which hardly registers a caption; the probe above reads the clean latents instead: at
t = 801 their error is 0.263 with the true caption, 0.312 with the empty one and 0.422 with another clip's);
frames generated from the caption alone classified 0.043 (chance 0.016); but direction agreement from the caption
alone 0.364 on the 44 moving clips (mean cosine -0.14, speed 0.65x the truth's): the caption's direction of motion
is still not learned, and in NeuroClips' use the motion comes from the blurry video.  The epsilon t2v it replaced
(2026-11-30, 2 threads): 1800 steps (600 on keyframes) in 27.5 min; held-out loss 0.119 with and without the
caption; direction 0.545 (24 of 44, one-sided binomial p = 0.33), speed 0.55x, frames 0.027.  The same epsilon
recipe at 9000 steps (115 min) reached a held-out loss of 0.065 and still ignored its caption (0.066 without it),
with direction 0.432 and frames 0.014: more steps were not the fix, the parametrisation was.  The first full
run (1400 steps, loss cap 20) gave 0.500 and speed 2.0x.

sparsectrl, shipped (2026-12-01, 1 thread; on the v-prediction t2v): 3600 steps in 31.3 min, evaluation 6.7 min;
held-out loss 0.068 with the keyframe's residuals against 0.069 for the t2v UNet alone; frame 0's SSIM to its
keyframe 0.693 against 0.524 to an unrelated one (**margin 0.168**, target 0.15); direction from the caption 0.500
(chance); frames classified 0.059 (chance 0.016); **with alpha guidance** the videos move the way their clips do
in 0.818 of the moving clips (the blurry clips themselves 0.955; mean cosine 0.64) and frame 0 is 0.189 closer in
SSIM to its own keyframe than to an unrelated one.  The same recipe and steps on the epsilon t2v (2026-11-30) gave
margins 0.103 and 0.150, frame 0's SSIM 0.572, mean cosine 0.57; 600 steps on it gave 0.045 and 0.118.  So in
NeuroClips' use the motion comes from the blurry video and the layout from blurry video and keyframe; the caption
now shapes what the t2v draws (colours, background, a class the frame classifier reads 2.7 times as often as by
chance), but not its motion.  The sim's video config still runs without CFG (``VideoGenerationConfig.sim``):
at a guidance scale of 1 the caption still conditions the one branch that runs, and a second branch would
double the cost.

**Where the keyframe acts** (:func:`keyframe_effect_by_timestep`, ``benchmarks/probe_sparsectrl_timesteps.py``,
16 held-out clips, 2026-12-01): the shipped SparseCtrl's clean-latent error with no keyframe / the clip's own /
another clip's is, on frame 0, 0.425 / 0.083 / 1.146 at t = 961, 0.089 / 0.062 / 0.264 at t = 401, 0.046 / 0.043 /
0.087 at t = 201 and 0.011 / 0.014 / 0.018 at t = 41; on the later frames 0.449 / 0.211 / 0.844, 0.082 / 0.079 /
0.111, 0.043 / 0.043 / 0.044 and 0.010 / 0.010 / 0.010.  So the keyframe sets layout and colours at high noise,
later frames included, and adds nothing where the class's 5-px texture and outline are drawn.  A run with
uniform timesteps (``timestep_power`` 1, 3600 steps, 1 thread, 2026-12-01) moved that only a little (frame 0 at
t = 201: 0.037; later frames 0.042) and bettered the stamp (held-out loss 0.0666, frame-0 margin 0.177, alpha
direction 0.864, alpha frame-0 margin 0.200), but not the videos: on chapter 04's chain with the *true* keyframes
(``benchmarks/probe_video_guidance.py --seed 12 --clips 96 --scales 1``) frame 50-way 0.045 against the shipped
model's 0.049 (no keyframe 0.040, the keyframe held still 0.836), video 50-way 0.092 for both (no keyframe 0.059).
It was not shipped: it would have changed every run's SparseCtrl for no difference downstream.  The class is lost
in the chain's last, low-noise steps, which neither SparseCtrl trained here reaches.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from ...data.sim_stimuli import N_CLASSES
from .. import corpus
from ..loaders import SPARSECTRL_RGB, load_role
from ..motion import motion_direction_agreement
from ..tiny import CLIP_BOS, CLIP_EOS, _seeded, clip_tokenizer
from .classifiers import predict_frames
from .diffusion import decode_scaled, drop_condition, encode_scaled, noised
from .loop import Recipe, TrainConfig, TrainError, export_copy
from .vae import ssim

IMAGE_SIZE = corpus.FRAME_SIZE
NUM_FRAMES = corpus.CLIP_FRAMES
FPS = corpus.CLIP_FPS
CONTEXT = 77                                             # CLIP's text context
ALPHA_THETA, ALPHA_STEPS = 0.3, 10      # the SparseCtrl's alpha-guided evaluation: Eq. 5's theta, DDIM steps
BLURRY_SIZE = 8                         # ... its stand-in for the PR's blurry video: the clip through 8 x 8 pixels

#: the official AnimateDiff v3 inference scheduler (neuroclips-official-code.md §6.1)
ANIMATEDIFF_DDIM = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="linear",
                        steps_offset=1, clip_sample=False)


PREDICTION_TYPES = ("epsilon", "v_prediction")


def animatediff_scheduler(prediction_type: str = "epsilon"):
    """``DDIMScheduler`` with AnimateDiff's settings: the schedule the t2v stand-in is trained and sampled under.
    ``prediction_type`` is what the UNet outputs (AnimateDiff: ``"epsilon"``; the stand-in: :class:`T2vConfig`)."""
    from diffusers import DDIMScheduler

    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"prediction_type: expected one of {PREDICTION_TYPES}, found {prediction_type!r}")
    return DDIMScheduler(**ANIMATEDIFF_DDIM, prediction_type=prediction_type)


# ------------------------------------------------------------------------------------------------ configs
@dataclass(frozen=True)
class VideoDiffusionConfig(TrainConfig):
    """What both video recipes share: caption dropout and the sampling settings of the evaluation."""

    caption_dropout: float = 0.1      # caption -> "" (the unconditional branch of classifier-free guidance)
    high_noise_weight: float = 20.0   # per-item loss weight min(1 / alphas_cumprod[t], this), mean 1 (1: plain)
    offset_noise: float = 0.1         # std of a per-clip, per-channel constant added to the training noise
    timestep_power: float = 1.0       # t = (1 - u ** power) T, u uniform: 1 uniform, 3 T2I-Adapter's cubic
    eval_steps: int = 25              # DDIM steps of an evaluation generation (NeuroClips: 25)
    guidance_scale: float = 7.5
    eval_batch: int = 8               # clips generated together


@dataclass(frozen=True)
class T2vConfig(VideoDiffusionConfig):
    block_out_channels: tuple = (32, 64, 128)      # latent levels 16, 8, 4 px
    cross_attention: tuple = (False, True, True)   # which levels cross-attend to the text (the mid block does)
    layers_per_block: int = 1
    head_channels: int = 32                        # spatial and temporal attention heads of this many channels
    norm_num_groups: int = 16
    text_lr_scale: float = 0.3                     # LR of the text encoder (started as CLIP's text tower)
    keyframe_steps: int = 0                        # the first steps train on single keyframes (num_frames=1) ...
    keyframe_batch: int = 32                       # ... this many a step; then ``batch`` clips a step
    prediction_type: str = "epsilon"               # the UNet's output: "epsilon" (AnimateDiff's) or "v_prediction"


@dataclass(frozen=True)
class SparseCtrlConfig(VideoDiffusionConfig):
    init_from_t2v: bool = True
    condition_from_conv_in: bool = True   # condition embedding starts as the UNet's conv_in (diffusers: zeros)


# ------------------------------------------------------------------------------------------------ models
def t2v_unet_config(c: T2vConfig, cross_attention_dim: int) -> dict:
    """``UNet2DConditionModel(**t2v_unet_config(c, text width))``: the image UNet AnimateDiff inflates."""
    if len(c.cross_attention) != len(c.block_out_channels):
        raise ValueError(f"t2v: cross_attention {c.cross_attention} needs one flag per level of "
                         f"block_out_channels {c.block_out_channels}")
    down = ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in c.cross_attention]
    up = ["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(c.cross_attention)]
    # diffusers' ``attention_head_dim`` is, for this class, the number of heads (its historical misnomer)
    heads = [max(1, ch // c.head_channels) for ch in c.block_out_channels]
    return dict(sample_size=IMAGE_SIZE // 4, in_channels=4, out_channels=4, down_block_types=down,
                up_block_types=up, block_out_channels=list(c.block_out_channels), layers_per_block=c.layers_per_block,
                attention_head_dim=heads, cross_attention_dim=cross_attention_dim, use_linear_projection=True,
                norm_num_groups=c.norm_num_groups)


def motion_adapter_config(c: T2vConfig) -> dict:
    """``MotionAdapter(**motion_adapter_config(c))``: AnimateDiff v3's layout (no mid-block motion module)."""
    return dict(block_out_channels=list(c.block_out_channels), motion_layers_per_block=c.layers_per_block,
                motion_num_attention_heads=[max(1, ch // c.head_channels) for ch in c.block_out_channels],
                motion_norm_num_groups=c.norm_num_groups, motion_max_seq_length=32, use_motion_mid_block=False)


def text_encoder_config(clip_text_cfg: dict):
    """The ``CLIPTextConfig`` of an open_clip text tower (its ``model_cfg["text_cfg"]``) with CLIP's 77 positions."""
    from transformers import CLIPTextConfig

    width = clip_text_cfg["width"]
    if clip_text_cfg.get("ls_init_value") is not None or clip_text_cfg.get("no_causal_mask"):
        raise TrainError(f"t2v: the CLIP text tower {clip_text_cfg} uses layer scale or no causal mask, which "
                         f"CLIPTextModel has no counterpart for")
    return CLIPTextConfig(vocab_size=clip_text_cfg["vocab_size"], hidden_size=width,
                          intermediate_size=int(width * clip_text_cfg.get("mlp_ratio", 4.0)),
                          num_attention_heads=clip_text_cfg["heads"], num_hidden_layers=clip_text_cfg["layers"],
                          max_position_embeddings=CONTEXT, hidden_act="gelu", layer_norm_eps=1e-5,
                          bos_token_id=CLIP_BOS, eos_token_id=CLIP_EOS, pad_token_id=CLIP_EOS)


@torch.no_grad()
def open_clip_text_to_hf(clip_model, text_encoder) -> None:
    """Copy an open_clip ``CLIP``'s text tower into a ``CLIPTextModel`` built by :func:`text_encoder_config` (in
    place), so ``text_encoder(ids).last_hidden_state`` is the tower's ``ln_final`` output for every token.

    SD's (and so AnimateDiff's) text encoder is CLIP's text tower, taken the same way.  The open_clip tower has
    ``context_length`` positions (32 for the stand-in); the rest of CLIP's 77 repeat its last one.  They only
    ever hold padding (corpus captions take at most 22 tokens), and with the causal mask they cannot change the
    states of the tokens before them.  ``text_projection`` (the contrastive head) is not part of it: diffusion
    UNets read the last hidden states.
    """
    src = {k: v for k, v in clip_model.state_dict().items() if not k.startswith("visual.")}
    width = src["token_embedding.weight"].shape[1]
    pos = src["positional_embedding"]
    if len(pos) > CONTEXT:
        raise TrainError(f"t2v: the CLIP text tower has {len(pos)} positions, more than CLIP's {CONTEXT}")
    state = {"embeddings.token_embedding.weight": src["token_embedding.weight"],
             "embeddings.position_embedding.weight":
                 torch.cat([pos, pos[-1:].expand(CONTEXT - len(pos), width)]),
             "final_layer_norm.weight": src["ln_final.weight"],
             "final_layer_norm.bias": src["ln_final.bias"]}
    names = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "attn.out_proj": "self_attn.out_proj",
             "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}
    for i in range(text_encoder.config.num_hidden_layers):
        a, b = f"transformer.resblocks.{i}.", f"encoder.layers.{i}."
        for theirs, ours in names.items():
            for p in ("weight", "bias"):
                state[f"{b}{ours}.{p}"] = src[f"{a}{theirs}.{p}"]
        for p in ("weight", "bias"):      # nn.MultiheadAttention packs q, k, v along the output dimension
            for name, part in zip(("q_proj", "k_proj", "v_proj"), src[f"{a}attn.in_proj_{p}"].chunk(3)):
                state[f"{b}self_attn.{name}.{p}"] = part
    missing = text_encoder.load_state_dict({k: v.float() for k, v in state.items()}, strict=False).missing_keys
    if missing:
        raise TrainError(f"t2v: the CLIP text tower does not fill the text encoder: missing {missing[:4]}")


def sparsectrl_config(unet) -> dict:
    """``SparseControlNetModel(**sparsectrl_config(unet))``: the RGB SparseCtrl matching a ``UNetMotionModel``
    (same channels, resnets, heads, cross-attention width and motion heads), built from its config rather than
    by ``SparseControlNetModel.from_unet``, which cannot set the RGB options and mutates the UNet's config."""
    u = unet.config
    down = ["CrossAttnDownBlockMotion" if "CrossAttn" in t else "DownBlockMotion" for t in u.down_block_types]

    def per_level(value) -> list:          # SD 1.5's config gives one head count for every level
        return [value] * len(down) if isinstance(value, int) else list(value)

    return dict(in_channels=u.in_channels, down_block_types=down, block_out_channels=list(u.block_out_channels),
                layers_per_block=u.layers_per_block, norm_num_groups=u.norm_num_groups,
                cross_attention_dim=u.cross_attention_dim, num_attention_heads=per_level(u.num_attention_heads),
                # diffusers' historical misnomer: attention_head_dim is the head count where num_attention_heads
                # is not given; keep both equal so no code path reads another number
                attention_head_dim=per_level(u.num_attention_heads), use_linear_projection=u.use_linear_projection,
                motion_num_attention_heads=per_level(u.motion_num_attention_heads),
                motion_max_seq_length=u.motion_max_seq_length, **SPARSECTRL_RGB)


@torch.no_grad()
def init_controlnet_from_unet(controlnet, unet) -> list[str]:
    """Copy a ``UNetMotionModel``'s weights into a ``SparseControlNetModel`` wherever names and shapes match (in
    place); returns the copied names.

    What a ControlNet starts from: the UNet's input convolution, time embedding, down blocks (resnets, spatial
    transformers, motion modules, downsamplers) and mid block.  The control-specific parts keep their init: the
    condition embedding and the ``controlnet_*`` output convolutions (all zero, so the fresh ControlNet adds
    nothing to the UNet).  SparseCtrl's motion modules hold one temporal self-attention where AnimateDiff's hold
    two (diffusers' ``temporal_double_self_attention``); the UNet's second one (``attn2``, ``norm2``) has no
    counterpart and is left out.

    Raises:
        TrainError: a tensor of the ControlNet's shared parts has no same-named, same-shaped UNet tensor (the
        two were not built to match: use :func:`sparsectrl_config`).
    """
    source = unet.state_dict()
    target = controlnet.state_dict()
    shared = [k for k in target if k.split(".")[0] in ("conv_in", "time_embedding", "down_blocks", "mid_block")]
    unmatched = [k for k in shared if k not in source or source[k].shape != target[k].shape]
    if unmatched:
        raise TrainError(f"sparsectrl: cannot start from the t2v UNet: {len(unmatched)} ControlNet tensor(s) have "
                         f"no same-named, same-shaped UNet tensor (e.g. {', '.join(unmatched[:3])}); build the "
                         f"ControlNet with sparsectrl_config(unet).")
    controlnet.load_state_dict({k: source[k].to(target[k].dtype) for k in shared}, strict=False)
    return shared


@torch.no_grad()
def init_condition_embedding_from_conv_in(controlnet, unet) -> None:
    """Start the RGB SparseCtrl's condition embedding (``controlnet_cond_embedding``: a 3x3 convolution of the
    4 latent channels + the mask) as the UNet's input convolution on the latent channels (in place); the mask
    channel and the bias start at zero (the ControlNet's own ``conv_in`` bias is already added).

    Why: diffusers zero-initialises that convolution, and the ControlNet's output convolutions are zero as well,
    so at the start neither gets a gradient that depends on the keyframe (each is multiplied by the other's
    zeros), and a ControlNet learns its condition only after a slow start (the "sudden convergence" of the
    ControlNet paper).  Measured here: 400 steps from the zero start left frame 0's SSIM to its keyframe 0.030
    above an unrelated keyframe's.  The noisy input is zeroed inside ``SparseControlNetModel``, so with this
    start the ControlNet's frame 0 sees exactly what the UNet's ``conv_in`` makes of a clean latent, the features
    its copied down blocks already read; only the zero output convolutions remain to learn, and the fresh
    ControlNet still adds nothing to the UNet.
    """
    weight = controlnet.controlnet_cond_embedding.weight
    source = unet.conv_in.weight
    if weight.shape[0] != source.shape[0] or weight.shape[1] < source.shape[1] or weight.shape[2:] != source.shape[2:]:
        raise TrainError(f"sparsectrl: the condition embedding {tuple(weight.shape)} cannot start from the UNet's "
                         f"conv_in {tuple(source.shape)}; build the ControlNet with sparsectrl_config(unet).")
    weight.zero_()
    weight[:, :source.shape[1]] = source.to(weight.dtype)
    controlnet.controlnet_cond_embedding.bias.zero_()


def timestep_weights(scheduler, cap: float) -> torch.Tensor:
    """Per-timestep loss weights (T,): ``min(1 / alphas_cumprod[t], cap)``, scaled to mean 1 over the schedule.

    Why: with the plain epsilon loss, what the text or the keyframe says (background and object colour, direction
    of motion, the keyframe's layout) is already readable from the noisy latents at all but the highest noise
    levels (a colour or a 16-frame drift averages out of the noise over hundreds of latent pixels), and at those
    levels the epsilon error hardly depends on the clean latents (it is ``alphas_cumprod / (1 - alphas_cumprod)``
    times their error).  So the condition barely moves the loss, and probes trained for 550 steps ignored their
    captions entirely (same held-out loss with the empty caption).  ``1 / alphas_cumprod`` is the weighting
    that turns the epsilon error into the v-prediction error (``|v - v_hat|^2 = |eps - eps_hat|^2 /
    alphas_cumprod``), which counts errors in the clean latents alike at every noise level; ``cap`` keeps the
    lowest-noise steps, which learn the fine detail, from being starved.  The weighting changes the loss only, so
    an epsilon model keeps AnimateDiff's scheduler and pipelines.

    A ``v_prediction`` UNet's error is already the v error, so the same capped weighting of the clean-latent error
    is ``min(1, cap * alphas_cumprod[t])`` on it (all ones for ``cap`` >= the largest ``1 / alphas_cumprod``).
    """
    abar = scheduler.alphas_cumprod.double()
    w = (1 / abar).clamp(max=cap)
    if scheduler.config.prediction_type == "v_prediction":
        w = w * abar
    return (w / w.mean()).float()


def offset_noised(scheduler, x0: torch.Tensor, generator: torch.Generator, offset: float,
                  timestep_power: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`.diffusion.noised` with *offset noise* and optionally high-noise-biased timesteps.  Returns
    ``(x_t, t, noise)`` (epsilon target).

    Offset noise: the noise of each item gets a constant per channel, drawn with std ``offset`` and shared by all
    its frames and pixels.  Why: a clip's latents hold 16 x 16 x 16 values per channel, so their mean (the
    background's colour, most of a scene) stays readable through the noise even at the last timestep of SD's
    schedule (its noise averages down by a factor 64), and a model trained on that noise learns to read the
    scene's colours from the noise instead of from the caption or the keyframe.  At sampling time the noise
    carries no scene, and the caption is ignored (Lin et al. 2024, "Common diffusion noise schedules and sample
    steps are flawed"; offset noise: Guttenberg 2023).  The offset hides the mean; sampling is unchanged.

    ``timestep_power`` p > 1 draws ``t = floor((1 - u ** p) T)``, u uniform in [0, 1): T2I-Adapter's cubic
    sampling (p = 3; Mou et al. 2023, §3.4), which puts most steps at high noise, where a condition decides the
    layout of a sample; at low noise the latents already show it.  p = 1 is the uniform draw (the same random
    numbers as before the option existed, so older runs resume unchanged).
    """
    if timestep_power <= 0:
        raise ValueError(f"timestep_power: expected > 0, found {timestep_power}")
    if offset <= 0 and timestep_power == 1:
        return noised(scheduler, x0, generator)
    steps = scheduler.config.num_train_timesteps
    if timestep_power == 1:
        t = torch.randint(0, steps, (x0.shape[0],), generator=generator)
    else:
        u = torch.rand((x0.shape[0],), generator=generator, dtype=torch.float64)
        t = ((1 - u ** timestep_power) * steps).long().clamp(0, steps - 1)
    noise = torch.randn(x0.shape, generator=generator)
    noise = noise + offset * torch.randn(x0.shape[:2] + (1,) * (x0.ndim - 2), generator=generator)
    noise, t = noise.to(x0), t.to(x0.device)
    return scheduler.add_noise(x0, noise, t), t, training_target(scheduler, x0, noise, t)


def training_target(scheduler, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """What the UNet regresses for clean latents ``x0`` noised with ``noise`` at ``t`` (each (B, ...), t (B,)):
    the noise itself (``epsilon``) or the velocity ``sqrt(abar) noise - sqrt(1 - abar) x0`` (``v_prediction``)."""
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return scheduler.get_velocity(x0, noise, t)
    raise ValueError(f"unsupported prediction_type {kind!r}: expected one of {PREDICTION_TYPES}")


def predicted_noise(scheduler, prediction: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The noise a UNet output implies (B, ...), whatever its ``prediction_type``: for ``v_prediction``
    ``sqrt(abar) v + sqrt(1 - abar) x_t``.  Held-out losses are measured on it, so an epsilon and a v model compare."""
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return prediction
    if kind != "v_prediction":
        raise ValueError(f"unsupported prediction_type {kind!r}: expected one of {PREDICTION_TYPES}")
    abar = scheduler.alphas_cumprod.to(x_t.device, torch.float64)[t].view(-1, *([1] * (x_t.ndim - 1)))
    return (abar.sqrt() * prediction.double() + (1 - abar).sqrt() * x_t.double()).to(prediction.dtype)


def clean_latent_estimate(scheduler, prediction: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The clean latents ``x0_hat = (x_t - sqrt(1 - abar) eps_hat) / sqrt(abar)`` a UNet output implies (float32,
    the shape of ``x_t``; t (B,)), whatever its ``prediction_type``: what a DDIM step moves towards, and so where a
    condition (caption, keyframe) shows at high noise, where the noise error hardly depends on it."""
    eps = predicted_noise(scheduler, prediction, x_t, t).float()
    abar = scheduler.alphas_cumprod.to(x_t.device, torch.float32)[t].view(-1, *([1] * (x_t.ndim - 1)))
    return (x_t.float() - (1 - abar).sqrt() * eps) / abar.sqrt()


def weighted_mse(pred: torch.Tensor, target: torch.Tensor, t: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Mean over items of ``weights[t]`` x each item's mean squared error (pred, target (B, ...), t (B,))."""
    per_item = (pred.float() - target.float()).pow(2).flatten(1).mean(1)
    return (weights.to(per_item.device)[t] * per_item).mean()


# ------------------------------------------------------------------------------------------------ text and sampling
def tokenize(tokenizer, captions: list[str]) -> torch.Tensor:
    """Token ids (B, 77), padded and truncated as diffusers' pipelines do (``padding="max_length"``)."""
    return tokenizer(list(captions), padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids


@torch.no_grad()
def encode_captions(text_encoder, tokenizer, captions: list[str]) -> torch.Tensor:
    """The UNet's text condition (B, 77, C): the text encoder's last hidden states, as the pipelines take them."""
    ids = tokenize(tokenizer, captions).to(text_encoder.device)
    return text_encoder(ids).last_hidden_state


def per_frame(text: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(B, 77, C) -> (B * F, 77, C): what ``UNetMotionModel`` and ``SparseControlNetModel`` take (ecosystem.md)."""
    return text.repeat_interleave(num_frames, dim=0)


def video_latents(vae, clips: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Clips (B, F, 3, S, S) in [0, 1] -> scaled latents (B, 4, F, S/4, S/4) (posterior samples with a generator)."""
    b, f = clips.shape[:2]
    z = encode_scaled(vae, clips.flatten(0, 1), generator)                    # (B * F, 4, h, w)
    return z.unflatten(0, (b, f)).transpose(1, 2).float()


def keyframe_condition(latent0: torch.Tensor, num_frames: int, frame: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """SparseCtrl's condition: a keyframe latent (B, 4, h, w) placed at ``frame`` (NeuroClips: 0) of
    (B, 4, F, h, w) zeros, and the mask (B, 1, F, h, w), 1 at that frame (as
    ``AnimateDiffSparseControlNetPipeline`` builds them for ``controlnet_frame_indices=[frame]``)."""
    if not 0 <= frame < num_frames:
        raise ValueError(f"keyframe_condition: the keyframe's frame must be in [0, {num_frames}), found {frame}")
    b, c, h, w = latent0.shape
    cond = latent0.new_zeros(b, c, num_frames, h, w)
    mask = latent0.new_zeros(b, 1, num_frames, h, w)
    cond[:, :, frame] = latent0
    mask[:, :, frame] = 1
    return cond, mask


class VideoParts(NamedTuple):
    """What generation needs: the t2v parts (``load_role("t2v")``), the VAE, optionally the SparseCtrl."""

    t2v: dict
    vae: torch.nn.Module
    controlnet: torch.nn.Module | None = None


@torch.no_grad()
def denoise_videos(parts: VideoParts, captions: list[str], keyframes: torch.Tensor | None = None,
                   latents: torch.Tensor | None = None, steps: int = 25, guidance_scale: float = 7.5,
                   generator: torch.Generator | None = None, num_frames: int = NUM_FRAMES,
                   negative_captions: list[str] | None = None, keyframe_scale: float = 1.0,
                   keyframe_frame: int = 0) -> torch.Tensor:
    """DDIM with classifier-free guidance (the negative captions, by default the empty one, as the unconditional
    branch), the full chain of ``steps`` timesteps from the noisiest: final latents (B, 4, F, h, w).

    Args:
        parts: t2v parts, VAE and (for keyframe conditioning) the SparseCtrl.
        captions: B prompts.
        keyframes: (B, 3, S, S) in [0, 1], held at frame 0 through the SparseCtrl (needs ``parts.controlnet``).
        latents: starting latents (B, 4, F, h, w) at the first timestep's noise level (pure noise, or NeuroClips'
            alpha-guided blurry latents); drawn from ``generator`` when None.
        steps, guidance_scale: DDIM steps (on a private copy of the t2v scheduler) and CFG scale (<= 1: no CFG,
            the unconditional branch is not run, as in diffusers' pipelines).
        negative_captions: B prompts of the unconditional branch (None: "" for each, diffusers' default).
        keyframe_scale: the SparseCtrl residuals' weight (diffusers' ``conditioning_scale``; 1.0 as trained).
        keyframe_frame: the frame the keyframe is held at (NeuroClips and the stand-ins' training: 0).
    """
    unet, text_encoder, tokenizer = parts.t2v["unet"], parts.t2v["text_encoder"], parts.t2v["tokenizer"]
    scheduler = type(parts.t2v["scheduler"]).from_config(parts.t2v["scheduler"].config)
    device, dtype = unet.device, unet.dtype
    b, size = len(captions), unet.config.sample_size
    if latents is None:
        latents = torch.randn((b, unet.config.in_channels, num_frames, size, size), generator=generator)
        latents = latents * scheduler.init_noise_sigma
    latents = latents.to(device, dtype)
    num_frames = latents.shape[2]
    negative = [""] * b if negative_captions is None else list(negative_captions)
    if len(negative) != b:
        raise ValueError(f"denoise_videos: expected {b} negative captions (one per caption), found {len(negative)}")
    cfg = guidance_scale > 1       # as diffusers' pipelines decide: at scale <= 1 the unconditional branch is skipped
    text = encode_captions(text_encoder, tokenizer, captions)
    if cfg:
        text = torch.cat([encode_captions(text_encoder, tokenizer, negative), text])
    text = per_frame(text.to(dtype), num_frames)
    branches = 2 if cfg else 1
    control = None
    if keyframes is not None:
        if parts.controlnet is None:
            raise ValueError("keyframes given but no SparseCtrl (parts.controlnet) to hold them")
        cond, mask = keyframe_condition(encode_scaled(parts.vae, keyframes).to(device, dtype), num_frames,
                                        keyframe_frame)
        control = dict(controlnet_cond=torch.cat([cond] * branches), conditioning_mask=torch.cat([mask] * branches),
                       conditioning_scale=float(keyframe_scale))
    scheduler.set_timesteps(steps, device=device)
    for t in scheduler.timesteps:
        x = scheduler.scale_model_input(torch.cat([latents] * branches), t)
        residuals = {}
        if control is not None:
            down, mid = parts.controlnet(x, t, encoder_hidden_states=text, return_dict=False, **control)
            residuals = dict(down_block_additional_residuals=down, mid_block_additional_residual=mid)
        eps = unet(x, t, encoder_hidden_states=text, **residuals).sample
        if cfg:
            eps_uncond, eps_text = eps.chunk(2)
            eps = eps_uncond + guidance_scale * (eps_text - eps_uncond)
        latents = scheduler.step(eps, t, latents).prev_sample
    return latents


def clip_noise(seed: int, index: int, shape: tuple, frame_share: float = 0.0,
               share_cutoff: float = 0.0) -> torch.Tensor:
    """The starting noise (C, F, h, w) of clip ``index`` of a generation seeded ``seed`` (independent of batching).

    ``frame_share`` is the fraction of each element's variance that all F frames share: the noise is
    ``sqrt(s) * shared + sqrt(1 - s) * own`` with ``shared`` (C, 1, h, w) drawn once per clip, so every element stays
    N(0, 1) and two frames' noises correlate by ``s`` (the "mixed" video noise prior of PYoCo, Ge et al. 2023).
    0 is the paper's independent noise; the shared part is drawn after the independent one, so ``s = 0`` gives
    exactly the noise it always gave.

    ``share_cutoff`` > 0 shares only the fine detail: the spatial frequencies above ``share_cutoff`` (a radius, as a
    fraction of the Nyquist frequency) are mixed as above, the coarser ones stay each frame's own.  The two bands
    are complementary projections of white noise, so every element is still exactly N(0, 1); two frames correlate
    by ``s`` times the share of frequencies above the cutoff.  Why: on the stand-ins the class lives in a fine
    texture, and independent noise lets each frame draw its own; the coarse layout should follow the blurry video,
    which whole-noise sharing overrides (``benchmarks/probe_frame_noise.py``).
    """
    if not 0.0 <= float(frame_share) <= 1.0:
        raise ValueError(f"frame_share: expected a fraction of the noise variance in [0, 1], found {frame_share!r}")
    if not 0.0 <= float(share_cutoff) < 1.0:
        raise ValueError(f"share_cutoff: expected a spatial frequency in [0, 1) as a fraction of Nyquist (0: share "
                         f"every frequency), found {share_cutoff!r}")
    generator = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, index]).generate_state(1)[0]))
    own = torch.randn(shape, generator=generator)
    if frame_share == 0:
        return own
    shared = torch.randn((shape[0], 1, *shape[2:]), generator=generator)
    mixed = math.sqrt(frame_share) * shared + math.sqrt(1.0 - frame_share) * own
    if share_cutoff == 0:
        return mixed
    high = high_frequency_mask(shape[-2], shape[-1], share_cutoff)
    return torch.fft.irfft2(torch.fft.rfft2(own) * (1 - high) + torch.fft.rfft2(mixed) * high, s=shape[-2:])


def high_frequency_mask(h: int, w: int, cutoff: float) -> torch.Tensor:
    """float (h, w // 2 + 1): 1 where the radial spatial frequency of ``torch.fft.rfft2``'s bins exceeds ``cutoff``
    (a fraction of Nyquist), else 0.  Symmetric under negating the frequency, so it keeps a real signal real."""
    fy = torch.fft.fftfreq(h).abs()[:, None] / 0.5
    fx = torch.fft.rfftfreq(w)[None, :] / 0.5
    return ((fy ** 2 + fx ** 2).sqrt() > cutoff).float()


@torch.no_grad()
def generate_videos(parts: VideoParts, captions: list[str], keyframes: torch.Tensor | None = None,
                    steps: int = 25, guidance_scale: float = 7.5, seed: int = 0, batch: int = 8) -> torch.Tensor:
    """Videos (B, F, 3, S, S) in [0, 1] from captions (and keyframes (B, 3, S, S) held at frame 0), ``batch``
    clips at a time, clip ``i`` starting from :func:`clip_noise` ``(seed, i)``."""
    unet = parts.t2v["unet"]
    shape = (unet.config.in_channels, NUM_FRAMES, unet.config.sample_size, unet.config.sample_size)
    out = []
    for a in range(0, len(captions), batch):
        z = min(a + batch, len(captions))
        noise = torch.stack([clip_noise(seed, i, shape) for i in range(a, z)])
        latents = denoise_videos(parts, captions[a:z], None if keyframes is None else keyframes[a:z],
                                 latents=noise, steps=steps, guidance_scale=guidance_scale)
        frames = decode_scaled(parts.vae, latents.transpose(1, 2).flatten(0, 1)).cpu()     # (b * F, 3, S, S)
        out.append(frames.unflatten(0, (z - a, NUM_FRAMES)))
    return torch.cat(out)


def blurred_clips(clips: torch.Tensor, size: int = BLURRY_SIZE) -> torch.Tensor:
    """Clips (B, F, 3, S, S) in [0, 1] through a ``size`` x ``size`` bottleneck (area down, bilinear up): what a
    Perception Reconstructor gives, layout, colour and motion without detail, for evaluating alpha guidance."""
    b, f = clips.shape[:2]
    small = F.interpolate(clips.flatten(0, 1), size=(size, size), mode="area")
    return F.interpolate(small, size=clips.shape[-2:], mode="bilinear", align_corners=False).clamp(0, 1).unflatten(
        0, (b, f))


@torch.no_grad()
def alpha_guided_videos(parts: VideoParts, captions: list[str], keyframes: torch.Tensor, blurry: torch.Tensor,
                        theta: float = ALPHA_THETA, steps: int = ALPHA_STEPS, guidance_scale: float = 7.5,
                        seed: int = 0, batch: int = 8) -> torch.Tensor:
    """NeuroClips' generation in full: videos (B, F, 3, S, S) from the blurry clips (B, F, 3, S, S) noised by Eq. 5
    (alpha), the keyframes (B, 3, S, S) through the SparseCtrl (beta) and the captions (gamma); clip ``i``'s noise
    is :func:`clip_noise` ``(seed, i)``.  (:class:`~neuroclips_core.pipelines.video.NeuroClipsVideoPipeline` is the
    same chain with its input checks and options; this is the recipe's evaluation, on tensors.)"""
    from ...pipelines.alpha_guidance import alpha_noising, alpha_start_latents

    noising = alpha_noising(theta, parts.t2v["scheduler"], steps)
    out = []
    for a in range(0, len(captions), batch):
        z = video_latents(parts.vae, blurry[a:a + batch])
        eps = torch.stack([clip_noise(seed, i, tuple(z.shape[1:])) for i in range(a, a + len(z))])
        latents = denoise_videos(parts, captions[a:a + batch], keyframes[a:a + batch],
                                 latents=alpha_start_latents(z, eps, noising), steps=steps,
                                 guidance_scale=guidance_scale)
        frames = decode_scaled(parts.vae, latents.transpose(1, 2).flatten(0, 1)).cpu()
        out.append(frames.unflatten(0, (len(z), latents.shape[2])))
    return torch.cat(out)


@torch.no_grad()
def heldout_denoising_loss(parts: VideoParts, clips: torch.Tensor, captions: list[str], *, seed: int = 0,
                           offset_noise: float = 0.0, with_keyframe: bool = False, batch: int = 8) -> float:
    """Mean squared error of the predicted noise (for a ``v_prediction`` UNet: the noise its output implies,
    :func:`predicted_noise`) on clips (N, F, 3, S, S), timesteps spread evenly over the
    schedule (clip ``i`` at ``t = 999 i / (N - 1)``), noise from ``seed`` (with the training's offset noise):
    the training objective on held-out clips, without sampling.

    ``with_keyframe`` gives the UNet the SparseCtrl's residuals for each clip's own frame 0.
    """
    unet, scheduler = parts.t2v["unet"], parts.t2v["scheduler"]
    n = len(clips)
    timesteps = torch.linspace(0, scheduler.config.num_train_timesteps - 1, n).round().long()
    g = torch.Generator().manual_seed(seed)
    total, count = 0.0, 0
    for a in range(0, n, batch):
        x0 = video_latents(parts.vae, clips[a:a + batch]).to(unet.device, unet.dtype)
        noise = torch.randn(x0.shape, generator=g)
        noise = (noise + offset_noise * torch.randn(x0.shape[:2] + (1, 1, 1), generator=g)).to(x0)
        t = timesteps[a:a + batch].to(unet.device)
        x_t = scheduler.add_noise(x0, noise, t)
        text = per_frame(encode_captions(parts.t2v["text_encoder"], parts.t2v["tokenizer"], captions[a:a + batch]),
                         x0.shape[2]).to(unet.dtype)
        residuals = {}
        if with_keyframe:
            cond, mask = keyframe_condition(x0[:, :, 0], x0.shape[2])
            down, mid = parts.controlnet(x_t, t, encoder_hidden_states=text, controlnet_cond=cond,
                                         conditioning_mask=mask, return_dict=False)
            residuals = dict(down_block_additional_residuals=down, mid_block_additional_residual=mid)
        pred = predicted_noise(scheduler, unet(x_t, t, encoder_hidden_states=text, **residuals).sample, x_t, t)
        total += float(F.mse_loss(pred.float(), noise.float(), reduction="sum"))
        count += pred.numel()
    return total / count


@torch.no_grad()
def keyframe_effect_by_timestep(parts: VideoParts, clips: torch.Tensor, captions: list[str],
                                timesteps: tuple[int, ...] = (961, 801, 601, 401, 201, 41), *,
                                seed: int = 0) -> list[dict]:
    """Where along the schedule the SparseCtrl's keyframe reaches the video: the error of the UNet's clean-latent
    estimate ``x0_hat`` at each timestep, with no keyframe, the clip's own frame 0 and another clip's (a cyclic
    shift), on frame 0 and on the later frames.

    Args:
        parts: t2v parts, VAE and the SparseCtrl (``parts.controlnet``).
        clips: (N, F, 3, S, S) in [0, 1], N >= 2 (the "other" keyframe is the previous clip's); one batch.
        captions: N prompts.
        timesteps: training timesteps to probe (the default spans the schedule; 801 .. 1 are the sim's 5-step chain).
        seed: the noise, shared by every condition and timestep.

    Returns:
        one dict per timestep: ``{"t", "none_frame0", "none_later", "own_frame0", "own_later", "other_frame0",
        "other_later"}``, each a mean squared error of ``x0_hat`` per latent value.  ``own`` below ``none`` is what
        the keyframe adds; ``other`` above ``none`` says the residuals carry this keyframe, not a generic push.

    Why the clean latents: at high noise the noise-prediction error hardly depends on them (the held-out loss of
    the stamp moves in the fourth decimal), while the clean-latent error is what a sampler's next step follows.
    """
    if len(clips) < 2 or len(captions) != len(clips):
        raise ValueError(f"keyframe_effect_by_timestep: expected >= 2 clips and one caption each, found "
                         f"{len(clips)} clips and {len(captions)} captions")
    if parts.controlnet is None:
        raise ValueError("keyframe_effect_by_timestep: parts.controlnet is None; load the SparseCtrl")
    unet, scheduler = parts.t2v["unet"], parts.t2v["scheduler"]
    x0 = video_latents(parts.vae, clips).to(unet.device, unet.dtype)
    text = per_frame(encode_captions(parts.t2v["text_encoder"], parts.t2v["tokenizer"], captions),
                     x0.shape[2]).to(unet.dtype)
    cond, mask = keyframe_condition(x0[:, :, 0], x0.shape[2])
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed)).to(x0)
    rows = []
    for step in timesteps:
        t = torch.full((len(x0),), int(step), device=x0.device)
        x_t = scheduler.add_noise(x0, noise, t)
        row = {"t": int(step)}
        for name, keyframe in (("none", None), ("own", cond), ("other", cond.roll(1, 0))):
            residuals = {}
            if keyframe is not None:
                down, mid = parts.controlnet(x_t, t, encoder_hidden_states=text, controlnet_cond=keyframe,
                                             conditioning_mask=mask, return_dict=False)
                residuals = dict(down_block_additional_residuals=down, mid_block_additional_residual=mid)
            x0_hat = clean_latent_estimate(scheduler, unet(x_t, t, encoder_hidden_states=text, **residuals).sample,
                                           x_t, t)
            error = (x0_hat - x0.float()).pow(2).mean((0, 1, 3, 4))                  # (F,)
            row[f"{name}_frame0"], row[f"{name}_later"] = float(error[0]), float(error[1:].mean())
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------------ recipes
class _VideoRecipe(Recipe):
    """What both video recipes share: the frozen VAE (held on the recipe, not trained, not checkpointed)."""

    def uses(self) -> tuple[str, ...]:
        return ("vae",)

    @functools.cached_property
    def vae(self):
        self.require(*self.uses())
        vae = load_role("vae", self.role_folder("vae"), device=self.device, dtype=torch.float32)
        return vae.requires_grad_(False)

    @functools.cached_property
    def scheduler(self):
        return animatediff_scheduler(self.prediction_type)

    @functools.cached_property
    def loss_weights(self) -> torch.Tensor:
        return timestep_weights(self.scheduler, self.config.high_noise_weight)

    def _heldout(self):
        return corpus.heldout_clips(self.seed, self.config.eval_size, IMAGE_SIZE, chunk=max(1, self.config.eval_size))

    def _generate(self, parts: VideoParts, captions, keyframes=None) -> torch.Tensor:
        c = self.config
        return generate_videos(parts, captions, keyframes, steps=c.eval_steps, guidance_scale=c.guidance_scale,
                               seed=self.seed, batch=c.eval_batch)


class TextToVideo(torch.nn.Module):
    """The trained pair: ``unet`` (UNetMotionModel) and ``text_encoder`` (CLIPTextModel)."""

    def __init__(self, unet, text_encoder):
        super().__init__()
        self.unet, self.text_encoder = unet, text_encoder


class T2vRecipe(_VideoRecipe):
    """AnimateDiff in small: ``UNetMotionModel`` (latents (B, 4, 16, 16, 16), text (B * 16, 77, 64)) +
    ``CLIPTextModel`` + CLIP BPE tokenizer + AnimateDiff's DDIM scheduler."""

    role = "t2v"
    config_class = T2vConfig
    def uses(self) -> tuple[str, ...]:
        return ("vae", "clip")

    @staticmethod
    def full_config() -> T2vConfig:
        return T2vConfig(steps=2400, batch=2, lr=5e-4, warmup=100, weight_decay=0.01, keyframe_steps=1200,
                         keyframe_batch=32, eval_size=48, high_noise_weight=1000.0, prediction_type="v_prediction")

    @staticmethod
    def quick_config() -> T2vConfig:
        return T2vConfig(steps=4, batch=1, lr=5e-4, warmup=2, weight_decay=0.01, keyframe_steps=2, keyframe_batch=4,
                         eval_size=2, eval_steps=2, eval_batch=2, prediction_type="v_prediction")

    @functools.cached_property
    def tokenizer(self):
        return clip_tokenizer(CONTEXT)

    @functools.cached_property
    def null_ids(self) -> torch.Tensor:
        return tokenize(self.tokenizer, [""])[0]

    def build(self):
        from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel
        from diffusers.utils import logging as diffusers_logging
        from transformers import CLIPTextModel

        self.require(*self.uses())
        c = self.config
        clip = load_role("clip", self.role_folder("clip"), dtype=torch.float32)
        text_config = text_encoder_config(clip.model_cfg["text_cfg"])
        with _seeded(self.seed):
            unet2d = UNet2DConditionModel(**t2v_unet_config(c, text_config.hidden_size))
            adapter = MotionAdapter(**motion_adapter_config(c))
            text_encoder = CLIPTextModel(text_config)
        open_clip_text_to_hf(clip.model, text_encoder)
        level = diffusers_logging.get_verbosity()
        diffusers_logging.set_verbosity_error()      # from_unet2d's harmless fp32-modules warning (ecosystem.md)
        try:
            unet = UNetMotionModel.from_unet2d(unet2d, adapter)
        finally:
            diffusers_logging.set_verbosity(level)
        return TextToVideo(unet, text_encoder)

    @property
    def prediction_type(self) -> str:
        return self.config.prediction_type

    def lr_scale(self, name, param) -> float:
        return self.config.text_lr_scale if name.startswith("text_encoder.") else 1.0

    def loss(self, model, step, generator):
        c = self.config
        if step < c.keyframe_steps:      # image phase: keyframes as one-frame clips
            b = corpus.keyframe_batch(self.seed, step, c.keyframe_batch, "train", IMAGE_SIZE)
            pixels, captions = b.images[:, None], b.captions
        else:
            b = corpus.clip_batch(self.seed, step, c.batch, "train", IMAGE_SIZE)
            pixels, captions = b.clips, b.captions
        device = next(model.parameters()).device
        with torch.no_grad():
            x0 = video_latents(self.vae, pixels, generator).to(device)
        ids = drop_condition(tokenize(self.tokenizer, captions), self.null_ids, c.caption_dropout, generator)
        text = model.text_encoder(ids.to(device)).last_hidden_state
        x_t, t, target = offset_noised(self.scheduler, x0, generator, c.offset_noise, c.timestep_power)
        pred = model.unet(x_t, t, encoder_hidden_states=per_frame(text, x0.shape[2])).sample
        return weighted_mse(pred, target, t, self.loss_weights), {"frames": float(x0.shape[2])}

    def export(self, model):
        dtype = self.config.save_dtype
        return dict(unet=export_copy(model.unet, dtype), text_encoder=export_copy(model.text_encoder, dtype),
                    tokenizer=self.tokenizer, scheduler=animatediff_scheduler(self.config.prediction_type))

    def evaluate(self, loaded) -> dict:
        h = self._heldout()
        parts = VideoParts(loaded, self.vae)
        videos = self._generate(parts, h.captions)
        loss = functools.partial(heldout_denoising_loss, parts, h.clips, seed=self.seed,
                                 offset_noise=self.config.offset_noise, batch=self.config.eval_batch)
        # the same noise with the empty caption: how much the caption helps the denoising (0: text unused)
        metrics = {"heldout_loss": loss(h.captions), "heldout_loss_empty_caption": loss([""] * len(h.captions))}
        metrics.update({f"direction_{k}": v for k, v in motion_direction_agreement(videos, h.velocity).items()})
        metrics["direction_chance"] = 0.5
        metrics.update(_classifier_top1(self.out, videos, h.labels))
        metrics["n_eval"] = len(h.captions)
        return metrics


class SparseCtrlRecipe(_VideoRecipe):
    """RGB ``SparseControlNetModel``: keyframe latent at frame 0 (B, 4, 16, 16, 16) + mask (B, 1, 16, 16, 16),
    text (B * 16, 77, 64) -> residuals for the frozen t2v UNet."""

    role = "sparsectrl"
    config_class = SparseCtrlConfig
    def uses(self) -> tuple[str, ...]:
        return ("vae", "t2v")

    @staticmethod
    def full_config() -> SparseCtrlConfig:
        return SparseCtrlConfig(steps=3600, batch=2, lr=5e-4, warmup=50, weight_decay=0.01, eval_size=48,
                                high_noise_weight=1000.0, timestep_power=3.0)

    @staticmethod
    def quick_config() -> SparseCtrlConfig:
        return SparseCtrlConfig(steps=3, batch=1, lr=3e-4, warmup=2, weight_decay=0.01, eval_size=2, eval_steps=2,
                                eval_batch=2)

    @functools.cached_property
    def t2v(self) -> dict:
        """The trained t2v parts, float32, frozen."""
        self.require(*self.uses())
        parts = load_role("t2v", self.role_folder("t2v"), device=self.device, dtype=torch.float32)
        for name in ("unet", "text_encoder"):
            parts[name].requires_grad_(False)
        return parts

    @property
    def prediction_type(self) -> str:
        """The frozen t2v UNet's output, which the SparseCtrl's residuals are trained through."""
        return self.t2v["scheduler"].config.prediction_type

    @functools.cached_property
    def null_ids(self) -> torch.Tensor:
        return tokenize(self.t2v["tokenizer"], [""])[0]

    def build(self):
        from diffusers import SparseControlNetModel

        unet = self.t2v["unet"]
        with _seeded(self.seed):
            controlnet = SparseControlNetModel(**sparsectrl_config(unet))
        if self.config.init_from_t2v:
            init_controlnet_from_unet(controlnet, unet)
        if self.config.condition_from_conv_in:
            init_condition_embedding_from_conv_in(controlnet, unet)
        return controlnet

    def loss(self, model, step, generator):
        c = self.config
        unet, text_encoder = self.t2v["unet"], self.t2v["text_encoder"]
        b = corpus.clip_batch(self.seed, step, c.batch, "train", IMAGE_SIZE)
        device = model.device
        with torch.no_grad():
            x0 = video_latents(self.vae, b.clips, generator).to(device)
        ids = drop_condition(tokenize(self.t2v["tokenizer"], b.captions), self.null_ids, c.caption_dropout, generator)
        with torch.no_grad():
            text = per_frame(text_encoder(ids.to(device)).last_hidden_state, x0.shape[2])
        cond, mask = keyframe_condition(x0[:, :, 0], x0.shape[2])
        x_t, t, target = offset_noised(self.scheduler, x0, generator, c.offset_noise, c.timestep_power)
        down, mid = model(x_t, t, encoder_hidden_states=text, controlnet_cond=cond, conditioning_mask=mask,
                          return_dict=False)
        pred = unet(x_t, t, encoder_hidden_states=text, down_block_additional_residuals=down,
                    mid_block_additional_residual=mid).sample
        return weighted_mse(pred, target, t, self.loss_weights), {}

    def export(self, model):
        return export_copy(model, self.config.save_dtype)

    def evaluate(self, loaded) -> dict:
        h = self._heldout()
        keyframes = h.clips[:, 0]
        parts = VideoParts(self.t2v, self.vae, loaded)
        loss = functools.partial(heldout_denoising_loss, parts, h.clips, h.captions, seed=self.seed,
                                 offset_noise=self.config.offset_noise, batch=self.config.eval_batch)
        # the noise prediction with the keyframe's residuals beside the t2v UNet's alone: what SparseCtrl adds
        metrics = {"heldout_loss": loss(with_keyframe=True), "heldout_loss_t2v_alone": loss(with_keyframe=False)}
        videos = self._generate(parts, h.captions, keyframes)
        metrics.update({"ssim_frame0": float(ssim(videos[:, 0], keyframes).mean()),
                   # another held-out keyframe: what frame 0 scores by chance
                   "ssim_frame0_unrelated": float(ssim(videos[:, 0], keyframes.roll(1, 0)).mean())})
        metrics["ssim_frame0_margin"] = metrics["ssim_frame0"] - metrics["ssim_frame0_unrelated"]
        later, truth = videos[:, 1:].flatten(0, 1), h.clips[:, 1:].flatten(0, 1)
        frozen = keyframes[:, None].expand_as(h.clips[:, 1:]).flatten(0, 1)
        metrics["ssim_later"] = float(ssim(later, truth).mean())
        # the keyframe held still for the whole clip: what later frames score without any motion
        metrics["ssim_later_frozen_keyframe"] = float(ssim(frozen, truth).mean())
        metrics.update({f"direction_{k}": v for k, v in motion_direction_agreement(videos, h.velocity).items()})
        metrics["direction_chance"] = 0.5
        metrics.update(_classifier_top1(self.out, videos, h.labels))
        # as NeuroClips uses it: the chain starts from a blurry clip by Eq. 5 (theta 0.3, 10 steps), the keyframe at
        # frame 0; does the video keep the blurry clip's motion?  (The blurry clip's own agreement beside it.)
        blurry = blurred_clips(h.clips)
        guided = alpha_guided_videos(parts, h.captions, keyframes, blurry, guidance_scale=self.config.guidance_scale,
                                     seed=self.seed, batch=self.config.eval_batch)
        agree = motion_direction_agreement(guided, h.velocity)
        metrics.update({f"alpha_direction_{k}": v for k, v in agree.items()})
        metrics["alpha_direction_blurry_clip"] = motion_direction_agreement(blurry, h.velocity)["agreement"]
        metrics["alpha_ssim_frame0_margin"] = float(ssim(guided[:, 0], keyframes).mean()
                                                    - ssim(guided[:, 0], keyframes.roll(1, 0)).mean())
        metrics["n_eval"] = len(h.captions)
        return metrics


def _classifier_top1(out: Path, videos: torch.Tensor, labels: torch.Tensor) -> dict:
    """Frame-classifier top-1 of every generated frame against its clip's class (None without a classifier)."""
    folder = out / "frame_classifier"
    if not (folder / "config.json").is_file():
        return {"classifier_top1_frames": None}
    classifier = load_role("frame_classifier", folder, dtype=torch.float32)
    frames = videos.flatten(0, 1)
    pred = predict_frames(classifier, frames).view(videos.shape[:2])
    return {"classifier_top1_frames": float((pred == labels[:, None]).float().mean()),
            "classifier_chance": 1 / N_CLASSES}
