"""One seeded, logged, resumable training loop for every stand-in.

A :class:`Recipe` says what is trained (``build``), on what (``loss`` draws corpus batch ``step``), how it is
saved (``export``, the objects ``save_role`` takes) and how it is judged (``evaluate``, on the saved and reloaded
model).  :func:`train_role` runs it::

    WORK/<role>/checkpoint.pt   model + optimizer + LR schedule + step + RNG states + elapsed time
    WORK/<role>/log.jsonl       one line every ``log_every`` steps: mean loss (and its parts), lr, grad norm
    OUT/<role>/                 save_role's layout (the shipped folder) + stamp.json + training_log.jsonl

Why it resumes exactly: batch ``k`` is a pure function of ``(seed, k)`` (:mod:`..corpus`), every random draw of
step ``k`` comes from a generator seeded by ``(seed, role, k)``, and the checkpoint restores the optimizer and
schedule, so a run interrupted at step ``k`` and restarted ends with the weights of a straight run (on the same
machine and thread count).  Checkpoints are written every ``checkpoint_every`` steps or ``checkpoint_minutes``,
whichever comes first, atomically; a killed run loses at most that much.  Training state lives in WORK, not in
OUT, because ``save_role`` replaces OUT/<role> as a whole and the shipped folder must stay small.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import shutil
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...data.simulate import SIMULATOR_VERSION
from ..loaders import load_role, save_role


TRAINING_LOG = "training_log.jsonl"     # copy of WORK/<role>/log.jsonl in the saved role folder


class TrainError(RuntimeError):
    """A training run cannot continue; the message says what was expected, what was found and what to do."""


@dataclass(frozen=True)
class TrainConfig:
    """What defines a training run: stamped into ``stamp.json``; a checkpoint resumes only under the same one.

    Role recipes subclass it with their model sizes.  The LR schedule is warmup-stable-decay: linear warmup
    over ``warmup`` steps, constant, then a cosine down to ``min_lr`` x ``lr`` over the last ``decay`` fraction
    of ``steps``.  So a run that proves too short can be lengthened: while it has not reached its decay phase,
    rerunning with a larger ``steps`` resumes it exactly as a straight run of the larger count would have gone
    (the other fields must stay the same).  Stop a run early with :attr:`RunOptions.max_steps`.
    """

    steps: int
    batch: int
    lr: float
    weight_decay: float = 0.05
    warmup: int = 100
    min_lr: float = 0.05
    decay: float = 0.2           # fraction of ``steps`` spent in the final cosine decay
    grad_clip: float = 1.0
    bf16: bool = False           # bf16 autocast of the forward pass (fp32 master weights): no faster than fp32
    #                              for these small models on a 2-core AVX512-BF16 CPU; worth trying on a GPU
    eval_size: int = 512         # held-out items the final evaluation uses
    save_dtype: str = "float16"  # dtype of the shipped safetensors (loaded back as float32)


@dataclass
class RunOptions:
    """How a run is executed (not part of the stamped config)."""

    log_every: int = 25
    checkpoint_every: int = 250
    checkpoint_minutes: float = 3.0
    max_steps: int | None = None       # stop (with a checkpoint, without exporting) once this many steps are done
    max_minutes: float | None = None   # same, after this many minutes of training in this call
    device: str = "cpu"
    verbose: bool = True


@dataclass
class TrainResult:
    role: str
    finished: bool          # False: stopped by max_steps / max_minutes; rerun to continue
    step: int
    train_seconds: float    # summed over every resumed part
    steps_per_second: float # in this call
    metrics: dict
    folder: Path | None     # the saved role folder when finished


class Recipe:
    """One stand-in's training recipe.  Subclasses set ``role`` and ``config_class`` and implement the methods.

    Attributes set by the constructor: ``config`` (a :class:`TrainConfig` subclass), ``seed``, ``out`` (the
    output root, holding every role's folder: a recipe may read another role's result, e.g. the VAE is judged
    by the frame classifier), ``device``.
    """

    role: str = ""
    config_class: type = TrainConfig

    def __init__(self, config: TrainConfig, seed: int, out: Path, device: str = "cpu"):
        if not isinstance(config, self.config_class):
            raise TypeError(f"{self.role}: expected a {self.config_class.__name__}, got {type(config).__name__}")
        self.config, self.seed, self.out, self.device = config, seed, Path(out), device

    def build(self) -> torch.nn.Module:
        """The fresh, seeded model that is trained (on CPU; the loop moves it)."""
        raise NotImplementedError

    def loss(self, model: torch.nn.Module, step: int, generator: torch.Generator) -> tuple[torch.Tensor, dict]:
        """(scalar loss, {name: float} parts to log) on corpus batch ``step``; runs under the loop's autocast."""
        raise NotImplementedError

    def export(self, model: torch.nn.Module):
        """The objects ``save_role(self.role, ...)`` takes, in ``config.save_dtype`` (copies: ``model`` is kept)."""
        raise NotImplementedError

    def evaluate(self, loaded) -> dict:
        """Held-out metrics of ``load_role``'s result (float32, eval mode)."""
        raise NotImplementedError

    def uses(self) -> tuple[str, ...]:
        """The earlier roles whose trained weights this run starts from or works with (read from ``out``)."""
        return ()

    def role_folder(self, role: str) -> Path:
        return self.out / role

    def provenance(self) -> dict:
        """What else the run depends on: the sha256 of each used role's weights; checked on resume, stamped."""
        return {f"{role}_sha256": weights_sha256(self.role_folder(role)) for role in self.uses()}

    def prerequisites(self, roles: tuple[str, ...] | None = None) -> list[str]:
        """``roles`` (default :meth:`uses`) and every role they use in turn, in training order."""
        from . import RECIPES       # the registry imports this module

        seen, todo = set(), list(self.uses() if roles is None else roles)
        while todo:
            role = todo.pop()
            if role not in seen:
                seen.add(role)
                recipe = RECIPES[role]
                todo += recipe(recipe.full_config(), self.seed, self.out).uses()
        return [r for r in RECIPES if r in seen]

    def require(self, *roles: str) -> None:
        """Raise :class:`TrainError` naming the command to run if a role in ``roles`` is not trained in ``out``."""
        missing = [r for r in roles if weights_sha256(self.role_folder(r)) is None]
        if missing:
            names = " and ".join([", ".join(missing[:-1]), missing[-1]] if len(missing) > 1 else missing)
            order = ",".join([*self.prerequisites(tuple(roles)), self.role])
            raise TrainError(
                f"{self.role} needs the trained {names}, expected in "
                f"{', '.join(str(self.role_folder(r)) for r in missing)}, which hold{'s' if len(missing) == 1 else ''} "
                f"none. Train them first, in this order: python -m neuroclips_core train-standins --roles "
                f"{order} (with the same --out).")

    def no_decay(self, name: str, param: torch.nn.Parameter) -> bool:
        """Parameters kept out of weight decay: biases, norms, embeddings and tokens (any tensor under 2-D)."""
        return param.ndim < 2 or "embedding" in name or "token" in name

    def lr_factor(self, step: int) -> float:
        """The schedule's multiplier of every group's LR at ``step`` (default: :func:`lr_factor` of the config;
        a recipe with phases may restart its warmup, but must keep the final decay where :func:`decay_start`
        puts it, which is what lengthening a run relies on)."""
        return lr_factor(step, self.config)

    def lr_scale(self, name: str, param: torch.nn.Parameter) -> float:
        """A parameter's learning rate relative to ``config.lr`` (e.g. lower for a part started from a trained
        model); the schedule multiplies every group alike."""
        return 1.0


