"""One training loop for the trainable NeuroClips models (PR, SR), on accelerate: CPU, one GPU or several.

:func:`fit` trains ``model`` by ``loss_fn`` with AdamW and a OneCycle schedule (paper App. A; the official
code's max lr 3e-4, ``pct_start = 2 / epochs``, ``final_div_factor = 1000``), bf16 autocast on a GPU and
full precision on a CPU, and keeps the epoch that scores best on a validation split of the *training* data
(the official code selects on the test set; never do that).  Files in ``work_dir``::

    last.pt        model + optimizer + schedule + history after the last finished epoch (atomic rename)
    best.pt        the model weights of the best validation epoch so far (atomic rename)
    history.json   per-epoch train/validation means, learning rate, time; the training loss every few steps

Why a run resumes exactly: epoch ``e``'s shuffling and every random draw in it (dropout, noise) come from
seeds derived from ``(seed, e)``, not from the RNG state a previous epoch left, so restarting from ``last.pt``
after epoch ``e`` replays epochs ``e+1..`` exactly as a straight run does (on the same machine, thread count
and device).  A checkpoint made with other settings or another model refuses to resume (the message says what
differs and what to do).

``loss_fn(model, batch, generator) -> (loss, {part: float})`` runs under autocast, in train mode for training
and eval mode (no grad) for validation; validation averages the loss and its parts (weighted by batch size)
and ``eval_fn(model, batch) -> {name: float}`` if given, and selects on ``settings.select``.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch


class TrainError(RuntimeError):
    """Training cannot start or continue; the message says what was expected, what was found and what to do."""


@dataclass(frozen=True)
class FitSettings:
    """What defines a training run (a checkpoint resumes only under the same settings).

    Attributes:
        epochs, batch_size: the run's length and the batch size (per process).
        lr: OneCycle's maximum learning rate (3e-4 in App. A).
        weight_decay: AdamW decay of matrices (biases, norms and mixing scalars are not decayed).
        betas: AdamW betas; OneCycle cycles beta1 between 0.85 and 0.95 as torch does by default.
        pct_start: warm-up fraction of OneCycle; None = 2 / epochs (the official code's), at most 0.3.
        div_factor, final_div_factor: OneCycle's start lr = lr / div_factor, end lr = start / final_div_factor.
        grad_clip: max gradient norm (None: no clipping, as the official code).
        select, mode: the validation entry that selects the kept epoch and whether lower or higher is better.
        patience: stop after this many epochs without a better validation score (None: never).
        seed: seeds shuffling, initial state of each epoch's RNG, everything random.
        log_every: optimizer steps per record of the training loss in the history.
        mixed_precision: "auto" (bf16 on a GPU, none on a CPU), "no" or "bf16".
    """

    epochs: int
    batch_size: int
    lr: float = 3e-4
    weight_decay: float = 0.01
    betas: tuple = (0.9, 0.999)
    pct_start: float | None = None
    div_factor: float = 25.0
    final_div_factor: float = 1000.0
    grad_clip: float | None = None
    select: str = "loss"
    mode: str = "min"
    patience: int | None = None
    seed: int = 0
    log_every: int = 10
    mixed_precision: str = "auto"

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"FitSettings: epochs and batch_size must be >= 1, found {self.epochs}, {self.batch_size}")
        if self.mode not in ("min", "max"):
            raise ValueError(f"FitSettings.mode must be 'min' or 'max', found {self.mode!r}")
        if self.mixed_precision not in ("auto", "no", "bf16"):
            raise ValueError(f"FitSettings.mixed_precision must be 'auto', 'no' or 'bf16', "
                             f"found {self.mixed_precision!r}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d


@dataclass
class FitResult:
    model: torch.nn.Module      # unwrapped, with the best validation epoch's weights, eval mode
    history: dict               # what history.json holds
    best_epoch: int             # 1-based
    best_score: float
    finished: bool              # False when stopped by ``stop_after_epochs`` (run again to continue)
    resumed_from: int           # epochs already done when this call started (0: fresh)


class EpochShuffle(torch.utils.data.Sampler):
    """A permutation of ``range(n)`` that is a pure function of (seed, epoch): :meth:`set_epoch` each epoch."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = int(n), int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        return iter(np.random.default_rng([self.seed, self.epoch, 0x5A3]).permutation(self.n).tolist())

    def __len__(self) -> int:
        return self.n


def epoch_seed(seed: int, epoch: int, process: int = 0) -> int:
    return int(np.random.SeedSequence([seed, epoch, process, 0xE90C]).generate_state(1, np.uint32)[0])


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Matrices and kernels decay; biases, norm scales and mixing scalars (< 2-D) do not."""
    decay, keep = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else keep).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": keep, "weight_decay": 0.0}]


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def write_json_atomic(path: str | os.PathLike, obj) -> Path:
    """Write ``obj`` as indented JSON through a temp file and a rename (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)
    return path


def _differences(saved, wanted, prefix: str = "") -> list[str]:
    if isinstance(saved, dict) and isinstance(wanted, dict):
        out = []
        for k in sorted(set(saved) | set(wanted)):
            out += _differences(saved.get(k, "<absent>"), wanted.get(k, "<absent>"), f"{prefix}{k}.")
        return out
    return [] if saved == wanted else [f"{prefix.rstrip('.')}: checkpoint {saved!r}, now {wanted!r}"]


def read_history(work_dir: str | os.PathLike) -> dict:
    """The ``history.json`` of a run (``{}`` if there is none yet)."""
    path = Path(work_dir) / "history.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _accelerator(device: str | torch.device, mixed_precision: str):
    from accelerate import Accelerator

    device = torch.device("cuda" if str(device) == "auto" and torch.cuda.is_available() else
                          "cpu" if str(device) == "auto" else device)
    on_gpu = device.type == "cuda"
    mp = ("bf16" if on_gpu else "no") if mixed_precision == "auto" else mixed_precision
    if mp == "bf16" and not on_gpu:
        mp = "no"        # bf16 autocast is for GPUs; on a CPU it is no faster here and changes the numbers
    return Accelerator(cpu=not on_gpu, mixed_precision=mp, rng_types=[])


def fit(model: torch.nn.Module, loss_fn: Callable, train_data, val_data, settings: FitSettings,
        work_dir: str | os.PathLike, *, identity: dict | None = None, collate_fn=None,
        eval_fn: Callable | None = None, device: str | torch.device = "auto", progress: bool = True,
        stop_after_epochs: int | None = None, num_workers: int = 0) -> FitResult:
    """Train ``model`` on ``train_data``, select on ``val_data``, checkpoint every epoch, resume if possible.

    Args:
        model: a fresh model (its weights are replaced by the checkpoint's when resuming).
        loss_fn: ``loss_fn(model, batch, generator) -> (loss tensor, {part: float})``.
        train_data, val_data: map-style datasets; ``set_epoch(epoch)`` is called on them if they have it.
        settings: :class:`FitSettings`.
        work_dir: ``last.pt``, ``best.pt`` and ``history.json`` go here.
        identity: what else defines the run (model config, data fingerprint, ...); checked on resume.
        collate_fn: the DataLoader's collate function (default torch's).
        eval_fn: extra validation measures, ``eval_fn(model, batch) -> {name: float}`` (batch means).
        device: "auto", "cpu", "cuda", "cuda:N" (several GPUs: launch with ``accelerate launch``).
        progress: tqdm bars (main process only).
        stop_after_epochs: stop once this many epochs are done in total (to split a run; rerun to continue).

    Returns:
        :class:`FitResult` with the model holding the best validation epoch's weights.

    Raises:
        TrainError: ``work_dir`` holds a checkpoint of another run, or the loss is not finite.
    """
    from tqdm.auto import tqdm

    s = settings
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    acc = _accelerator(device, s.mixed_precision)
    identity = {"settings": s.to_dict(), **(identity or {})}
    sampler = EpochShuffle(len(train_data), s.seed)
    train_loader = torch.utils.data.DataLoader(train_data, batch_size=s.batch_size, sampler=sampler,
                                               collate_fn=collate_fn, num_workers=num_workers)
    val_loader = torch.utils.data.DataLoader(val_data, batch_size=s.batch_size, shuffle=False,
                                             collate_fn=collate_fn, num_workers=num_workers)
    optimizer = torch.optim.AdamW(_param_groups(model, s.weight_decay), lr=s.lr, betas=tuple(s.betas))
    model, optimizer, train_loader, val_loader = acc.prepare(model, optimizer, train_loader, val_loader)
    steps_per_epoch = len(train_loader)
    pct = s.pct_start if s.pct_start is not None else min(0.3, 2 / s.epochs)
    # stepped by hand once per optimizer step (not prepared), so the schedule is the same on any number of GPUs
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=s.lr, total_steps=s.epochs * steps_per_epoch,
                                                    pct_start=pct, div_factor=s.div_factor,
                                                    final_div_factor=s.final_div_factor)
    sign = 1.0 if s.mode == "min" else -1.0
    history = {"settings": s.to_dict(), "epochs": [], "steps": [], "best_epoch": None, "best": None}
    start_epoch, best, stale = 0, math.inf, 0
    last_path, best_path = work / "last.pt", work / "best.pt"
    raw = acc.unwrap_model(model)
    if last_path.is_file():
        ckpt = torch.load(last_path, map_location="cpu", weights_only=False)
        diff = _differences(ckpt["identity"], _jsonable(identity))
        if diff:
            raise TrainError(f"{last_path} was made by a different run ({'; '.join(diff[:6])}), so it cannot be "
                             f"resumed. Rerun with the same settings to continue it, or delete {work} to start over.")
        raw.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        history, start_epoch, stale = ckpt["history"], ckpt["epoch"], ckpt["stale"]
        best = sign * history["best"] if history["best"] is not None else math.inf
        if progress and acc.is_main_process and start_epoch < s.epochs:
            print(f"resuming {work} after epoch {start_epoch}/{s.epochs}", flush=True)
    resumed_from = start_epoch

    stopped_early = False
    for epoch in range(start_epoch, s.epochs):
        if stop_after_epochs is not None and epoch >= stop_after_epochs:
            break
        if s.patience is not None and stale >= s.patience:
            stopped_early = True
            break
        t0 = time.monotonic()
        torch.manual_seed(epoch_seed(s.seed, epoch, acc.process_index))   # dropout etc. of this epoch
        generator = torch.Generator().manual_seed(epoch_seed(s.seed, epoch, acc.process_index) + 1)
        # the prepared loader re-sets its sampler's epoch from its own counter at every pass: set both
        sampler.set_epoch(epoch)
        if hasattr(train_loader, "set_epoch"):
            train_loader.set_epoch(epoch)
        for data in (train_data, val_data):
            if hasattr(data, "set_epoch"):
                data.set_epoch(epoch)
        model.train()
        sums, count, window = {}, 0, []
        bar = tqdm(train_loader, desc=f"epoch {epoch + 1}/{s.epochs}", leave=False,
                   disable=not (progress and acc.is_main_process))
        for i, batch in enumerate(bar):
            with acc.autocast():
                loss, parts = loss_fn(model, batch, generator)
            if not torch.isfinite(loss):
                raise TrainError(f"the loss became {loss.item()} in epoch {epoch + 1}; lower lr (now {s.lr}) or set "
                                 f"grad_clip, then delete {work} and rerun")
            optimizer.zero_grad(set_to_none=True)
            acc.backward(loss)
            if s.grad_clip is not None:
                acc.clip_grad_norm_(model.parameters(), s.grad_clip)
            optimizer.step()
            lr = scheduler.get_last_lr()[0]             # the rate this step used (recorded before stepping)
            scheduler.step()
            n = _batch_size(batch)
            record = {"loss": float(loss.detach()), **parts}
            for k, v in record.items():
                sums[k] = sums.get(k, 0.0) + v * n
            count += n
            window.append(record["loss"])
            if len(window) == s.log_every:
                history["steps"].append({"step": epoch * steps_per_epoch + i + 1,
                                         "epoch": epoch + 1, "loss": float(np.mean(window)), "lr": lr})
                window = []
            bar.set_postfix(loss=f"{record['loss']:.4f}")
        train_means = {k: v / max(count, 1) for k, v in sums.items()}
        # validation draws (if the loss draws any) are the same every epoch, so epochs compare fairly
        val = _validate(model, loss_fn, eval_fn, val_loader, acc, torch.Generator().manual_seed(s.seed))
        if s.select not in val:
            raise TrainError(f"settings.select={s.select!r} is not among the validation measures {sorted(val)}; "
                             "choose one of them")
        score = sign * val[s.select]
        improved = score < best
        if improved:
            best, stale = score, 0
            history["best_epoch"], history["best"] = epoch + 1, val[s.select]
            if acc.is_main_process:
                _atomic_save({"epoch": epoch + 1, "score": val[s.select], "model": raw.state_dict()}, best_path)
        else:
            stale += 1
        history["epochs"].append({"epoch": epoch + 1, "train": train_means, "val": val,
                                  "lr": lr, "seconds": round(time.monotonic() - t0, 2),
                                  "best": improved})
        if progress and acc.is_main_process:
            print(f"epoch {epoch + 1}/{s.epochs}: train loss {train_means.get('loss', float('nan')):.4f}  "
                  f"val {s.select} {val[s.select]:.4f}{'  (best)' if improved else ''}  "
                  f"{time.monotonic() - t0:.0f} s", flush=True)
        acc.wait_for_everyone()
        if acc.is_main_process:
            _atomic_save({"identity": _jsonable(identity), "epoch": epoch + 1, "stale": stale, "history": history,
                          "model": raw.state_dict(), "optimizer": optimizer.state_dict(),
                          "scheduler": scheduler.state_dict()}, last_path)
            write_json_atomic(work / "history.json", history)

    done = len(history["epochs"])
    finished = done >= s.epochs or stopped_early or (s.patience is not None and stale >= s.patience)
    if best_path.is_file():
        raw.load_state_dict(torch.load(best_path, map_location="cpu", weights_only=False)["model"])
    raw.eval()
    return FitResult(raw, history, history["best_epoch"] or 0,
                     history["best"] if history["best"] is not None else float("nan"), finished, resumed_from)


