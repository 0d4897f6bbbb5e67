"""Stability sgm/LDM UNet checkpoints (MindEye2's SDXL unCLIP) <-> diffusers ``UNet2DConditionModel`` keys.

MindEye2's ``unclip6_epoch0_step110000.ckpt`` is an sgm ``DiffusionEngine`` checkpoint: the UNet lives under
``model.diffusion_model.*`` (``input_blocks``, ``middle_block``, ``output_blocks``, ``time_embed``,
``label_emb``, ``out``); the VAE (``first_stage_model.*``) and the conditioner (``conditioner.*``) sit beside it
and are not read here.  The UNet is SDXL-shaped (model_channels 320, channel_mult [1, 2, 4], transformer_depth
[1, 2, 10], no attention at the first level, 64-channel heads, linear transformer projections), cross-attends to
the (B, 256, 1664) OpenCLIP bigG image tokens and adds a 1024-d vector condition through ``label_emb``.

Scope of the conversion (the structure of diffusers' own ``convert_ldm_unet_checkpoint``, written afresh):
any ``UNet2DConditionModel`` with ``DownBlock2D``/``CrossAttnDownBlock2D`` and ``UpBlock2D``/
``CrossAttnUpBlock2D`` levels, ``UNetMidBlock2DCrossAttn``, per-level ``layers_per_block`` and
``transformer_layers_per_block``, linear or 1x1-conv transformer projections, and a ``label_emb`` read as
``class_embedding`` (``class_embed_type="projection"``, the unclip6 case: the vector goes in as
``class_labels``), ``add_embedding`` (``addition_embed_type="text_time"``, diffusers' SDXL text-to-image
convention) or a ``num_class_embeds`` table.  Key names inside resnets are renamed; inside transformers they
are the same in both libraries, so only the module prefix changes.  Both directions are built from one
module map, and a key the map does not cover is an error (never silently dropped).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from .weights import WeightsError

SGM_UNET_PREFIX = "model.diffusion_model."
CONFIG_DIR = Path(__file__).with_name("configs") / "unclip6"   # unet_config.json + scheduler_config.json

# resnet parameter names: sgm ResBlock -> diffusers ResnetBlock2D
_RESNET_RENAMES = (("in_layers.0", "norm1"), ("in_layers.2", "conv1"), ("emb_layers.1", "time_emb_proj"),
                   ("out_layers.0", "norm2"), ("out_layers.3", "conv2"), ("skip_connection", "conv_shortcut"))


def _per_level(value, n_levels: int) -> list[int]:
    return list(value) if isinstance(value, (list, tuple)) else [value] * n_levels


def module_map(config: dict) -> list[tuple[str, str, bool]]:
    """(sgm module prefix, diffusers module prefix, is_resnet) for every parameterised module of the UNet.

    ``config`` is the ``UNet2DConditionModel`` config (``unet.config`` or ``unet_config.json``).  The sgm
    numbering: ``input_blocks.0`` is conv_in; then per level ``layers_per_block`` blocks ``[resnet, transformer]``
    and, except at the last level, one downsampler ``.0.op``; ``output_blocks`` mirror that with one more
    resnet per level and the upsampler after the last block of the level (``.1.conv``, or ``.2.conv`` when the
    level has attention).
    """
    down, up = list(config["down_block_types"]), list(config["up_block_types"])
    n = len(config["block_out_channels"])
    for types, allowed in ((down, ("DownBlock2D", "CrossAttnDownBlock2D")), (up, ("UpBlock2D", "CrossAttnUpBlock2D"))):
        bad = [t for t in types if t not in allowed]
        if bad:
            raise WeightsError(f"sgm conversion supports the block types {allowed}, the UNet config has {bad}")
    if config.get("mid_block_type", "UNetMidBlock2DCrossAttn") != "UNetMidBlock2DCrossAttn":
        raise WeightsError(f"sgm conversion supports mid_block_type UNetMidBlock2DCrossAttn, the UNet config has "
                           f"{config['mid_block_type']!r}")
    layers = _per_level(config["layers_per_block"], n)
    m = [("time_embed.0", "time_embedding.linear_1", False), ("time_embed.2", "time_embedding.linear_2", False),
         ("input_blocks.0.0", "conv_in", False), ("out.0", "conv_norm_out", False), ("out.2", "conv_out", False)]
    label = ("class_embedding" if config.get("class_embed_type") == "projection"
             else "add_embedding" if config.get("addition_embed_type") == "text_time" else None)
    if label:
        m += [("label_emb.0.0", f"{label}.linear_1", False), ("label_emb.0.2", f"{label}.linear_2", False)]
    elif config.get("num_class_embeds"):
        m.append(("label_emb", "class_embedding", False))
    elif config.get("class_embed_type") or config.get("addition_embed_type"):
        raise WeightsError("sgm conversion supports class_embed_type 'projection', addition_embed_type 'text_time' "
                           f"or num_class_embeds; the UNet config has class_embed_type "
                           f"{config.get('class_embed_type')!r}, "
                           f"addition_embed_type {config.get('addition_embed_type')!r}")
    i = 1
    for level in range(n):
        attn = down[level].startswith("CrossAttn")
        for j in range(layers[level]):
            m.append((f"input_blocks.{i}.0", f"down_blocks.{level}.resnets.{j}", True))
            if attn:
                m.append((f"input_blocks.{i}.1", f"down_blocks.{level}.attentions.{j}", False))
            i += 1
        if level < n - 1:
            m.append((f"input_blocks.{i}.0.op", f"down_blocks.{level}.downsamplers.0.conv", False))
            i += 1
    m += [("middle_block.0", "mid_block.resnets.0", True), ("middle_block.1", "mid_block.attentions.0", False),
          ("middle_block.2", "mid_block.resnets.1", True)]
    o = 0
    for level, n_layers in enumerate(reversed(layers)):
        attn = up[level].startswith("CrossAttn")
        for j in range(n_layers + 1):
            m.append((f"output_blocks.{o}.0", f"up_blocks.{level}.resnets.{j}", True))
            if attn:
                m.append((f"output_blocks.{o}.1", f"up_blocks.{level}.attentions.{j}", False))
            if level < n - 1 and j == n_layers:
                m.append((f"output_blocks.{o}.{2 if attn else 1}.conv", f"up_blocks.{level}.upsamplers.0.conv", False))
            o += 1
    return m


def _rename_key(key: str, table: dict[str, tuple[str, bool]], resnet_renames) -> str | None:
    """Rename ``key`` through the longest module prefix of ``table`` that owns it; None if no prefix does."""
    parts = key.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:cut])
        if prefix in table:
            new_prefix, is_resnet = table[prefix]
            suffix = ".".join(parts[cut:])
            if is_resnet:
                for old, new in resnet_renames:
                    if suffix == old or suffix.startswith(old + "."):
                        suffix = new + suffix[len(old):]
                        break
                else:
                    return None
            return f"{new_prefix}.{suffix}"
    return None


def _convert(state_dict: dict, table: dict, resnet_renames, direction: str) -> dict:
    out, unknown = {}, []
    for key, value in state_dict.items():
        new = _rename_key(key, table, resnet_renames)
        if new is None:
            unknown.append(key)
        else:
            out[new] = value
    if unknown:
        raise WeightsError(f"{direction}: {len(unknown)} key(s) fit no module of the UNet config, e.g. "
                           f"{', '.join(sorted(unknown)[:5])}; the checkpoint and unet_config.json describe "
                           f"different UNets (check block types, layers_per_block, class/addition embedding).")
    return out


def sgm_to_diffusers(state_dict: dict, config: dict) -> dict:
    """``model.diffusion_model.*`` keys of an sgm checkpoint -> ``UNet2DConditionModel`` state-dict keys.

    Keys outside ``model.diffusion_model.`` (VAE, conditioner, EMA copies) are ignored; a UNet key the config
    does not explain raises :class:`WeightsError`.  Tensors are passed through unchanged (no copy).
    """
    unet = {k[len(SGM_UNET_PREFIX):]: v for k, v in state_dict.items() if k.startswith(SGM_UNET_PREFIX)}
    if not unet:
        raise WeightsError(f"no `{SGM_UNET_PREFIX}*` keys in the checkpoint (found e.g. "
                           f"{', '.join(list(state_dict)[:5]) or 'nothing'}); expected an sgm/LDM checkpoint such as "
                           f"MindEye2's unclip6_epoch0_step110000.ckpt.")
    table = {sgm: (diff, res) for sgm, diff, res in module_map(config)}
    return _convert(unet, table, _RESNET_RENAMES, "sgm -> diffusers")


def diffusers_to_sgm(state_dict: dict, config: dict) -> dict:
    """The inverse of :func:`sgm_to_diffusers`: a ``UNet2DConditionModel`` state dict in sgm layout."""
    table = {diff: (sgm, res) for sgm, diff, res in module_map(config)}
    inverse = tuple((new, old) for old, new in _RESNET_RENAMES)
    return {SGM_UNET_PREFIX + k: v for k, v in _convert(state_dict, table, inverse, "diffusers -> sgm").items()}


def read_checkpoint(path: str | Path) -> dict:
    """The tensors of an sgm ``.safetensors`` or ``.ckpt`` (Lightning ``{"state_dict": ...}`` or a bare dict).

    ``.ckpt`` files are read with ``torch.load(weights_only=True)``: tensors only, no code runs.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:    # pickled Python objects (optimizer state, callbacks): refuse rather than execute
        raise WeightsError(
            f"{path} could not be read as tensors only ({type(e).__name__}: {str(e)[:200]}). If you trust the file, "
            f"extract its UNet once: python -c \"import torch, safetensors.torch as s; d = torch.load('{path}', "
            f"weights_only=False, map_location='cpu'); d = d.get('state_dict', d); s.save_file({{k: v.contiguous() "
            f"for k, v in d.items() if k.startswith('{SGM_UNET_PREFIX}')}}, '{path.with_suffix('.safetensors')}')\" "
            f"and keep only the .safetensors beside unet_config.json.") from e
    return obj.get("state_dict", obj) if isinstance(obj, dict) else obj