def weights_sha256(folder: str | os.PathLike) -> str | None:
    """One sha256 over every ``*.safetensors`` file of a role folder (paths and contents, in path order); None
    when it holds none (the role is not trained there)."""
    files = sorted(Path(folder).rglob("*.safetensors")) if Path(folder).is_dir() else []
    if not files:
        return None
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(folder)).encode())
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def role_code(role: str) -> int:
    return zlib.crc32(role.encode())


def step_generator(seed: int, role: str, step: int) -> torch.Generator:
    """The generator of every random draw of one training step (noise, posterior samples, augmentation)."""
    state = np.random.SeedSequence([seed, role_code(role), step]).generate_state(2, np.uint64)
    return torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))


@torch.no_grad()
def export_copy(model: torch.nn.Module, dtype: str) -> torch.nn.Module:
    """A detached CPU copy of ``model`` in ``dtype`` ("float16", "float32", "bfloat16"), eval mode."""
    import copy

    from diffusers.utils import logging as diffusers_logging

    # diffusers warns on every ``.to(dtype)`` of a model that lists no fp32-only modules; ours list none
    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        return copy.deepcopy(model).to("cpu", getattr(torch, dtype)).eval()
    finally:
        diffusers_logging.set_verbosity(level)


def decay_start(config: TrainConfig | dict) -> int:
    """The first step of the final decay (of a config or its dict); before it the schedule ignores ``steps``."""
    c = config if isinstance(config, dict) else dataclasses.asdict(config)
    return max(c["warmup"], int(round(c["steps"] * (1 - c["decay"]))))


