"""neuroclips_core.train.fit (seeded, resumable, validation-selected training on accelerate) and
neuroclips_core.models.ridge (closed-form ridge with validation-chosen penalty)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from neuroclips_core.models.ridge import RidgeRegression
from neuroclips_core.train import FitSettings, TrainError, fit, read_history

torch.set_num_threads(1)


# -------------------------------------------------------------------------------------------------- fit
class _Pairs(torch.utils.data.Dataset):
    """y = x @ w + noise, as dict items; ``set_epoch`` recorded to check the loop calls it."""

    def __init__(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 8, generator=g)
        self.y = self.x @ torch.linspace(-1, 1, 8)[:, None] + 0.1 * torch.randn(n, 1, generator=g)
        self.epochs = []

    def set_epoch(self, epoch):
        self.epochs.append(epoch)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "y": self.y[i]}


def _model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Dropout(0.2), torch.nn.Linear(16, 1))


def _loss(model, batch, generator):
    # a random draw from the loop's generator, so resuming must also replay it
    noise = 0.01 * torch.randn(batch["y"].shape, generator=generator)
    err = model(batch["x"]) - batch["y"] - noise
    return (err ** 2).mean(), {"mae": float(err.detach().abs().mean())}


SETTINGS = FitSettings(epochs=4, batch_size=16, lr=1e-2, seed=3, log_every=2)


def _fit(tmp, settings=SETTINGS, **kw):
    return fit(_model(), _loss, _Pairs(64, 1), _Pairs(32, 2), settings, tmp, device="cpu", progress=False, **kw)


def _weights(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_same_seed_same_run(tmp_path):
    a, b = _fit(tmp_path / "a"), _fit(tmp_path / "b")
    assert torch.equal(_weights(a.model), _weights(b.model))
    assert a.history["epochs"][-1]["train"] == b.history["epochs"][-1]["train"]
    c = _fit(tmp_path / "c", FitSettings(**{**SETTINGS.to_dict(), "seed": 4}))
    assert not torch.equal(_weights(a.model), _weights(c.model))


def test_interrupted_run_resumes_to_the_straight_run(tmp_path):
    straight = _fit(tmp_path / "straight")
    part = _fit(tmp_path / "split", stop_after_epochs=2)
    assert not part.finished and len(part.history["epochs"]) == 2
    resumed = _fit(tmp_path / "split")                       # a fresh model object, state from last.pt
    assert resumed.finished and resumed.resumed_from == 2
    assert torch.equal(_weights(straight.model), _weights(resumed.model))
    strip = lambda h: [{k: v for k, v in e.items() if k != "seconds"} for e in h["epochs"]]  # noqa: E731
    assert strip(straight.history) == strip(resumed.history)
    assert straight.history["steps"] == resumed.history["steps"]


def test_finished_run_is_not_trained_again(tmp_path):
    first = _fit(tmp_path)
    again = _fit(tmp_path)
    assert again.resumed_from == SETTINGS.epochs and torch.equal(_weights(first.model), _weights(again.model))


def test_checkpoint_of_another_run_is_refused(tmp_path):
    _fit(tmp_path, stop_after_epochs=1)
    with pytest.raises(TrainError, match=r"settings\.lr: checkpoint 0\.01, now 0\.02"):
        _fit(tmp_path, FitSettings(**{**SETTINGS.to_dict(), "lr": 2e-2}))
    with pytest.raises(TrainError, match="delete"):
        _fit(tmp_path, identity={"data": "other"})


def test_keeps_the_best_validation_epoch_not_the_last(tmp_path):
    class _Val(_Pairs):
        def set_epoch(self, epoch):
            self.epoch = epoch

    val, snapshots = _Val(32, 2), {}

    def eval_fn(model, batch):                 # validation scores 3, 1, 2, 5: epoch 2 is the best
        snapshots.setdefault(val.epoch, _weights(model).clone())
        return {"score": [3.0, 1.0, 2.0, 5.0][val.epoch]}

    settings = FitSettings(**{**SETTINGS.to_dict(), "select": "score"})
    r = fit(_model(), _loss, _Pairs(64, 1), val, settings, tmp_path, eval_fn=eval_fn, device="cpu", progress=False)
    assert r.best_epoch == 2 and r.best_score == 1.0
    assert torch.equal(_weights(r.model), snapshots[1])
    assert not torch.equal(_weights(r.model), snapshots[3])
    assert [e["best"] for e in r.history["epochs"]] == [True, True, False, False]


def test_patience_stops_early(tmp_path):
    class _Val(_Pairs):
        def set_epoch(self, epoch):
            self.epoch = epoch

    val = _Val(32, 2)
    settings = FitSettings(**{**SETTINGS.to_dict(), "select": "s", "patience": 2})
    r = fit(_model(), _loss, _Pairs(64, 1), val, settings, tmp_path, eval_fn=lambda m, b: {"s": float(val.epoch)},
            device="cpu", progress=False)
    assert r.finished and len(r.history["epochs"]) == 3 and r.best_epoch == 1


def test_one_cycle_schedule_and_files(tmp_path):
    train = _Pairs(64, 1)
    r = fit(_model(), _loss, train, _Pairs(32, 2), SETTINGS, tmp_path, device="cpu", progress=False)
    assert list(dict.fromkeys(train.epochs)) == [0, 1, 2, 3]          # set (perhaps repeatedly) each epoch
    lrs = [s["lr"] for s in r.history["steps"]]
    peak = int(np.argmax(lrs))
    assert max(lrs) == pytest.approx(SETTINGS.lr, rel=0.05)          # 2/epochs = 50 % warm-up capped at 30 %
    assert 0 < peak < len(lrs) - 1
    assert r.history["epochs"][-1]["lr"] == pytest.approx(SETTINGS.lr / 25 / 1000, rel=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "history.json", "last.pt"]  # no temp files
    assert json.loads((tmp_path / "history.json").read_text()) == read_history(tmp_path)
    assert [s["step"] for s in r.history["steps"]] == list(range(2, 17, 2))   # 4 steps/epoch, log every 2


def test_non_finite_loss_is_a_clear_error(tmp_path):
    def bad(model, batch, generator):
        return model(batch["x"]).mean() * float("nan"), {}

    with pytest.raises(TrainError, match="lower lr"):
        fit(_model(), bad, _Pairs(64, 1), _Pairs(32, 2), SETTINGS, tmp_path, device="cpu", progress=False)


# ------------------------------------------------------------------------------------------------ ridge
def _ridge_data(n, p, k, noise, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, p))
    w = rng.standard_normal((p, k))
    return x, x @ w + 3.0 + noise * rng.standard_normal((n, k)), w


def _direct(x, y, lam):
    xc, yc = x - x.mean(0), y - y.mean(0)
    return np.linalg.solve(xc.T @ xc + lam * np.eye(x.shape[1]), xc.T @ yc)


@pytest.mark.parametrize("n,p", [(60, 20), (20, 60)])
def test_primal_and_dual_equal_the_direct_solution(n, p):
    x, y, _ = _ridge_data(n, p, 5, 0.5)
    direct = _direct(x, y, 7.0)
    for form in ("primal", "dual"):
        r = RidgeRegression(lambdas=(7.0,), form=form).fit(x, y)
        np.testing.assert_allclose(r.coef_.numpy(), direct, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(r.predict(x[:3]), (x[:3] - x.mean(0)) @ direct + y.mean(0), rtol=1e-5)
    assert RidgeRegression(lambdas=(7.0,)).fit(x, y).form_ == ("primal" if p <= n else "dual")


def test_penalty_is_the_validation_minimiser_and_recovers_weights():
    x, y, w = _ridge_data(200, 30, 4, 0.1, seed=1)
    xv, yv, _ = _ridge_data(100, 30, 4, 0.1, seed=2)
    yv = xv @ w + 3.0 + 0.1 * np.random.default_rng(3).standard_normal(yv.shape)
    r = RidgeRegression().fit(x, y, xv, yv)
    brute = {lam: float((((xv - x.mean(0)) @ _direct(x, y, lam) + y.mean(0) - yv) ** 2).mean()) for lam in r.val_mse_}
    assert r.lambda_ == min(brute, key=brute.get)
    for lam, mse in brute.items():
        assert r.val_mse_[lam] == pytest.approx(mse, rel=1e-8)
    np.testing.assert_allclose(r.coef_.numpy(), w, atol=0.05)


def test_per_target_penalty_grows_with_noise():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((80, 40))
    xv = rng.standard_normal((80, 40))
    w = rng.standard_normal((40, 1)) * 0.3
    clean, noisy = x @ w, x @ w + 5.0 * rng.standard_normal((80, 1))
    y = np.hstack([clean, noisy])
    yv = np.hstack([xv @ w, xv @ w + 5.0 * rng.standard_normal((80, 1))])
    r = RidgeRegression(per_target=True).fit(x, y, xv, yv)
    assert r.lambda_[1] > r.lambda_[0]


def test_ridge_input_errors():
    x, y, _ = _ridge_data(10, 4, 2, 0.1)
    with pytest.raises(ValueError, match="validation"):
        RidgeRegression().fit(x, y)
    with pytest.raises(ValueError, match="same n"):
        RidgeRegression(lambdas=(1.0,)).fit(x, y[:5])
    with pytest.raises(RuntimeError, match="fit"):
        RidgeRegression().predict(x)