def _batch_size(batch) -> int:
    if isinstance(batch, dict):
        batch = next(iter(batch.values()))
    if isinstance(batch, (list, tuple)):
        batch = batch[0]
    return int(batch.shape[0]) if hasattr(batch, "shape") else 1


@torch.no_grad()
def _validate(model, loss_fn, eval_fn, loader, acc, generator) -> dict:
    """Batch-size-weighted means of the loss, its parts and ``eval_fn``'s measures over ``loader``, summed
    across processes."""
    model.eval()
    sums: dict[str, float] = {}
    count = 0
    for batch in loader:
        with acc.autocast():
            loss, parts = loss_fn(model, batch, generator)
            extra = eval_fn(model, batch) if eval_fn is not None else {}
        n = _batch_size(batch)
        for k, v in {"loss": float(loss), **parts, **extra}.items():
            sums[k] = sums.get(k, 0.0) + float(v) * n
        count += n
    keys = sorted(sums)
    totals = torch.tensor([sums[k] for k in keys] + [count], dtype=torch.float64, device=acc.device)
    totals = acc.reduce(totals, reduction="sum") if acc.num_processes > 1 else totals
    return {k: float(totals[i] / totals[-1]) for i, k in enumerate(keys)}


def _jsonable(obj):
    """A JSON round trip, so a freshly built identity compares equal to the one a checkpoint stored."""
    return json.loads(json.dumps(obj, default=str))
