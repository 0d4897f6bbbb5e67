"""The model zoo's roles: what each pretrained model does, its library class, its folder layout and its source.

One table (:data:`ROLES`) drives three things, so they cannot drift apart:

- :func:`neuroclips_core.zoo.weights.check_role_folder` checks a folder against the role's layouts;
- every :class:`~neuroclips_core.zoo.weights.WeightsError` quotes the expected layout and where to get the weights;
- the README's "Weights for the paper profile" table is :func:`roles_markdown_table` (a test checks they agree).

A stand-in (``sim`` profile) uses the same library class as the real weights (``paper`` profile) and is saved in
the same layout, so one loader reads both (DESIGN.md §2).  Sources are those of the official NeuroClips code
(reference/neuroclips-official-code.md §4-6, §9).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Need:
    """One requirement of a layout: at least one of ``options`` must be present.

    Each option is a tuple of paths (relative to the role folder, ``*`` globs allowed) that must all exist,
    so ``Need((("tokenizer.json",), ("vocab.json", "merges.txt")))`` reads "tokenizer.json, or vocab.json +
    merges.txt".
    """

    options: tuple[tuple[str, ...], ...]

    def describe(self) -> str:
        return " or ".join(" + ".join(option) for option in self.options)


def need(*options: str | tuple[str, ...]) -> Need:
    """``need("a", ("b", "c"))`` -> a Need satisfied by ``a`` alone or by ``b`` and ``c`` together."""
    return Need(tuple((o,) if isinstance(o, str) else tuple(o) for o in options))


@dataclass(frozen=True)
class Layout:
    """A folder layout a role accepts (some roles accept two, e.g. diffusers folder or sgm checkpoint)."""

    name: str
    needs: tuple[Need, ...]

    def describe(self) -> str:
        return f"{self.name}: " + "; ".join(n.describe() for n in self.needs)

    def compact(self) -> str:
        """The same, grouped by subfolder, for the README: ``unet/ (config.json, a / b); scheduler/ (...)``."""
        groups: dict[str, list[str]] = {}
        for n in self.needs:
            paths = [p for option in n.options for p in option]
            tops = {p.split("/", 1)[0] if "/" in p else "" for p in paths}
            top = tops.pop() if len(tops) == 1 else ""
            strip = len(top) + 1 if top else 0
            groups.setdefault(top, []).append(" / ".join(" + ".join(p[strip:] for p in o) for o in n.options))
        return "; ".join(f"{top}/ ({', '.join(items)})" if top else ", ".join(items) for top, items in groups.items())


@dataclass(frozen=True)
class Role:
    """One role of the model zoo.

    Attributes:
        name: the key in ``weights.yml`` and the first argument of ``load_role``/``save_role``.
        description: what the model does in NeuroClips.
        classes: the library class(es) of both the real weights and the stand-in.
        layouts: accepted folder layouts; ``check_role_folder`` passes if any one is complete.
        paper_weights: the exact weights the paper/official code uses.
        source: where those weights are published (HF repo ids, file names, Civitai ids).
        how_to: a short recipe that turns the published files into one of ``layouts``.
        returns: what ``load_role`` returns for this role.
    """

    name: str
    description: str
    classes: tuple[str, ...]
    layouts: tuple[Layout, ...]
    paper_weights: str
    source: str
    how_to: str
    returns: str

    def describe_layouts(self) -> str:
        return " | ".join(layout.describe() for layout in self.layouts)


_DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
_HF_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def _sub(folder: str, names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"{folder}/{n}" for n in names)


def _diffusers_model(folder: str = "") -> tuple[Need, ...]:
    """config.json + diffusers weights, at the top level (``folder=""``) or in a subfolder."""
    prefix = f"{folder}/" if folder else ""
    return need(f"{prefix}config.json"), need(*(f"{prefix}{w}" for w in _DIFFUSERS_WEIGHTS))


def _clip_tokenizer(folder: str) -> Need:
    return need(f"{folder}/tokenizer.json", _sub(folder, ("vocab.json", "merges.txt")))


ROLES: dict[str, Role] = {r.name: r for r in (
    Role(
        name="vae",
        description="image autoencoder: Perception Reconstructor targets (latents) and blurry-video decoding",
        classes=("diffusers.AutoencoderKL",),
        layouts=(Layout("diffusers AutoencoderKL folder", _diffusers_model()),),
        paper_weights="SD-1.x VAE: MindEye2 `sd_image_var_autoenc.pth` (an SD-1.x AutoencoderKL)",
        source="HF dataset `pscotti/mindeyev2` file `sd_image_var_autoenc.pth`; "
               "or HF `stable-diffusion-v1-5/stable-diffusion-v1-5` subfolder `vae/`",
        how_to="use the `vae/` folder of SD 1.5 as is; or load `sd_image_var_autoenc.pth` into "
               "`AutoencoderKL(block_out_channels=[128,256,512,512], layers_per_block=2, "
               "4 x DownEncoderBlock2D / UpDecoderBlock2D, sample_size=256)` and `save_pretrained` it",
        returns="AutoencoderKL",
    ),
    Role(
        name="clip",
        description="OpenCLIP image/text encoder: 256 x 1664 image tokens are the Semantics Reconstructor targets",
        classes=("open_clip.model.CLIP",),
        layouts=(Layout("open_clip hub folder", (
            need("open_clip_config.json"),
            need("open_clip_model.safetensors", "open_clip_pytorch_model.bin"))),),
        paper_weights="OpenCLIP ViT-bigG/14 `laion2b_s39b_b160k`",
        source="HF `laion/CLIP-ViT-bigG-14-laion2B-39B-b160k` files `open_clip_config.json`, "
               "`open_clip_model.safetensors` (or `open_clip_pytorch_model.bin`)",
        how_to="download those two files of the HF repo into one folder (the repo's other files may stay)",
        returns="OpenClip(model, tokenizer, preprocess_cfg, model_cfg); model.visual.output_tokens=True, so "
                "`pooled, tokens = model.encode_image(x)` gives (B,1280) and (B,256,1664) for bigG",
    ),
    Role(
        name="unclip",
        description="unCLIP UNet that turns predicted CLIP image tokens into keyframes (cross-attention on tokens)",
        classes=("diffusers.UNet2DConditionModel", "diffusers scheduler"),
        layouts=(
            Layout("diffusers folder", (*_diffusers_model("unet"), need("scheduler/scheduler_config.json"))),
            # the checkpoint must stay the first need: weights.py skips it when given the file itself
            Layout("sgm checkpoint", (need("*.ckpt", "*.safetensors"), need("unet_config.json"),
                                      need("scheduler_config.json"))),
        ),
        paper_weights="MindEye2 SDXL unCLIP `unclip6_epoch0_step110000.ckpt` (sgm layout, `model.diffusion_model.*`)",
        source="HF dataset `pscotti/mindeyev2` file `unclip6_epoch0_step110000.ckpt`",
        how_to="put the .ckpt in a folder and copy `neuroclips_core/zoo/configs/unclip6/unet_config.json` and "
               "`scheduler_config.json` beside it; it is converted to diffusers keys at load time",
        returns="UnClip(unet, scheduler)",
    ),
    Role(
        name="captioner",
        description="BLIP-2 image captioner: keyframe captions for the text (gamma) guidance",
        classes=("transformers.Blip2ForConditionalGeneration", "transformers.Blip2Processor"),
        layouts=(Layout("transformers folder", (
            need("config.json"), need(*_HF_WEIGHTS),
            need("processor_config.json", "preprocessor_config.json"),
            need("tokenizer.json", ("vocab.json", "merges.txt")), need("tokenizer_config.json"))),),
        paper_weights="BLIP-2 OPT-2.7b (`Salesforce/blip2-opt-2.7b`, the official code pins revision 51572668)",
        source="HF `Salesforce/blip2-opt-2.7b`",
        how_to="download the HF repo (a revision whose processor adds the `<image>` tokens, as transformers 5 needs)",
        returns="Captioner(model, processor)",
    ),
    Role(
        name="t2v",
        description="text-to-video diffusion: SD-1.5 UNet inflated with AnimateDiff motion modules, CLIP text encoder",
        classes=("diffusers.UNetMotionModel", "diffusers.MotionAdapter", "transformers.CLIPTextModel",
                 "transformers.CLIPTokenizer", "diffusers scheduler"),
        layouts=(
            Layout("AnimateDiff release: 2D UNet + motion adapter", (
                *_diffusers_model("unet"), *_diffusers_model("motion_adapter"),
                need("text_encoder/config.json"), need(*_sub("text_encoder", _HF_WEIGHTS)),
                _clip_tokenizer("tokenizer"), need("scheduler/scheduler_config.json"))),
            Layout("one UNetMotionModel in unet/", (
                *_diffusers_model("unet"),
                need("text_encoder/config.json"), need(*_sub("text_encoder", _HF_WEIGHTS)),
                _clip_tokenizer("tokenizer"), need("scheduler/scheduler_config.json"))),
        ),
        paper_weights="AnimateDiff v3 motion module `v3_sd15_mm.ckpt` on RealisticVision V6.0 B1 "
                      "(`realisticVisionV60B1_v51VAE.safetensors`, which also supplies the text encoder and VAE)",
        source="HF `guoyww/animatediff-motion-adapter-v1-5-3` (v3_sd15_mm in diffusers layout); "
               "Civitai model-version 130072 (RealisticVision V6.0 B1) or HF `SG161222/Realistic_Vision_V6.0_B1_noVAE`",
        how_to="put the RealisticVision diffusers folders unet/, text_encoder/, tokenizer/, scheduler/ (and vae/, "
               "optional, returned as `vae`) together with the motion adapter as motion_adapter/",
        returns="dict(unet=UNetMotionModel, text_encoder, tokenizer, scheduler[, vae])",
    ),
    Role(
        name="sparsectrl",
        description="SparseCtrl RGB: injects the keyframe latent (frame 0) into the video UNet (beta guidance)",
        classes=("diffusers.SparseControlNetModel",),
        layouts=(Layout("diffusers SparseControlNetModel folder", _diffusers_model()),),
        paper_weights="AnimateDiff v3 SparseCtrl RGB `v3_sd15_sparsectrl_rgb.ckpt` (conditioning_channels=4, "
                      "use_simplified_condition_embedding=True, concat_conditioning_mask=True)",
        source="HF `guoyww/animatediff-sparsectrl-rgb` (diffusers layout of v3_sd15_sparsectrl_rgb.ckpt)",
        how_to="download the HF repo folder as is",
        returns="SparseControlNetModel",
    ),
    Role(
        name="frame_classifier",
        description="ImageNet ViT: frame-level semantic N-way metrics",
        classes=("transformers.ViTForImageClassification", "transformers.ViTImageProcessor"),
        layouts=(Layout("transformers folder", (
            need("config.json"), need(*_HF_WEIGHTS), need("preprocessor_config.json"))),),
        paper_weights="ViT-B/16 `google/vit-base-patch16-224`",
        source="HF `google/vit-base-patch16-224`",
        how_to="download the HF repo folder as is",
        returns="Classifier(model, processor)",
    ),
    Role(
        name="video_classifier",
        description="Kinetics VideoMAE: video-level semantic N-way metrics",
        classes=("transformers.VideoMAEForVideoClassification", "transformers.VideoMAEImageProcessor"),
        layouts=(Layout("transformers folder", (
            need("config.json"), need(*_HF_WEIGHTS), need("preprocessor_config.json"))),),
        paper_weights="VideoMAE-base fine-tuned on Kinetics-400 `MCG-NJU/videomae-base-finetuned-kinetics`",
        source="HF `MCG-NJU/videomae-base-finetuned-kinetics`",
        how_to="download the HF repo folder as is",
        returns="Classifier(model, processor)",
    ),
)}


def get_role(name: str) -> Role:
    """The :class:`Role` called ``name``; a ``KeyError`` naming the known roles otherwise."""
    try:
        return ROLES[name]
    except KeyError:
        raise KeyError(f"unknown model role {name!r}; the known roles are: {', '.join(ROLES)}") from None


def roles_markdown_table() -> str:
    """The README table of roles (the README section quotes this text verbatim; tests check it)."""
    rows = ["| role | paper weights | source | library class | folder layout | how to get it |",
            "|---|---|---|---|---|---|"]
    for r in ROLES.values():
        layout = "<br>".join(f"{lay.name}: {lay.compact()}" for lay in r.layouts)
        cells = (f"`{r.name}`", r.paper_weights, r.source, ", ".join(f"`{c}`" for c in r.classes), layout, r.how_to)
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows)
