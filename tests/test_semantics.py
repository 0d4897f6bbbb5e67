"""The Semantics Reconstructor: shapes (sim size; paper size on the meta device), the token shape it shares with
the unCLIP stand-in's conditioning, batch independence, voxel weights, the ridge initialisation, checkpoints and
the voxel-count check; and its losses: MixCo, BiMixCo, SoftCLIP, the SoftCLIP temperature schedule and the loss
configuration."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from neuroclips_core.models import losses as L
from neuroclips_core.models.blocks import count_parameters
from neuroclips_core.models.perception import PerceptionConfig, PerceptionReconstructor
from neuroclips_core.models.semantics import (ReftmProjector, SemanticsCheckpointError, SemanticsConfig,
                                              SemanticsReconstructor, clip_token_shape, load_semantics)

torch.set_num_threads(1)
V = 40


def _small(**overrides) -> SemanticsReconstructor:
    torch.manual_seed(0)
    return SemanticsReconstructor(SemanticsConfig(n_voxels=V, **{"hidden": 32, "n_blocks": 2, "token_shape": (4, 8),
                                                                  "text_dim": 6, **overrides}))


def _orthonormal(n: int, dim: int, seed: int = 0) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(dim, n, generator=torch.Generator().manual_seed(seed)))
    return q.T.contiguous()                                            # (n, dim), orthonormal rows


# ============================================================================================ the model
def test_sim_shapes_and_projector_switch():
    model = SemanticsReconstructor(SemanticsConfig.sim(V)).eval()
    t, c = model.config.token_shape
    out = model(torch.randn(3, V))
    assert out.backbone.shape == out.clip_voxels.shape == (3, t, c)
    assert not torch.allclose(out.backbone, out.clip_voxels)         # the projector changes the tokens
    no_proj = _small(clip_projector=False).eval()
    backbone, clip_voxels = no_proj(torch.randn(2, V))
    assert clip_voxels is backbone and backbone.shape == (2, 4, 8)
    with pytest.raises(ValueError, match=rf"expected fMRI of shape \(B, {V}\), found \(2, {V + 1}\)"):
        model(torch.randn(2, V + 1))


def test_sim_tokens_are_what_the_clip_standin_gives_unclip():
    """sim()'s default (T, C) and text width are those of the CLIP stand-in's architecture, measured through
    the very function that extracts unCLIP's conditioning tokens (random weights: only the shape matters)."""
    import open_clip

    from neuroclips_core.zoo.loaders import OpenClip
    from neuroclips_core.zoo.tiny import tiny_clip
    from neuroclips_core.zoo.train.clip import ClipRecipe, clip_model_cfg, clip_preprocess_cfg

    cfg = clip_model_cfg(ClipRecipe.quick_config())
    model = open_clip.model.CLIP(**cfg).eval()
    model.visual.output_tokens = True
    standin = OpenClip(model, None, clip_preprocess_cfg(), cfg)
    sim = SemanticsConfig.sim(V)
    assert clip_token_shape(standin) == sim.token_shape == (64, 128)
    assert SemanticsConfig.for_clip(V, standin) == sim
    tiny = SemanticsConfig.for_clip(V, tiny_clip(), size="paper")
    assert (tiny.n_tokens, tiny.token_dim, tiny.text_dim, tiny.hidden) == (16, 64, 32, 4096)


def test_paper_size_on_meta_device():
    v, h, blocks, t, c = 13447, 4096, 4, 256, 1664
    with torch.device("meta"):
        model = SemanticsReconstructor(SemanticsConfig.paper(v))
        out = model(torch.empty(2, v))
    assert out.backbone.shape == out.clip_voxels.shape == (2, t, c) and out.backbone.is_meta

    def linear(i, o):
        return i * o + o

    layer_norm = 2 * h
    expected = (linear(v, h)                                          # ridge
                + blocks * (layer_norm + 2 * linear(h, h))            # residual MLP blocks
                + linear(h, t * c)                                    # backbone_linear
                + 3 * (2 * c + linear(c, c)))                         # clip projector
    n = count_parameters(model)
    assert n == expected
    assert abs(n - 1.94e9) / 1.94e9 < 0.01                            # the reference's "about 1.94 B"


