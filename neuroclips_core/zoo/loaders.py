"""One loader and one saver per role, for the real weights (paper profile) and the stand-ins (sim profile) alike.

``load_role(role, folder)`` checks the folder's layout (:func:`~neuroclips_core.zoo.weights.check_role_folder`),
reads it with the library's own offline loader (``local_files_only=True``; nothing here downloads) and returns
the objects below in eval mode on ``device``.  ``save_role(role, objects, folder)`` writes exactly the layout
``load_role`` reads, in the library's own format, atomically (a temporary sibling folder renamed at the end).

======================  ==================================================================================
role                    ``load_role`` returns
======================  ==================================================================================
``vae``                 ``AutoencoderKL``
``clip``                :class:`OpenClip` ``(model, tokenizer, preprocess_cfg, model_cfg)``
``unclip``              :class:`UnClip` ``(unet, scheduler)``; a diffusers folder or an sgm checkpoint
``captioner``           :class:`Captioner` ``(model, processor)``: BLIP-2 + ``Blip2Processor``
``t2v``                 ``dict(unet=UNetMotionModel, text_encoder, tokenizer, scheduler[, vae])``
``sparsectrl``          ``SparseControlNetModel`` (RGB layout, checked)
``frame_classifier``    :class:`Classifier` ``(model, processor)``: ViT + ``ViTImageProcessor``
``video_classifier``    :class:`Classifier` ``(model, processor)``: VideoMAE + ``VideoMAEImageProcessor``
======================  ==================================================================================
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, NamedTuple

import torch

from .weights import SGM_LAYOUT, SGM_SUFFIXES, WeightsError, check_role_folder, get_role_or_error, role_help, \
    split_role_path


class OpenClip(NamedTuple):
    """An OpenCLIP model with what it needs around it.

    ``model.visual.output_tokens`` is True, so ``pooled, tokens = model.encode_image(images)`` with images
    (B, 3, S, S) normalised by ``preprocess_cfg`` gives ``pooled`` (B, embed_dim) and ``tokens``
    (B, (S/patch)^2, vision width): the patch tokens after ``ln_post``, unprojected, CLS excluded.  For
    ViT-bigG/14 at 224 px that is (B, 1280) and (B, 256, 1664), MindEye2's and NeuroClips' target.  (Because of
    the tuple, call ``encode_image(x, normalize=False)`` and normalise ``pooled`` yourself.)
    ``tokenizer(texts)`` -> (B, context_length) int64; ``model.encode_text`` -> (B, embed_dim).
    """

    model: Any
    tokenizer: Any
    preprocess_cfg: dict     # size, mean, std, interpolation, resize_mode, ... (open_clip PreprocessCfg fields)
    model_cfg: dict          # the open_clip model config the model was built from


class UnClip(NamedTuple):
    """``unet(latents (B,4,h,w), t, encoder_hidden_states=clip tokens (B,T,C), class_labels=vector)``."""

    unet: Any
    scheduler: Any


class Captioner(NamedTuple):
    model: Any
    processor: Any


class Classifier(NamedTuple):
    model: Any
    processor: Any


def _json(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def load_scheduler(folder: Path):
    """A diffusers scheduler from ``folder/scheduler_config.json`` (its ``_class_name``)."""
    import diffusers

    cfg = _json(folder / "scheduler_config.json")
    name = cfg.get("_class_name")
    cls = getattr(diffusers, str(name), None)
    if cls is None or not issubclass(cls, diffusers.SchedulerMixin):
        raise WeightsError(f"{folder / 'scheduler_config.json'}: _class_name {name!r} is not a diffusers scheduler")
    return cls.from_config(cfg)


# ------------------------------------------------------------------------------------------------ loaders
def _load_vae(folder: Path, layout, dtype):
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_pretrained(folder, local_files_only=True, torch_dtype=dtype)


def _load_clip(folder: Path, layout, dtype):
    import open_clip

    cfg = _json(folder / "open_clip_config.json")
    model_cfg = cfg.get("model_cfg")
    if not isinstance(model_cfg, dict):
        raise WeightsError(f"clip: {folder / 'open_clip_config.json'} has no 'model_cfg' mapping; expected "
                           f"{{'model_cfg': {{...}}, 'preprocess_cfg': {{...}}}} as on the HF hub.\n"
                           f"{role_help('clip')}")
    if "hf_model_name" in model_cfg.get("text_cfg", {}):   # its text tower would be fetched from the hub
        raise WeightsError(f"clip: {folder} uses a Hugging Face text tower "
                           f"({model_cfg['text_cfg']['hf_model_name']}), which cannot be built offline; use an "
                           f"OpenCLIP model with its own text transformer (such as ViT-bigG-14).")
    # open_clip's own local-folder route: reads open_clip_config.json, finds the weights file by its
    # preferred names (open_clip_model.safetensors first) and loads it strictly.
    model = open_clip.create_model(f"local-dir:{folder}", device="cpu", weights_only=True)
    tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")
    if dtype is not None:
        model = model.to(dtype)
    model.visual.output_tokens = True
    return OpenClip(model, tokenizer, dict(open_clip.get_model_preprocess_cfg(model)), model_cfg)


def _find_sgm_checkpoint(path: Path) -> Path:
    folder, ckpt = split_role_path("unclip", path)
    if ckpt is not None:
        return ckpt
    found = sorted(p for p in folder.iterdir() if p.suffix in SGM_SUFFIXES)
    if len(found) != 1:
        names = ", ".join(p.name for p in found) or "none"
        raise WeightsError(f"unclip: {folder} holds {len(found)} checkpoint files ({names}); expected exactly one. "
                           f"Point the 'unclip' entry of weights.yml at the file itself.\n{role_help('unclip')}")
    return found[0]


def load_sgm_unet(ckpt: Path, config: dict, dtype=None):
    """A ``UNet2DConditionModel`` built from ``config`` with the converted weights of the sgm checkpoint ``ckpt``.

    The model is built on the meta device and the tensors assigned, so a 2.5 B-parameter UNet is never
    allocated twice (nor randomly initialised).
    """
    from diffusers import UNet2DConditionModel

    from .sgm_unclip import read_checkpoint, sgm_to_diffusers

    state = sgm_to_diffusers(read_checkpoint(ckpt), config)
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(config)
    expected = set(unet.state_dict())
    missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or extra:
        raise WeightsError(f"unclip: {ckpt} does not fit unet_config.json: {len(missing)} missing UNet key(s) "
                           f"(e.g. {', '.join(missing[:4]) or '-'}), {len(extra)} unexpected (e.g. "
                           f"{', '.join(extra[:4]) or '-'}). Check the config against the checkpoint.")
    target = dtype or torch.float32
    unet.load_state_dict({k: v.to(target) for k, v in state.items()}, strict=True, assign=True)
    still_meta = [n for n, t in (*unet.named_parameters(), *unet.named_buffers()) if t.is_meta]
    if still_meta:
        raise WeightsError(f"unclip: {ckpt}: these tensors were not set by the checkpoint: {still_meta[:4]}")
    return unet


def _load_unclip(folder: Path, layout, dtype):
    from diffusers import UNet2DConditionModel

    if layout.name == SGM_LAYOUT:
        ckpt = _find_sgm_checkpoint(folder)
        unet = load_sgm_unet(ckpt, _json(ckpt.parent / "unet_config.json"), dtype)
        return UnClip(unet, load_scheduler(ckpt.parent))
    unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", local_files_only=True, torch_dtype=dtype)
    return UnClip(unet, load_scheduler(folder / "scheduler"))


def _load_captioner(folder: Path, layout, dtype):
    from transformers import Blip2ForConditionalGeneration, Blip2Processor

    model = Blip2ForConditionalGeneration.from_pretrained(folder, local_files_only=True, dtype=dtype)
    return Captioner(model, Blip2Processor.from_pretrained(folder, local_files_only=True))


def _load_t2v(folder: Path, layout, dtype):
    from diffusers import AutoencoderKL, MotionAdapter, UNet2DConditionModel, UNetMotionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    unet_class = _json(folder / "unet" / "config.json").get("_class_name")
    if unet_class == "UNetMotionModel":
        unet = UNetMotionModel.from_pretrained(folder, subfolder="unet", local_files_only=True, torch_dtype=dtype)
    elif not (folder / "motion_adapter").is_dir():
        raise WeightsError(f"t2v: {folder / 'unet'} holds a {unet_class}, which needs the AnimateDiff motion "
                           f"adapter in {folder / 'motion_adapter'}, but that folder is missing.\n{role_help('t2v')}")
    else:
        unet2d = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", local_files_only=True)
        adapter = MotionAdapter.from_pretrained(folder, subfolder="motion_adapter", local_files_only=True)
        unet = UNetMotionModel.from_unet2d(unet2d, adapter)   # inflates the 2D UNet, loads the motion modules
        unet = unet.to(dtype) if dtype is not None else unet
    text_encoder = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder", local_files_only=True, dtype=dtype)
    tokenizer = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer", local_files_only=True)
    # tokenizers rebuilt from raw vocab/merges files report model_max_length ~1e30, and diffusers pipelines
    # pad to it: cap it at the text encoder's context (77 for CLIP)
    tokenizer.model_max_length = min(tokenizer.model_max_length, text_encoder.config.max_position_embeddings)
    out = dict(unet=unet, text_encoder=text_encoder, tokenizer=tokenizer,
               scheduler=load_scheduler(folder / "scheduler"))
    if (folder / "vae" / "config.json").is_file():   # RealisticVision ships its own VAE, used by the video stage
        out["vae"] = AutoencoderKL.from_pretrained(folder, subfolder="vae", local_files_only=True, torch_dtype=dtype)
    return out


#: the SparseCtrl variant NeuroClips uses: the keyframe's VAE latent (4 channels) plus a mask channel
SPARSECTRL_RGB = {"conditioning_channels": 4, "use_simplified_condition_embedding": True,
                  "concat_conditioning_mask": True}


def _load_sparsectrl(folder: Path, layout, dtype):
    from diffusers import SparseControlNetModel

    model = SparseControlNetModel.from_pretrained(folder, local_files_only=True, torch_dtype=dtype)
    wrong = {k: model.config.get(k) for k, v in SPARSECTRL_RGB.items() if model.config.get(k) != v}
    if wrong:
        raise WeightsError(f"sparsectrl: {folder} is not the RGB SparseCtrl: its config has {wrong}, expected "
                           f"{SPARSECTRL_RGB} (scribble SparseCtrl takes 3-channel images instead).\n"
                           f"{role_help('sparsectrl')}")
    return model


def _load_frame_classifier(folder: Path, layout, dtype):
    from transformers import ViTForImageClassification, ViTImageProcessor

    model = ViTForImageClassification.from_pretrained(folder, local_files_only=True, dtype=dtype)
    return Classifier(model, ViTImageProcessor.from_pretrained(folder, local_files_only=True))


def _load_video_classifier(folder: Path, layout, dtype):
    from transformers import VideoMAEForVideoClassification, VideoMAEImageProcessor

    model = VideoMAEForVideoClassification.from_pretrained(folder, local_files_only=True, dtype=dtype)
    return Classifier(model, VideoMAEImageProcessor.from_pretrained(folder, local_files_only=True))


_LOADERS = {"vae": _load_vae, "clip": _load_clip, "unclip": _load_unclip, "captioner": _load_captioner,
            "t2v": _load_t2v, "sparsectrl": _load_sparsectrl, "frame_classifier": _load_frame_classifier,
            "video_classifier": _load_video_classifier}


def _modules(objects) -> list[torch.nn.Module]:
    values = objects.values() if isinstance(objects, dict) else objects if isinstance(objects, tuple) else [objects]
    return [v for v in values if isinstance(v, torch.nn.Module)]


def load_role(role: str, folder: str | os.PathLike, device: str | torch.device = "cpu",
              dtype: torch.dtype | None = None):
    """Load ``role`` from the local ``folder`` (see the module table for what comes back).

    Args:
        role: one of :data:`~neuroclips_core.zoo.roles.ROLES`.
        folder: the role's folder (for ``unclip`` also the sgm checkpoint file itself).
        device: where the models go; they come back in eval mode.
        dtype: e.g. ``torch.float16``; None keeps the library default (float32).

    Raises:
        WeightsError: unknown role, missing folder or file, or a library error while reading it (the message
        names the role, the folder, the expected layout and where the weights come from).
    """
    get_role_or_error(role)
    layout = check_role_folder(role, folder)
    path = Path(folder).expanduser()
    try:
        objects = _LOADERS[role](path, layout, dtype)
    except WeightsError:
        raise
    except Exception as e:   # a library error: say which role and folder, keep the original as the cause
        raise WeightsError(f"{role}: reading {path} failed: {type(e).__name__}: {e}\n{role_help(role)}") from e
    for module in _modules(objects):
        module.to(device).eval()
    return objects


# ------------------------------------------------------------------------------------------------ savers
def _save_clip(objects, out: Path) -> None:
    from safetensors.torch import save_file

    bundle = OpenClip(*objects)
    (out / "open_clip_config.json").write_text(json.dumps(
        {"model_cfg": bundle.model_cfg, "preprocess_cfg": bundle.preprocess_cfg}, indent=2))
    state = {k: v.detach().cpu().contiguous() for k, v in bundle.model.state_dict().items()}
    save_file(state, str(out / "open_clip_model.safetensors"))


def _save_unclip(objects, out: Path) -> None:
    unet, scheduler = UnClip(*objects)
    unet.save_pretrained(out / "unet")
    scheduler.save_pretrained(out / "scheduler")


def _save_t2v(objects: dict, out: Path) -> None:
    """``objects``: unet (UNetMotionModel, or a UNet2DConditionModel with ``motion_adapter``), text_encoder,
    tokenizer, scheduler, optional vae; each goes to the subfolder of its name."""
    from diffusers import UNetMotionModel

    required = ["unet", "text_encoder", "tokenizer", "scheduler"]
    if not isinstance(objects["unet"], UNetMotionModel):
        required.append("motion_adapter")
    missing = [k for k in required if k not in objects]
    if missing:
        raise WeightsError(f"t2v: save_role needs the parts {required}; missing {missing}")
    for name, part in objects.items():
        if name not in (*required, "vae"):
            raise WeightsError(f"t2v: save_role got an unknown part {name!r}; expected {required} (+ vae)")
        part.save_pretrained(out / name)


def _save_pair(objects, out: Path) -> None:
    model, processor = objects
    model.save_pretrained(out)
    processor.save_pretrained(out)


_SAVERS = {"vae": lambda m, out: m.save_pretrained(out), "clip": _save_clip, "unclip": _save_unclip,
           "captioner": _save_pair, "t2v": _save_t2v, "sparsectrl": lambda m, out: m.save_pretrained(out),
           "frame_classifier": _save_pair, "video_classifier": _save_pair}


def save_role(role: str, objects, folder: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write ``objects`` (what :func:`load_role` returns for ``role``) to ``folder`` in the layout it reads.

    The folder is written as a temporary sibling, checked with ``check_role_folder`` and renamed into place,
    so a crash never leaves a half-written role.  An existing folder is replaced only with ``overwrite=True``.
    """
    get_role_or_error(role)
    folder = Path(folder).expanduser()
    if folder.exists() and not overwrite:
        raise WeightsError(f"{role}: {folder} already exists; pass overwrite=True to replace it.")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        _SAVERS[role](objects, tmp)
        check_role_folder(role, tmp)
        if folder.exists():
            old = folder.parent / f".{folder.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(folder, old)
            os.rename(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