def save_sgm_checkpoint(unet, path: str | Path) -> Path:
    """Write ``unet``'s weights as an sgm ``.safetensors``/``.ckpt`` plus ``unet_config.json`` beside it.

    Used by tests to make a small sgm checkpoint; the scheduler config is the caller's (``save_role`` writes
    one for the diffusers layout).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = diffusers_to_sgm({k: v.detach().cpu().contiguous() for k, v in unet.state_dict().items()}, dict(unet.config))
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(sd, str(path))
    else:
        torch.save({"state_dict": sd}, path)
    (path.parent / "unet_config.json").write_text(json.dumps(unet_config_json(unet), indent=2))
    return path


def unet_config_json(unet) -> dict:
    """The JSON-able config of a UNet (diffusers' own ``to_json_string`` filtering, with the class name)."""
    return json.loads(unet.to_json_string())


def sgm_vector_condition(original_size=(768, 768), crop_coords_top_left=(0, 0), dim: int = 256,
                         batch_size: int = 1) -> torch.Tensor:
    """The sgm vector condition (``label_emb`` input) of MindEye2's unclip6: (batch_size, 4 * dim).

    sgm's conditioner embeds each of the 4 numbers (original height, width, crop top, left) with a
    ``ConcatTimestepEmbedderND`` (sinusoidal ``[cos, sin]`` embedding of size ``dim``) and concatenates them:
    4 x 256 = 1024 = ``adm_in_channels``.  MindEye2 uses size (768, 768) and crop (0, 0).  Pass the result as
    ``class_labels`` to the converted ``UNet2DConditionModel`` (``class_embed_type="projection"``), cast to the
    UNet's dtype (the projection is a plain Linear layer).
    """
    values = torch.tensor([*original_size, *crop_coords_top_left], dtype=torch.float32)
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    args = values[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)      # (4, dim); sgm puts cos first
    return emb.reshape(1, -1).expand(batch_size, -1).clone()