def test_a_samples_output_does_not_depend_on_its_batch():
    model = SemanticsReconstructor(SemanticsConfig.sim(V)).eval()
    x = torch.randn(5, V)
    with torch.no_grad():
        whole = model(x)
        alone = model(x[2:3])
    torch.testing.assert_close(alone.clip_voxels[0], whole.clip_voxels[2], atol=1e-5, rtol=0)
    torch.testing.assert_close(alone.backbone[0], whole.backbone[2], atol=1e-5, rtol=0)


def test_voxel_weights_measure_what_the_model_reads():
    model = _small().eval()
    with torch.no_grad():
        model.ridge.weight[:, 7] = 0
    w = model.voxel_weights()
    assert w.shape == (V,) and w[7] == 0 and (w[torch.arange(V) != 7] > 0).all()
    x = torch.randn(3, V)
    y = x.clone()
    y[:, 7] += 5.0
    torch.testing.assert_close(model(x).clip_voxels, model(y).clip_voxels)


def test_reftm_projector_is_the_token_mean_times_one_matrix():
    proj = ReftmProjector.from_config(_small().config)
    tokens = torch.randn(3, 4, 8)
    out = proj(tokens)
    assert out.shape == (3, 6)
    torch.testing.assert_close(out, tokens.mean(1) @ proj.proj)
    assert [n for n, _ in proj.named_parameters()] == ["proj"]         # no bias
    shuffled = tokens[:, torch.randperm(4)]
    torch.testing.assert_close(proj(shuffled), out)                    # token order does not matter


def test_ridge_initialisation_keeps_what_ridge_predicts():
    g = torch.Generator().manual_seed(1)
    n, k = 300, 12
    fmri = torch.randn(n, V, generator=g)
    targets = (fmri @ torch.randn(V, k, generator=g)).view(n, 3, 4) + 0.1 * torch.randn(n, 3, 4, generator=g)
    model = _small()
    ridge = model.init_from_ridge(fmri, targets, lambdas=(1.0,))
    with torch.no_grad():
        feats = model.ridge(fmri)[:, :k]                               # the units ridge set
    torch.testing.assert_close(feats.mean(0), torch.zeros(k), atol=1e-4, rtol=0)
    torch.testing.assert_close(feats.std(0), torch.ones(k), atol=1e-4, rtol=0)
    pred = torch.as_tensor(ridge.predict(fmri.numpy()))                # (n, 12)
    design = torch.cat([feats, torch.ones(n, 1)], 1).double()
    fit = design @ torch.linalg.lstsq(design, pred.double()).solution
    assert (fit - pred).pow(2).mean() < 1e-6 * pred.pow(2).mean()     # a linear readout of the units is ridge
    with pytest.raises(ValueError, match="validation data"):
        model.init_from_ridge(fmri, targets)                           # a penalty grid needs a validation split


def test_checkpoint_round_trip_and_voxel_count_mismatch(tmp_path):
    model = _small().eval()
    path = model.save(tmp_path / "sr.pt", subject=2, epoch=5)
    assert [p.name for p in tmp_path.iterdir()] == ["sr.pt"]
    loaded, meta = load_semantics(path, n_voxels=V)
    x = torch.randn(2, V)
    torch.testing.assert_close(loaded(x).clip_voxels, model(x).clip_voxels)
    assert loaded.config == model.config and not loaded.training and meta == {"subject": 2, "epoch": 5}
    with pytest.raises(SemanticsCheckpointError) as err:
        load_semantics(path, n_voxels=V + 15, subject=3)
    msg = str(err.value)
    assert f"{V} voxels (subject 2)" in msg and f"subject 3 has {V + 15}" in msg and "train" in msg
    # a Perception Reconstructor's checkpoint of the same subject is not an SR's
    pr = PerceptionReconstructor(PerceptionConfig.sim(V, latent_shape=(4, 4, 4))).save(tmp_path / "pr.pt")
    with pytest.raises(SemanticsCheckpointError, match="expected a 'neuroclips_core.semantics' checkpoint, "
                                                       "found 'neuroclips_core.perception'"):
        SemanticsReconstructor.load(pr, n_voxels=V)
    with pytest.raises(SemanticsCheckpointError, match="no Semantics Reconstructor checkpoint there"):
        load_semantics(tmp_path / "missing.pt")