def lr_factor(step: int, config: TrainConfig) -> float:
    """Linear warmup to 1 over ``warmup`` steps, 1 until :func:`decay_start`, then cosine to ``min_lr``."""
    if step < config.warmup:
        return (step + 1) / config.warmup
    start = decay_start(config)
    if step < start:
        return 1.0
    t = min(1.0, (step - start) / max(1, config.steps - start))
    return config.min_lr + (1 - config.min_lr) * 0.5 * (1 + math.cos(math.pi * t))


def _optimizer(recipe: Recipe, model: torch.nn.Module) -> torch.optim.Optimizer:
    """AdamW with one parameter group per (weight decay or not, LR scale), in a fixed order (so a checkpoint's
    optimizer state lines up with the groups of a resumed run)."""
    groups: dict[tuple[bool, float], list] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups.setdefault((recipe.no_decay(name, p), float(recipe.lr_scale(name, p))), []).append(p)
    cfg = recipe.config
    return torch.optim.AdamW([{"params": params, "weight_decay": 0.0 if nd else cfg.weight_decay,
                               "lr": cfg.lr * scale} for (nd, scale), params in sorted(groups.items())],
                             lr=cfg.lr, betas=(0.9, 0.99))


def config_dict(config: TrainConfig) -> dict:
    return {"kind": type(config).__name__, **dataclasses.asdict(config)}


def _identity(recipe: Recipe) -> dict:
    """What a checkpoint must match to be resumed."""
    return {"role": recipe.role, "seed": recipe.seed, "simulator_version": SIMULATOR_VERSION,
            "config": config_dict(recipe.config), "provenance": recipe.provenance()}


def _rng_states() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def _set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])


