"""The model zoo: save -> load -> forward round trips of every role, the sgm UNet conversion, weights.yml checks.

All models are tiny and random; every test runs with sockets blocked (and HF_HUB_OFFLINE=1), so a loader that
tried the network would fail here.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")   # before any huggingface import of this process, if first

import numpy as np
import pytest
import torch
from PIL import Image

from neuroclips_core.zoo import ROLES, WeightsError, load_role, load_weights_file, roles_markdown_table, save_role
from neuroclips_core.zoo import sgm_unclip, tiny
from neuroclips_core.zoo.weights import EXAMPLE_FILE

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Fail any test that opens a network connection, even one a library would catch and fall back from."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    attempts = []
    real_connect = socket.socket.connect

    def guarded(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            attempts.append(address)
            raise OSError(f"network access attempted in a zoo test: {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    yield attempts
    assert not attempts, f"the zoo tried the network: {attempts}"


def test_network_guard_blocks(no_network):
    with pytest.raises(OSError, match="network access"):
        socket.create_connection(("10.255.255.1", 443), timeout=1)
    assert no_network == [("10.255.255.1", 443)]
    no_network.clear()      # this attempt was the test's own


def _perturb(objects, seed: int = 1):
    """Add noise to every weight: zero-initialised layers (SparseCtrl's zero convs, motion-module outputs)
    would otherwise make a round trip compare zeros with zeros."""
    g = torch.Generator().manual_seed(seed)
    values = objects.values() if isinstance(objects, dict) else objects if isinstance(objects, tuple) else [objects]
    with torch.no_grad():
        for m in values:
            if isinstance(m, torch.nn.Module):
                for p in m.parameters():
                    p.add_(0.05 * torch.randn(p.shape, generator=g))
    return objects


def _images(n: int, size: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(n)]


def _randn(*shape, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _text_embeddings(t2v: dict, frames: int) -> torch.Tensor:
    ids = t2v["tokenizer"](["a red ball rolling"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    emb = t2v["text_encoder"](ids).last_hidden_state              # (1, 77, 32)
    return emb.repeat_interleave(frames, dim=0)                    # diffusers 0.42: per-frame, (B*F, 77, 32)


@torch.no_grad()
def _forward(role: str, objects) -> dict[str, torch.Tensor]:
    """A deterministic forward pass of each role's model(s); returns the tensors to compare."""
    if role == "vae":
        latents = objects.encode(_randn(2, 3, 64, 64)).latent_dist.mean
        return {"latents": latents, "decoded": objects.decode(latents).sample}
    if role == "clip":
        pooled, tokens = objects.model.encode_image(_randn(2, 3, 32, 32))
        assert tokens.shape == (2, *tiny.TINY_CLIP_TOKENS)
        return {"pooled": pooled, "tokens": tokens, "text": objects.model.encode_text(objects.tokenizer(["a cat"]))}
    if role == "unclip":
        vector = sgm_unclip.sgm_vector_condition(dim=tiny.TINY_VECTOR_DIM, batch_size=2)
        eps = objects.unet(_randn(2, 4, 8, 8), 500, encoder_hidden_states=_randn(2, *tiny.TINY_CLIP_TOKENS, seed=1),
                           class_labels=vector).sample
        return {"eps": eps, "timesteps": torch.as_tensor(_timesteps(objects.scheduler))}
    if role == "captioner":
        inputs = objects.processor(images=_images(2, 48), text=["a dog", "a dog"], return_tensors="pt")
        out = {"input_ids": inputs.input_ids, "pixel_values": inputs.pixel_values,
               "logits": objects.model(**inputs).logits}
        out["generated"] = objects.model.generate(**inputs, max_new_tokens=5, do_sample=False)
        return out
    if role == "t2v":
        frames = 4
        text = _text_embeddings(objects, frames)
        eps = objects["unet"](_randn(1, 4, frames, 8, 8), 400, encoder_hidden_states=text).sample
        return {"text": text, "eps": eps, "timesteps": torch.as_tensor(_timesteps(objects["scheduler"]))}
    if role == "sparsectrl":
        frames = 4
        cond, mask = torch.zeros(1, 4, frames, 8, 8), torch.zeros(1, 1, frames, 8, 8)
        cond[:, :, 0], mask[:, :, 0] = _randn(1, 4, 8, 8, seed=2), 1      # keyframe latent at frame 0
        down, mid = objects(_randn(1, 4, frames, 8, 8), 400, encoder_hidden_states=_randn(frames, 77, 32, seed=3),
                            controlnet_cond=cond, conditioning_mask=mask, return_dict=False)
        return {**{f"down{i}": d for i, d in enumerate(down)}, "mid": mid}
    if role == "frame_classifier":
        pixels = objects.processor(images=_images(3, 40), return_tensors="pt").pixel_values
        return {"pixels": pixels, "logits": objects.model(pixel_values=pixels).logits}
    if role == "video_classifier":
        video = [np.array(im) for im in _images(16, 40)]
        pixels = objects.processor([video], return_tensors="pt").pixel_values
        return {"pixels": pixels, "logits": objects.model(pixel_values=pixels).logits}
    raise AssertionError(role)


def _timesteps(scheduler) -> list[int]:
    scheduler.set_timesteps(5)
    return [int(t) for t in scheduler.timesteps]


def _assert_same(before: dict, after: dict, atol: float = 1e-5):
    """Equal up to float summation order: weights read from a file (memory-mapped, aligned differently) can take
    another SIMD path through the same kernels (differences ~1e-6 on values ~1); a wrong or missing weight
    changes outputs by ~1e-1."""
    assert before.keys() == after.keys()
    for name in before:
        a, b = before[name], after[name]
        assert a.shape == b.shape, name
        if a.is_floating_point():
            assert a.std() > 0, f"{name} is constant: the comparison would prove nothing"
            torch.testing.assert_close(b, a, rtol=0, atol=atol, msg=lambda m: f"{name}: {m}")
        else:
            assert torch.equal(a, b), name


@pytest.mark.parametrize("role", list(ROLES))
def test_save_load_round_trip(role, tmp_path):
    objects = _perturb(tiny.tiny_role(role))
    before = _forward(role, objects)
    save_role(role, objects, tmp_path / role)
    loaded = load_role(role, tmp_path / role)
    assert type(loaded) is type(objects)
    _assert_same(before, _forward(role, loaded))
    if role == "clip":      # the preprocessing and the model config travel with the weights
        cfg, ref = loaded.preprocess_cfg, objects.preprocess_cfg
        assert cfg["interpolation"] == ref["interpolation"]
        assert all(np.allclose(cfg[k], ref[k]) for k in ("size", "mean", "std"))     # size 32 == (32, 32)
        assert loaded.model_cfg == objects.model_cfg and loaded.model.visual.output_tokens
    with pytest.raises(WeightsError, match="already exists"):
        save_role(role, objects, tmp_path / role)
    assert [p.name for p in tmp_path.iterdir()] == [role]       # no temporary folder left behind


def test_t2v_release_layout_unet2d_plus_motion_adapter(tmp_path):
    """The AnimateDiff release layout (2D UNet + motion_adapter/) loads as the same UNetMotionModel."""
    from diffusers import UNetMotionModel

    parts = _perturb(tiny.tiny_t2v(split=True))
    merged = dict(parts, unet=UNetMotionModel.from_unet2d(parts["unet"], parts["motion_adapter"]).eval())
    del merged["motion_adapter"]
    save_role("t2v", parts, tmp_path / "t2v")
    assert (tmp_path / "t2v" / "motion_adapter" / "config.json").is_file()
    # SD-1.5 repos ship the tokenizer as vocab.json + merges.txt, whose model_max_length reads as ~1e30
    shutil.rmtree(tmp_path / "t2v" / "tokenizer")
    tiny.clip_tokenizer_folder(tmp_path / "t2v" / "tokenizer")
    loaded = load_role("t2v", tmp_path / "t2v")
    assert isinstance(loaded["unet"], UNetMotionModel) and "motion_adapter" not in loaded
    assert loaded["tokenizer"].model_max_length == 77
    _assert_same(_forward("t2v", merged), _forward("t2v", loaded))

    shutil.rmtree(tmp_path / "t2v" / "motion_adapter")
    with pytest.raises(WeightsError, match="motion_adapter"):
        load_role("t2v", tmp_path / "t2v")


def test_clip_tokenizer_folder(tmp_path):
    from transformers import CLIPTokenizer

    folder = tiny.clip_tokenizer_folder(tmp_path / "tok")
    assert sorted(p.name for p in folder.iterdir()) == ["merges.txt", "vocab.json"]
    tok = CLIPTokenizer.from_pretrained(folder, model_max_length=77, local_files_only=True)
    assert len(tok) == 49408
    assert tok("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert tiny.clip_tokenizer()("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]


# ----------------------------------------------------------------------------------------- sgm conversion
@pytest.mark.parametrize("suffix", [".safetensors", ".ckpt"])
def test_sgm_checkpoint_loads_through_load_role(suffix, tmp_path):
    """A diffusers UNet written in sgm layout (our inverse map) and read back through load_role('unclip') gives
    the same outputs; diffusers' own LDM converter agrees with our sgm layout key for key."""
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    unclip = _perturb(tiny.tiny_unclip())
    ckpt = sgm_unclip.save_sgm_checkpoint(unclip.unet, tmp_path / "sgm" / f"unclip6{suffix}")
    shutil.copy(sgm_unclip.CONFIG_DIR / "scheduler_config.json", ckpt.parent)
    before = _forward("unclip", unclip)
    for target in (ckpt.parent, ckpt):            # the folder, or the checkpoint file itself
        loaded = load_role("unclip", target)
        _assert_same(before, _forward("unclip", loaded))

    # independent check of the layout: diffusers' single-file converter maps our sgm keys back identically
    sd = unclip.unet.state_dict()
    sgm = sgm_unclip.diffusers_to_sgm(sd, dict(unclip.unet.config))
    theirs = convert_ldm_unet_checkpoint(sgm, dict(unclip.unet.config))
    assert theirs.keys() == sd.keys() and all(theirs[k] is sd[k] for k in sd)
    # and sgm's own numbering (openaimodel.py): downsamplers close levels 0 and 1, upsamplers follow the
    # transformer (index 2) in attention levels, label_emb carries the vector condition
    p = sgm_unclip.SGM_UNET_PREFIX
    assert {f"{p}input_blocks.3.0.op.weight", f"{p}input_blocks.6.0.op.weight", f"{p}output_blocks.2.2.conv.weight",
            f"{p}output_blocks.5.2.conv.weight", f"{p}middle_block.1.transformer_blocks.1.attn2.to_k.weight",
            f"{p}output_blocks.6.0.skip_connection.weight"} <= sgm.keys()
    assert not any(k.startswith(f"{p}input_blocks.9.") or k.startswith(f"{p}output_blocks.9.") for k in sgm)
    assert sgm[f"{p}input_blocks.7.1.transformer_blocks.1.attn2.to_k.weight"].shape == (64, 64)
    assert sgm[f"{p}label_emb.0.0.weight"].shape == (128, 4 * tiny.TINY_VECTOR_DIM)


def test_sgm_mapping_covers_the_real_unclip6_unet():
    """The shipped unclip6 config (2.5 B params, built on the meta device) maps key for key, as diffusers'
    converter does, with the SDXL shapes MindEye2's checkpoint has."""
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    config = json.loads((sgm_unclip.CONFIG_DIR / "unet_config.json").read_text())
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(config)
    sd = unet.state_dict()
    sgm = sgm_unclip.diffusers_to_sgm(sd, config)
    assert len(sgm) == len(sd) == 1680
    theirs = convert_ldm_unet_checkpoint(sgm, config)
    assert all(theirs[k] is sd[k] for k in sd) and theirs.keys() == sd.keys()
    p = sgm_unclip.SGM_UNET_PREFIX
    assert sgm[f"{p}input_blocks.8.1.transformer_blocks.9.attn2.to_k.weight"].shape == (1280, 1664)
    assert sgm[f"{p}middle_block.1.transformer_blocks.9.attn2.to_v.weight"].shape == (1280, 1664)
    assert sgm[f"{p}label_emb.0.0.weight"].shape == (1280, 1024)
    assert sgm_unclip.sgm_vector_condition().shape == (1, 1024)


def test_sgm_unknown_and_missing_keys_are_errors(tmp_path):
    from safetensors.torch import save_file

    unclip = tiny.tiny_unclip()
    config = dict(unclip.unet.config)
    sgm = sgm_unclip.diffusers_to_sgm(unclip.unet.state_dict(), config)
    extra = dict(sgm, **{f"{sgm_unclip.SGM_UNET_PREFIX}input_blocks.1.0.in_layers.9.weight": torch.zeros(1)})
    with pytest.raises(WeightsError, match=r"input_blocks\.1\.0\.in_layers\.9\.weight"):
        sgm_unclip.sgm_to_diffusers(extra, config)
    with pytest.raises(WeightsError, match="no `model.diffusion_model"):
        sgm_unclip.sgm_to_diffusers({"first_stage_model.x": torch.zeros(1)}, config)

    ckpt = sgm_unclip.save_sgm_checkpoint(unclip.unet, tmp_path / "u.safetensors")
    shutil.copy(sgm_unclip.CONFIG_DIR / "scheduler_config.json", tmp_path)
    gone = f"{sgm_unclip.SGM_UNET_PREFIX}output_blocks.2.2.conv.weight"
    save_file({k: v.contiguous() for k, v in sgm.items() if k != gone}, str(ckpt))
    with pytest.raises(WeightsError, match=r"missing UNet key.*up_blocks\.0\.upsamplers\.0\.conv\.weight"):
        load_role("unclip", ckpt)


# ----------------------------------------------------------------------------------------- weights.yml
def test_weights_yml_missing_folder_names_role_and_layout(tmp_path):
    yml = tmp_path / "weights.yml"
    yml.write_text("vae: does/not/exist\n")
    with pytest.raises(WeightsError) as e:
        load_weights_file(yml)
    msg = str(e.value)
    assert msg.startswith("vae:") and "does/not/exist" in msg
    assert "config.json" in msg and "diffusion_pytorch_model.safetensors" in msg   # the expected layout
    assert "pscotti/mindeyev2" in msg                                               # where to get it


def test_weights_yml_resolves_relative_paths_and_loads(tmp_path):
    save_role("vae", tiny.tiny_vae(), tmp_path / "models" / "sd-vae")
    yml = tmp_path / "weights.yml"
    yml.write_text("vae: models/sd-vae\ncaptioner: null\n")
    weights = load_weights_file(yml)
    assert weights.folder("vae") == tmp_path / "models" / "sd-vae"
    assert type(weights.load("vae")).__name__ == "AutoencoderKL"
    with pytest.raises(WeightsError, match=r"(?s)clip: .*no entry for the 'clip' role.*open_clip_config\.json"):
        weights.folder("clip")          # a role left out is an error only when asked for


def test_unknown_role_lists_the_known_ones(tmp_path):
    yml = tmp_path / "weights.yml"
    yml.write_text("vea: /tmp\n")
    with pytest.raises(WeightsError, match="unknown role.*vea.*vae, clip, unclip"):
        load_weights_file(yml)
    with pytest.raises(WeightsError, match="unknown model role 'unet'.*" + ", ".join(ROLES)):
        load_role("unet", tmp_path)


def test_folder_missing_a_file_names_that_file(tmp_path):
    folder = save_role("frame_classifier", tiny.tiny_frame_classifier(), tmp_path / "vit")
    (folder / "preprocessor_config.json").unlink()
    with pytest.raises(WeightsError) as e:
        load_role("frame_classifier", folder)
    msg = str(e.value)
    assert msg.startswith("frame_classifier:") and str(folder) in msg
    assert "missing (transformers folder): preprocessor_config.json" in msg
    assert "google/vit-base-patch16-224" in msg


def test_library_errors_become_weights_errors(tmp_path):
    folder = save_role("vae", tiny.tiny_vae(), tmp_path / "vae")
    (folder / "config.json").write_text("{not json")
    with pytest.raises(WeightsError, match=r"(?s)vae: reading .*vae failed.*expected layout") as e:
        load_role("vae", folder)
    assert e.value.__cause__ is not None
    save_role("vae", tiny.tiny_vae(), folder, overwrite=True)      # replaces the broken folder
    assert list(load_role("vae", folder).config.block_out_channels) == [32, 32, 64, 64]
    assert [p.name for p in tmp_path.iterdir()] == ["vae"]


def test_sparsectrl_must_be_the_rgb_variant(tmp_path):
    folder = save_role("sparsectrl", tiny.tiny_sparsectrl(), tmp_path / "ctrl")
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(dict(cfg, use_simplified_condition_embedding=False)))
    with pytest.raises(WeightsError, match="not the RGB SparseCtrl"):
        load_role("sparsectrl", folder)


def test_example_file_and_readme_document_every_role():
    import yaml

    example = yaml.safe_load(EXAMPLE_FILE.read_text())
    assert list(example) == list(ROLES)
    text = EXAMPLE_FILE.read_text()
    for role in ROLES.values():            # each documented with a source of its weights
        assert role.source.split("`")[1] in text, role.name
    readme = (REPO / "README.md").read_text()
    assert "## Weights for the paper profile" in readme
    assert roles_markdown_table() in readme, "README table out of date: paste roles_markdown_table() into it"