def test_config_rejects_bad_sizes():
    with pytest.raises(ValueError, match="n_tokens=0"):
        SemanticsConfig(n_voxels=V, token_shape=(0, 8))
    with pytest.raises(ValueError, match=r"token_shape \(T, C\), found \(4, 8, 2\)"):
        SemanticsConfig(n_voxels=V, token_shape=(4, 8, 2))
    with pytest.raises(ValueError, match=r"dropout in \[0, 1\), found 1.5"):
        SemanticsConfig(n_voxels=V, dropout=1.5)
    with pytest.raises(ValueError, match="'sim' or 'paper'"):
        SemanticsConfig.for_clip(V, None, size="big")


# ============================================================================================ the losses
def test_mixco_mixes_a_random_half_by_convex_combinations():
    voxels = torch.randn(2000, 5)
    mixed, betas, perm = L.mixco(voxels, torch.Generator().manual_seed(0))
    assert mixed.shape == voxels.shape and betas.shape == perm.shape == (2000,)
    assert sorted(perm.tolist()) == list(range(2000))                   # a permutation
    kept = betas == 1
    assert torch.equal(mixed[kept], voxels[kept])                       # unselected: unchanged, beta 1
    assert 0.45 < 1 - kept.float().mean() < 0.55                        # about select_prob of them mixed
    assert ((betas >= 0) & (betas <= 1)).all()
    b = betas[:, None]
    torch.testing.assert_close(mixed, b * voxels + (1 - b) * voxels[perm])
    assert ((betas[~kept] < 0.1) | (betas[~kept] > 0.9)).float().mean() > 0.5   # Beta(0.15, 0.15): U-shaped
    again = L.mixco(voxels, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, c) for a, c in zip(again, (mixed, betas, perm)))  # the generator decides all
    assert torch.equal(L.mixco(voxels, torch.Generator().manual_seed(1), select_prob=0.0)[0], voxels)
    # select_prob 1: all mixed (a Beta(0.15, 0.15) draw rounds to 1.0 in float32 now and then)
    assert (L.mixco(voxels, torch.Generator().manual_seed(1), select_prob=1.0)[1] < 1).float().mean() > 0.95
    with pytest.raises(ValueError, match="select_prob"):
        L.mixco(voxels, torch.Generator(), select_prob=1.5)


def test_mixco_targets_are_distributions_even_where_perm_fixes_a_sample():
    betas = torch.tensor([1.0, 0.3, 0.8, 1.0])
    perm = torch.tensor([0, 2, 1, 3])                                   # 0 and 3 map to themselves
    p = L.mixco_targets(betas, perm)
    torch.testing.assert_close(p.sum(1), torch.ones(4))
    assert p[1, 1] == pytest.approx(0.3) and p[1, 2] == pytest.approx(0.7) and p[0, 0] == 1


def test_bimixco_without_mixing_is_plain_infonce():
    g = torch.Generator().manual_seed(0)
    brain, clip = torch.randn(6, 4, 8, generator=g), torch.randn(6, 4, 8, generator=g)
    plain = L.bimixco_nce(brain, clip, temperature=0.1)
    unmixed = L.bimixco_nce(brain, clip, temperature=0.1, betas=torch.ones(6), perm=torch.randperm(6))
    torch.testing.assert_close(unmixed, plain)
    reference = L.bidirectional_contrastive(brain.flatten(1)[:, None], clip.flatten(1)[:, None], 0.1, "batch")
    torch.testing.assert_close(plain, reference)
    manual = (F.cross_entropy(logits := F.normalize(brain.flatten(1), dim=-1) @ F.normalize(clip.flatten(1), dim=-1).T
                              / 0.1, torch.arange(6)) + F.cross_entropy(logits.T, torch.arange(6))) / 2
    torch.testing.assert_close(plain, manual)
    with pytest.raises(ValueError, match="both betas and perm"):
        L.bimixco_nce(brain, clip, betas=torch.ones(6))


def test_bimixco_is_smallest_for_the_right_brain_embedding():
    clip = _orthonormal(8, 32)                                          # distinct items
    noise = torch.randn(8, 32, generator=torch.Generator().manual_seed(3))
    assert L.bimixco_nce(clip, clip) < 1e-6                             # tau 0.006: a sharp optimum at 0
    at_target = L.bimixco_nce(clip, clip, temperature=0.1)              # (0.006 saturates float32 off it too)
    for scale in (0.1, 0.5, 2.0):
        assert L.bimixco_nce(clip + scale * noise, clip, temperature=0.1) > at_target
    assert L.bimixco_nce(clip[torch.roll(torch.arange(8), 1)], clip) > 1.0   # the wrong images: a large loss
    # with mixing, the mixture of the two images is the right answer, the unmixed image is not
    betas, perm = torch.full((8,), 0.6), torch.roll(torch.arange(8), 1)
    mixture = 0.6 * clip + 0.4 * clip[perm]
    assert (L.bimixco_nce(mixture, clip, 0.1, betas, perm) < L.bimixco_nce(clip, clip, 0.1, betas, perm))


