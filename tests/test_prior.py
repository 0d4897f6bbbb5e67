"""The Semantics Reconstructor's diffusion prior (:mod:`neuroclips_core.models.prior`): sizes (sim, and paper on the
meta device), the cosine schedule, the noising / x0 algebra, condition drops, deterministic DDIM sampling and
guidance, position awareness, batch invariance, and a tiny prior learning a toy mapping."""
from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from neuroclips_core.models.prior import (SIM_N_TOKENS, SIM_TOKEN_DIM, DiffusionPrior, PriorConfig, PriorNetwork,
                                          ddim_step, ddim_timesteps)

torch.set_num_threads(1)
N, D = 4, 16                                  # tiny tokens for the fast tests


def tiny_config(**overrides) -> PriorConfig:
    return PriorConfig.sim(n_tokens=N, token_dim=D, depth=2, heads=2, **overrides)


def tiny_prior(seed: int = 0, **overrides) -> DiffusionPrior:
    torch.manual_seed(seed)
    return DiffusionPrior(tiny_config(**overrides))


def tokens(batch: int, seed: int, n: int = N, d: int = D) -> torch.Tensor:
    return torch.randn(batch, n, d, generator=torch.Generator().manual_seed(seed))


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def record_inputs(prior: DiffusionPrior) -> list:
    """Record (noisy image tokens, timesteps, brain tokens) of every call of ``prior.net``."""
    calls = []
    prior.net.register_forward_pre_hook(lambda module, args: calls.append(tuple(a.detach().clone() for a in args)))
    return calls