def _atomic_torch_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _differences(saved: dict, wanted: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(saved) | set(wanted)):
        a, b = saved.get(k, "<absent>"), wanted.get(k, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: checkpoint {a!r}, now {b!r}")
    return out


class _Log:
    """``log.jsonl``: rewound to the resumed step, so a resumed run's log equals a straight run's."""

    def __init__(self, path: Path, start_step: int):
        self.path = path
        kept = []
        if path.is_file() and start_step > 0:
            kept = [line for line in path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= start_step]
        path.write_text("".join(line + "\n" for line in kept))

    def write(self, record: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def read_log(work: str | os.PathLike) -> list[dict]:
    """The records of ``WORK/<role>/log.jsonl`` (pass the role's work folder)."""
    path = Path(work) / "log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


@dataclass
class _State:
    """Everything a checkpoint holds besides the model, optimizer and schedule."""

    step: int = 0
    elapsed: float = 0.0                                  # training seconds over every resumed part
    window: list = dataclasses.field(default_factory=list)  # per-step records since the last log line


def _resume(ckpt_path: Path, identity: dict, model, opt, sched, work: Path, role: str) -> _State:
    """Restore a checkpoint into model/opt/sched and the RNGs; a fresh :class:`_State` without one."""
    if not ckpt_path.is_file():
        return _State()
    ckpt = torch.load(ckpt_path, map_location=next(model.parameters()).device, weights_only=False)
    diff = _differences(ckpt["identity"], identity)
    if diff == [_steps_difference(ckpt, identity)] and _can_extend(ckpt, identity):
        diff = []      # a longer (or shorter) run that has not started decaying: same schedule so far
    if diff:
        raise TrainError(
            f"{role}: {ckpt_path} was made by a different run ({'; '.join(diff)}), so it cannot be resumed.\n"
            f"  rerun with the same settings to continue it, or delete {work} to start {role} over.")
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    sched.load_state_dict(ckpt["scheduler"])
    _set_rng_states(ckpt["rng"])
    return _State(ckpt["step"], ckpt["elapsed"], ckpt["window"])


def _steps_difference(ckpt: dict, identity: dict) -> str:
    a, b = ckpt["identity"]["config"]["steps"], identity["config"]["steps"]
    return f"config.steps: checkpoint {a!r}, now {b!r}"


def _can_extend(ckpt: dict, identity: dict) -> bool:
    """Whether the checkpoint's step lies before the decay of both its own and the new step count."""
    return ckpt["step"] <= min(decay_start(ckpt["identity"]["config"]), decay_start(identity["config"]))


def _save_checkpoint(path: Path, identity: dict, model, opt, sched, state: _State) -> None:
    _atomic_torch_save({"identity": identity, "model": model.state_dict(), "optimizer": opt.state_dict(),
                        "scheduler": sched.state_dict(), "rng": _rng_states(), "step": state.step,
                        "elapsed": state.elapsed, "window": state.window}, path)


def _train_step(recipe: Recipe, model, opt, sched, state: _State, device: torch.device) -> None:
    """One optimizer step on corpus batch ``state.step``; appends its record to ``state.window``."""
    cfg = recipe.config
    t0 = time.monotonic()
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
        loss, parts = recipe.loss(model, state.step, step_generator(recipe.seed, recipe.role, state.step))
    if not torch.isfinite(loss):
        raise TrainError(f"{recipe.role}: the loss became {loss.item()} at step {state.step}; lower lr (now "
                         f"{cfg.lr}) or raise warmup (now {cfg.warmup}), then delete the work folder and rerun.")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    opt.step()
    sched.step()
    state.step += 1
    state.elapsed += time.monotonic() - t0
    state.window.append({"loss": float(loss.detach()), **parts, "grad_norm": float(grad_norm)})


def _log_window(log: _Log, state: _State, lr: float) -> dict:
    """Write the mean of the window's records as one log line and empty the window."""
    keys = dict.fromkeys(k for w in state.window for k in w)       # a phase change may change the parts
    record = {"step": state.step, **{k: float(np.mean([w[k] for w in state.window if k in w])) for k in keys},
              "lr": lr, "elapsed_s": round(state.elapsed, 2)}
    log.write(record)
    state.window = []
    return record


def _finish(recipe: Recipe, model, folder: Path, work: Path, identity: dict, state: _State,
            options: RunOptions) -> dict:
    """Save the trained role, reload it through ``load_role`` (float32), evaluate it, stamp it."""
    from ..standins import write_stamp

    model.eval()
    save_role(recipe.role, recipe.export(model), folder, overwrite=True)
    # the loss curve travels with the weights (a few hundred short lines), so the book can draw it anywhere
    if (work / "log.jsonl").is_file():
        shutil.copyfile(work / "log.jsonl", folder / TRAINING_LOG)
    t_eval = time.monotonic()
    # judged as users get it: read back through the same loader as real weights, in float32
    metrics = recipe.evaluate(load_role(recipe.role, folder, device=options.device, dtype=torch.float32))
    final_loss = [r["loss"] for r in read_log(work)][-4:]
    write_stamp(folder, role=recipe.role, seed=recipe.seed, config=identity["config"],
                provenance=identity["provenance"], train_seconds=state.elapsed,
                eval_seconds=time.monotonic() - t_eval, metrics=metrics,
                final_loss=float(np.mean(final_loss)) if final_loss else None, device=options.device)
    return metrics


def train_role(recipe: Recipe, folder: str | os.PathLike, work: str | os.PathLike,
               options: RunOptions | None = None) -> TrainResult:
    """Train ``recipe`` (resuming ``work/checkpoint.pt`` if present), then save it to ``folder`` with a stamp.

    Args:
        recipe: the role's recipe (config, seed, output root).
        folder: the role folder to write (``OUT/<role>``); replaced when training finishes.
        work: the role's work folder (checkpoint and log).
        options: logging, checkpointing and early-stop options.

    Returns:
        a :class:`TrainResult`; ``finished`` is False when ``max_steps``/``max_minutes`` stopped the run first
        (nothing is exported then; run again to continue).

    Raises:
        TrainError: the checkpoint in ``work`` was made with another config, seed or simulator version, or the
        loss diverged.
    """
    options = options or RunOptions()
    cfg, role = recipe.config, recipe.role
    work, folder = Path(work), Path(folder)
    work.mkdir(parents=True, exist_ok=True)
    ckpt_path = work / "checkpoint.pt"
    device = torch.device(options.device)
    identity = _identity(recipe)

    model = recipe.build().to(device)
    opt = _optimizer(recipe, model)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, recipe.lr_factor)
    state = _resume(ckpt_path, identity, model, opt, sched, work, role)
    if state.step:
        _say(options, f"{role}: resuming at step {state.step}/{cfg.steps} ({state.elapsed / 60:.1f} min so far; "
                      f"decay from step {decay_start(cfg)})")
    log = _Log(work / "log.jsonl", state.step)

    start_step, t_call = state.step, time.monotonic()
    last_ckpt, last_ckpt_step = time.monotonic(), state.step
    model.train()
    while state.step < cfg.steps:
        if options.max_steps is not None and state.step >= options.max_steps:
            break
        if options.max_minutes is not None and time.monotonic() - t_call > 60 * options.max_minutes:
            break
        _train_step(recipe, model, opt, sched, state, device)
        if state.step % options.log_every == 0 or state.step == cfg.steps:
            record = _log_window(log, state, sched.get_last_lr()[0])
            _say(options, f"{role}: step {state.step}/{cfg.steps}  loss {record['loss']:.4f}  "
                          f"({state.step / max(state.elapsed, 1e-9):.2f} steps/s)")
        overdue = time.monotonic() - last_ckpt > 60 * options.checkpoint_minutes
        if state.step % options.checkpoint_every == 0 or overdue:
            _save_checkpoint(ckpt_path, identity, model, opt, sched, state)
            last_ckpt, last_ckpt_step = time.monotonic(), state.step
    if state.step != last_ckpt_step:
        _save_checkpoint(ckpt_path, identity, model, opt, sched, state)
    steps_per_second = (state.step - start_step) / max(time.monotonic() - t_call, 1e-9)
    if state.step < cfg.steps:
        _say(options, f"{role}: stopped at step {state.step}/{cfg.steps}; run the same command again to continue")
        return TrainResult(role, False, state.step, state.elapsed, steps_per_second, {}, None)
    metrics = _finish(recipe, model, folder, work, identity, state, options)
    _say(options, f"{role}: {cfg.steps} steps in {state.elapsed / 60:.1f} min; {_fmt(metrics)}; saved to {folder}")
    return TrainResult(role, True, state.step, state.elapsed, steps_per_second, metrics, folder)


def _fmt(metrics: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())


def _say(options: RunOptions, text: str) -> None:
    if options.verbose:
        print(text, flush=True)