def test_soft_clip_gradient_pulls_each_brain_embedding_towards_its_image():
    clip = _orthonormal(8, 64)
    brain = torch.randn(8, 64, generator=torch.Generator().manual_seed(5)).requires_grad_(True)
    loss = L.soft_clip_loss(brain, clip, temperature=0.1)
    loss.backward()
    towards_own_image = -(brain.grad * clip).sum(1)                     # descent direction . own image
    assert (towards_own_image > 0).all()
    with torch.no_grad():
        stepped = L.soft_clip_loss(brain - 0.05 * brain.grad / brain.grad.norm(), clip, 0.1)
    assert stepped < loss
    assert L.soft_clip_loss(clip, clip, 0.1) < L.soft_clip_loss(brain.detach(), clip, 0.1)


def test_soft_clip_temperature_anneals_upwards_from_start_to_end():
    taus = [L.soft_clip_temperature(e, 20) for e in range(20)]
    assert taus[0] == pytest.approx(0.004) and taus[-1] == pytest.approx(0.0075)
    assert all(b > a for a, b in zip(taus, taus[1:]))
    assert taus[10] > (0.004 + 0.0075) / 2 > taus[9]                    # cosine: the midpoint halfway
    assert L.soft_clip_temperature(0, 1) == 0.004
    with pytest.raises(ValueError, match="epoch 20 of 20"):
        L.soft_clip_temperature(20, 20)


def test_loss_config_recipes_and_schedule():
    official = L.SemanticsLossConfig.for_recipe("official")
    assert official.stage_weights() == {"backbone": {"contrastive": 1.0, "reftm_clip_voxels": 0.25},
                                        "prior": {"prior": 30.0, "reftm_prior": 1.0}}
    assert all(official.uses_mixup(e, 30) for e in range(30))         # mixup_pct 1.0: BiMixCo throughout
    paper = L.SemanticsLossConfig.for_recipe("paper")
    assert paper.stage_weights() == {"joint": {"contrastive": 1.0, "prior": 30.0, "reftm_prior": 1.0}}
    assert paper.mixup_epochs(30) == 9 and paper.uses_mixup(8, 30) and not paper.uses_mixup(9, 30)
    assert paper.soft_clip_tau(9, 30) == pytest.approx(0.004) and paper.soft_clip_tau(29, 30) == pytest.approx(0.0075)
    with pytest.raises(ValueError, match="epoch 3 is a mixup epoch"):
        paper.soft_clip_tau(3, 30)
    assert L.SemanticsLossConfig.for_recipe("paper", mixup_pct=0.5).to_dict()["mixup_pct"] == 0.5


@pytest.mark.parametrize("bad, message", [
    ({"mixup_pct": 1.5}, r"mixup_pct: expected a fraction in \[0, 1\], found 1.5"),
    ({"bimixco_temperature": 0.0}, "bimixco_temperature: expected a positive number, found 0.0"),
    ({"reftm_temperature": math.nan}, "reftm_temperature: expected a positive number"),
    ({"text_weight": -1.0}, "text_weight: expected a weight >= 0, found -1.0"),
    ({"soft_clip_temperatures": (0.004,)}, r"soft_clip_temperatures: expected \(start, end\)"),
])
def test_loss_config_rejects_bad_values(bad, message):
    with pytest.raises(ValueError, match=message):
        L.SemanticsLossConfig(**bad)
    with pytest.raises(ValueError, match=message):
        L.SemanticsLossConfig.for_recipe("paper", **bad)


def test_loss_config_names_the_recipes_it_knows():
    with pytest.raises(ValueError, match=r"recipe: expected one of \('official', 'paper'\).*found 'joint'"):
        L.SemanticsLossConfig(recipe="joint")
    with pytest.raises(ValueError, match="expected one of .*found 'joint'"):
        L.SemanticsLossConfig.for_recipe("joint")