def mean_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over items of the Pearson correlation of their flattened tokens."""
    a, b = a.flatten(1), b.flatten(1)
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return float(((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))).mean())


# ------------------------------------------------------------------------------------------ sizes
def test_sim_tokens_are_the_clip_standin_tokens():
    from neuroclips_core.zoo.train.clip import IMAGE_SIZE, ClipConfig

    assert SIM_N_TOKENS == (IMAGE_SIZE // ClipConfig.patch_size) ** 2
    assert SIM_TOKEN_DIM == ClipConfig.vision_width
    cfg = PriorConfig.sim()
    assert (cfg.n_tokens, cfg.token_dim) == (SIM_N_TOKENS, SIM_TOKEN_DIM)
    assert 2 <= cfg.depth <= 4 and cfg.heads * cfg.dim_head == cfg.token_dim


def test_shapes_at_sim_size():
    torch.manual_seed(0)
    cfg = PriorConfig.sim()
    prior = DiffusionPrior(cfg)
    brain, image = tokens(2, 0, SIM_N_TOKENS, SIM_TOKEN_DIM), tokens(2, 1, SIM_N_TOKENS, SIM_TOKEN_DIM)
    out = prior.net(image, torch.tensor([0, 99]), brain)
    assert out.shape == (2, SIM_N_TOKENS, SIM_TOKEN_DIM)
    loss, pred = prior.loss(brain, image, torch.Generator().manual_seed(0), return_prediction=True)
    assert loss.ndim == 0 and loss.dtype == torch.float32 and pred.shape == image.shape
    loss.backward()
    assert prior.net.null_brain_tokens.grad is not None
    sample = prior.sample(brain, steps=3, generator=torch.Generator().manual_seed(0))
    assert sample.shape == (2, SIM_N_TOKENS, SIM_TOKEN_DIM) and torch.isfinite(sample).all()
    with pytest.raises(ValueError, match=r"\(B, 64, 128\), found \(2, 64, 64\)"):
        prior.loss(brain, image[..., :64], torch.Generator())
    with pytest.raises(ValueError, match="batch sizes differ"):
        prior.net(image, torch.tensor([0, 1]), brain[:1])


def test_paper_size_builds_on_meta_with_the_expected_parameter_count():
    cfg = PriorConfig.paper()
    assert (cfg.n_tokens, cfg.token_dim, cfg.depth, cfg.heads, cfg.dim_head) == (256, 1664, 6, 32, 52)
    assert (cfg.timesteps, cfg.cond_drop_prob, cfg.sample_steps, cfg.sample_eta, cfg.guidance_scale) == \
        (100, 0.2, 20, 1.0, 1.0)
    with torch.device("meta"):
        prior = DiffusionPrior(cfg)
    assert all(p.is_meta for p in prior.parameters())
    assert not prior.alphas_cumprod.is_meta               # the schedule is real even on a meta-built prior

    n, d, h, dh, ff = 256, 1664, 32, 52, 4 * 1664
    attention = d + d * h * dh + d * 2 * dh + 2 * dh + h * dh * d + d      # norm, q, shared kv, null kv, out, norm
    feed_forward = d + d * 2 * ff + ff * d                                   # norm, SwiGLU in, out
    time_mlp = (d * 2 * d + 2 * d) + (2 * d * 2 * d + 2 * d) + (2 * d * d + d)
    embeddings = 3 * n * d                                                   # image positions, two nulls
    head = d + d * d                                                         # final norm, output projection
    expected = 6 * (attention + feed_forward) + time_mlp + embeddings + head
    assert n_params(prior) == expected
    assert 0.25e9 < expected < 0.27e9                     # the official estimate: ~0.26 B


def test_config_checks_and_round_trip():
    with pytest.raises(ValueError, match="cond_drop_prob"):
        PriorConfig.sim(cond_drop_prob=1.5)
    with pytest.raises(ValueError, match="sample_steps"):
        PriorConfig.sim(sample_steps=101)
    with pytest.raises(ValueError, match="depth=0"):
        PriorConfig.sim(depth=0)
    cfg = tiny_config()
    assert PriorConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match=r"\[1, 100\]"):
        ddim_timesteps(100, 0)


# ------------------------------------------------------------------------------------------ diffusion
def test_cosine_schedule_matches_its_closed_form():
    ab = tiny_prior().alphas_cumprod.double()
    assert ab.shape == (100,)
    assert (ab[1:] < ab[:-1]).all()
    assert ab[0] > 0.999 and ab[-1] < 1e-3

    def f(u):
        return math.cos((u / 100 + 0.008) / 1.008 * math.pi / 2) ** 2

    for t in (0, 1, 10, 50, 90, 98):
        assert ab[t].item() == pytest.approx(f(t + 1) / f(0), rel=1e-5, abs=1e-7)


def test_loss_targets_x0_under_the_forward_process():
    prior = tiny_prior(cond_drop_prob=0.0)
    x0 = torch.full((4000, N, D), 2.0)
    brain = tokens(4000, 1)
    calls = record_inputs(prior)

    # a network that knows the answer has zero loss: the target is x0 (not the noise)
    prior.net.forward = lambda noisy, t, brain_tokens: x0
    assert prior.loss(brain, x0, torch.Generator().manual_seed(0)).item() == 0.0

    # a network that returns its noisy input: E[(x_t - x0)^2] = mean_t (1 - sqrt(ab_t))^2 x0^2 + (1 - ab_t)
    prior.net.forward = lambda noisy, t, brain_tokens: noisy
    loss = prior.loss(brain, x0, torch.Generator().manual_seed(1)).item()
    ab = prior.alphas_cumprod.double()
    expected = ((1 - ab.sqrt()) ** 2 * 4.0 + (1 - ab)).mean().item()
    assert loss == pytest.approx(expected, rel=0.05)

    noisy, t, _ = calls[-1]
    assert t.min() >= 0 and t.max() <= 99 and len(t.unique()) == 100   # uniform over all of {0..T-1}
    a = ab[t].float()[:, None, None]
    eps = (noisy - a.sqrt() * x0) / (1 - a).sqrt()                       # the noise the forward process added
    assert abs(eps.mean().item()) < 0.02 and eps.std().item() == pytest.approx(1.0, abs=0.02)
    at_zero = t == 0                                                     # t = 0 is almost noise-free
    assert (noisy[at_zero] - x0[at_zero]).abs().max() < 0.15


def dropped_items(cond_drop_prob: float, brain: torch.Tensor, image: torch.Tensor, train: bool = True):
    """Run one loss of a fresh tiny prior; return which items' brain tokens and noisy image tokens reached the
    network as the null tokens, (B,) bool each, and the brain tokens it saw."""
    prior = tiny_prior(cond_drop_prob=cond_drop_prob).train(train)
    calls = record_inputs(prior)
    prior.loss(brain, image, torch.Generator().manual_seed(0))
    noisy, _, brain_in = calls[-1]
    brain_null = (brain_in == prior.net.null_brain_tokens.detach()).flatten(1).all(1)
    image_null = (noisy == prior.net.null_image_tokens.detach()).flatten(1).all(1)
    return brain_null, image_null, brain_in


def test_condition_drops_replace_inputs_by_the_nulls():
    brain, image = tokens(400, 1), tokens(400, 2)
    brain_null, image_null, _ = dropped_items(1.0, brain, image)
    assert brain_null.all() and image_null.all()
    brain_null, image_null, brain_in = dropped_items(1.0, brain, image, train=False)   # evaluation never drops
    assert not brain_null.any() and not image_null.any() and torch.equal(brain_in, brain)
    brain_null, image_null, brain_in = dropped_items(0.0, brain, image)
    assert not brain_null.any() and not image_null.any() and torch.equal(brain_in, brain)

    brain_null, image_null, _ = dropped_items(0.5, tokens(4000, 3), tokens(4000, 4))   # independent, each p
    brain_null, image_null = brain_null.float(), image_null.float()
    assert brain_null.mean().item() == pytest.approx(0.5, abs=0.04)
    assert image_null.mean().item() == pytest.approx(0.5, abs=0.04)
    assert (brain_null * image_null).mean().item() == pytest.approx(0.25, abs=0.04)


def test_ddim_step_keeps_the_noise_direction_when_deterministic():
    x0, eps = tokens(3, 0), tokens(3, 1)
    a, a_next = 0.3, 0.8
    x_t = math.sqrt(a) * x0 + math.sqrt(1 - a) * eps
    x_next = ddim_step(x_t, x0, a, a_next, eta=0.0, noise=None)
    torch.testing.assert_close(x_next, math.sqrt(a_next) * x0 + math.sqrt(1 - a_next) * eps)
    # eta = 1 with zero extra noise shrinks the noise direction by exactly the variance it hands to the noise
    sigma2 = (1 - a_next) / (1 - a) * (1 - a / a_next)
    x_next = ddim_step(x_t, x0, a, a_next, eta=1.0, noise=torch.zeros_like(x0))
    torch.testing.assert_close(x_next, math.sqrt(a_next) * x0 + math.sqrt(1 - a_next - sigma2) * eps)


# ------------------------------------------------------------------------------------------ sampling
def test_sampling_is_deterministic_per_generator():
    prior = tiny_prior().eval()
    brain = tokens(3, 0)
    a = prior.sample(brain, steps=5, generator=torch.Generator().manual_seed(0))
    b = prior.sample(brain, steps=5, generator=torch.Generator().manual_seed(0))
    c = prior.sample(brain, steps=5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 1e-3
    d = prior.sample(brain, steps=5, generator=torch.Generator().manual_seed(0), eta=0.0)
    assert (a - d).abs().max() > 1e-3                                   # eta 1 adds noise at every step


def test_guidance_one_is_the_conditional_prediction():
    prior = tiny_prior().eval()
    brain, noisy, t = tokens(3, 0), tokens(3, 1), torch.tensor([5, 50, 95])
    with torch.no_grad():
        cond = prior.net(noisy, t, brain)
        null_image, null_brain = (nulls.expand(3, -1, -1) for nulls in (prior.net.null_image_tokens,
                                                                       prior.net.null_brain_tokens))
        null = prior.net(null_image, t, null_brain)
        assert torch.equal(prior.predict_x0(noisy, t, brain, guidance_scale=1.0), cond)
        guided = prior.predict_x0(noisy, t, brain, guidance_scale=3.0)
    torch.testing.assert_close(guided, null + 3.0 * (cond - null))
    assert (guided - cond).abs().max() > 1e-3

    calls = record_inputs(prior)
    prior.sample(brain, steps=5, guidance_scale=1.0, generator=torch.Generator().manual_seed(0))
    assert len(calls) == 5 and all(torch.equal(c[2], brain) for c in calls)   # one conditional pass per step
    assert [int(c[1][0]) for c in calls] == [99, 74, 50, 25, 0]
    calls.clear()
    prior.sample(brain, steps=5, guidance_scale=2.0, generator=torch.Generator().manual_seed(0))
    assert len(calls) == 10


def test_network_knows_which_brain_token_is_which():
    # rotary positions: without them, attention over the brain tokens would be blind to their order
    net = tiny_prior().net.eval()
    brain, noisy, t = tokens(2, 0), tokens(2, 1), torch.tensor([10, 90])
    with torch.no_grad():
        out = net(noisy, t, brain)
        swapped = net(noisy, t, brain[:, [1, 0, 3, 2]])
    assert (out - swapped).abs().max() > 1e-3


def test_eval_mode_batch_invariance():
    prior = tiny_prior().eval()
    brain, noisy, t = tokens(5, 0), tokens(5, 1), torch.tensor([0, 20, 40, 60, 99])
    with torch.no_grad():
        together = prior.predict_x0(noisy, t, brain, guidance_scale=2.0)
        alone = torch.cat([prior.predict_x0(noisy[i:i + 1], t[i:i + 1], brain[i:i + 1], guidance_scale=2.0)
                           for i in range(5)])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------------ learning
def test_tiny_prior_learns_a_toy_mapping():
    """Image tokens = brain tokens x a fixed orthogonal matrix: 200 steps cut the loss and the samples follow
    their own targets, not another item's."""
    prior = tiny_prior(seed=0)
    mixing = torch.linalg.qr(torch.randn(D, D, generator=torch.Generator().manual_seed(1)))[0]

    def pairs(n_items: int, generator: torch.Generator):
        brain = torch.randn(n_items, N, D, generator=generator)
        return brain, brain @ mixing

    eval_brain, eval_image = pairs(256, torch.Generator().manual_seed(123))

    def eval_loss() -> float:
        prior.eval()
        with torch.no_grad():
            loss = prior.loss(eval_brain, eval_image, torch.Generator().manual_seed(7)).item()
        prior.train()
        return loss

    before = eval_loss()
    optimizer = torch.optim.AdamW(prior.parameters(), lr=1e-2, weight_decay=0.0)
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        loss = prior.loss(*pairs(64, generator), generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = eval_loss()
    assert after < 0.6 * before

    samples = prior.eval().sample(eval_brain, generator=torch.Generator().manual_seed(5))
    own, other = mean_correlation(samples, eval_image), mean_correlation(samples, eval_image.roll(1, 0))
    assert own > 0.4 and own > other + 0.3
