"""Closed-form ridge regression fMRI -> targets, with the penalty chosen on a validation split.

    W(lam) = (Xc' Xc + lam I)^-1 Xc' Yc          primal: a p x p system (p voxels <= n samples)
           = Xc' (Xc Xc' + lam I)^-1 Yc          dual:   an n x n system (n samples < p voxels)
    Y_hat  = (X - mean_X) W + mean_Y

Both forms give the same W; the smaller Gram matrix is decomposed once (``eigh``), after which every penalty
of the grid costs one matrix product, so the penalty is picked by validation error at little extra cost.  The
penalty grid is relative to the mean eigenvalue of the Gram matrix (the data's own scale), so the same grid
serves any voxel count.  Used as the Perception Reconstructor's baseline (fMRI -> the same VAE latents) and as
the Semantics Reconstructor's fMRI -> low-dimensional mapping (paper Eq. 3).

Computation is in float64 with torch (any device); inputs and outputs are numpy arrays or tensors.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

#: penalties tried, relative to the mean eigenvalue of the Gram matrix
DEFAULT_RELATIVE_LAMBDAS = tuple(float(x) for x in np.logspace(-2, 4, 13))


def _as64(x, device) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    return t.to(device=device, dtype=torch.float64)


@dataclass
class RidgeRegression:
    """Ridge regression with closed-form fits and validation-chosen penalty.

    Args:
        lambdas: absolute penalties to try; default ``relative_lambdas`` x the Gram matrix's mean eigenvalue.
        relative_lambdas: the relative grid used when ``lambdas`` is None.
        form: ``"auto"`` (primal when p <= n, else dual), ``"primal"`` or ``"dual"``.
        per_target: choose a penalty per target column (else one for all, by mean validation error).
        device: where to compute (``"cpu"``, ``"cuda"``).

    After :meth:`fit`: ``coef_`` (p, k) float64 tensor, ``intercept_`` (k,), ``x_mean_`` (p,), ``lambda_`` (a
    float, or (k,) with ``per_target``), ``form_``, ``val_mse_`` {lambda: mean validation MSE} (empty without
    a validation split).
    """

    lambdas: tuple | None = None
    relative_lambdas: tuple = DEFAULT_RELATIVE_LAMBDAS
    form: str = "auto"
    per_target: bool = False
    device: str = "cpu"
    coef_: torch.Tensor | None = field(default=None, repr=False)
    intercept_: torch.Tensor | None = field(default=None, repr=False)
    x_mean_: torch.Tensor | None = field(default=None, repr=False)
    lambda_: float | torch.Tensor | None = None
    form_: str | None = None
    val_mse_: dict = field(default_factory=dict, repr=False)

    def fit(self, x, y, x_val=None, y_val=None) -> "RidgeRegression":
        """Fit on ``x`` (n, p), ``y`` (n, k); pick the penalty on (``x_val``, ``y_val``) if given, else the
        grid's only value (a grid of several without validation data is an error)."""
        x, y = _as64(x, self.device), _as64(y, self.device)
        if x.ndim != 2 or y.ndim != 2 or len(x) != len(y):
            raise ValueError(f"ridge: expected x (n, p) and y (n, k) with the same n, found {tuple(x.shape)} "
                             f"and {tuple(y.shape)}")
        n, p = x.shape
        if self.form not in ("auto", "primal", "dual"):
            raise ValueError(f"ridge: form must be 'auto', 'primal' or 'dual', found {self.form!r}")
        form = self.form if self.form != "auto" else ("primal" if p <= n else "dual")
        self.x_mean_, self.intercept_ = x.mean(0), y.mean(0)
        xc, yc = x - self.x_mean_, y - self.intercept_
        gram = xc.T @ xc if form == "primal" else xc @ xc.T                # (p, p) or (n, n)
        s, vecs = torch.linalg.eigh(gram)
        s = s.clamp_min(0)
        lambdas = (torch.tensor(self.lambdas, dtype=torch.float64) if self.lambdas is not None
                   else torch.tensor(self.relative_lambdas, dtype=torch.float64) * float(s.mean()))
        a = vecs.T @ (xc.T @ yc if form == "primal" else yc)               # eigenbasis coefficients (d, k)
        if x_val is None:
            if len(lambdas) != 1:
                raise ValueError("ridge: several penalties to choose from but no validation data; pass "
                                 "x_val and y_val, or a single lambda (lambdas=(value,))")
            best = lambdas.expand(y.shape[1]) if self.per_target else float(lambdas[0])
            self.val_mse_ = {}
        else:
            xv, yv = _as64(x_val, self.device), _as64(y_val, self.device)
            xvc = xv - self.x_mean_
            b = xvc @ vecs if form == "primal" else (xvc @ xc.T) @ vecs   # validation rows in the eigenbasis
            errors = torch.stack([(((b / (s + lam)) @ a + self.intercept_ - yv) ** 2).mean(0) for lam in lambdas])
            self.val_mse_ = {float(lam): float(e.mean()) for lam, e in zip(lambdas, errors)}
            best = lambdas[errors.argmin(0)] if self.per_target else float(lambdas[errors.mean(1).argmin()])
        self.lambda_, self.form_ = best, form
        if self.per_target:
            coef_eig = a / (s[:, None] + best[None, :].to(s))              # (d, k), one penalty per column
        else:
            coef_eig = a / (s[:, None] + best)
        self.coef_ = vecs @ coef_eig if form == "primal" else xc.T @ (vecs @ coef_eig)
        return self

    def predict(self, x):
        """(m, p) -> (m, k); numpy in, numpy (float32) out; tensor in, float64 tensor out."""
        if self.coef_ is None:
            raise RuntimeError("ridge: call fit() before predict()")
        out = (_as64(x, self.device) - self.x_mean_) @ self.coef_ + self.intercept_
        return out if isinstance(x, torch.Tensor) else out.float().cpu().numpy()
