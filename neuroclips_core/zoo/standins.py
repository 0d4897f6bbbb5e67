"""The stand-in models of the ``sim`` profile: shipped inside the package, retrained by one command.

Each stand-in is a small model of the real weights' library class, trained here on the pretraining corpus
(:mod:`.corpus`, disjoint from cc2017-sim's stimuli) and saved by ``save_role`` in that library's own format, so
:func:`load_standin` reads it through ``load_role``, the loader of the real weights (DESIGN.md §2)::

    neuroclips_core/zoo/standin_weights/<role>/   save_role's layout + stamp.json

``stamp.json`` records the simulator version, the training config (steps, sizes, seed), the training time, the
held-out metrics and the library versions.  Stand-ins learn the simulated world of one simulator version, so
:func:`load_standin` refuses a stamp of another version and names the retrain command::

    python -m neuroclips_core train-standins [--roles vae,frame_classifier,video_classifier] [--quick]
                                             [--out DIR] [--work DIR] [--seed S] [--steps role=N,...]

Training is seeded, logged and resumable (:mod:`.train.loop`): rerunning the same command after an interrupt
continues from the last checkpoint in ``--work`` (default ``runs/standins/<role>/``, with ``log.jsonl``); a run
still before its final LR decay (the last 20 % of its steps) can be lengthened exactly by rerunning it with a
larger ``--steps role=N``.  Roles train in dependency order: the video classifier starts from the frame
classifier, and the VAE is judged by it (class still recognised on its reconstructions).
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from importlib import metadata
from pathlib import Path

import torch

from ..data.simulate import SIMULATOR_VERSION
from .loaders import load_role
from .weights import WeightsError, get_role_or_error

STANDIN_DIR = Path(__file__).with_name("standin_weights")
STAMP_FILE = "stamp.json"
SHIPPED_BUDGET_MB = 60.0          # all shipped stand-ins together (issue 3)
DEFAULT_WORK = Path("runs") / "standins"
QUICK_ROOT = Path("runs") / "standins-quick"
_LIBRARIES = ("torch", "diffusers", "transformers", "open_clip_torch", "safetensors", "numpy")


class StandinError(WeightsError):
    """A stand-in is missing or was trained for another simulator version; the message names the retrain command."""


def retrain_command(roles: list[str] | tuple[str, ...] | None = None) -> str:
    """The shell command that retrains ``roles`` (all stand-ins when None) into the package."""
    return "python -m neuroclips_core train-standins" + (f" --roles {','.join(roles)}" if roles else "")


def library_versions() -> dict[str, str | None]:
    out = {}
    for name in _LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def write_stamp(folder: str | os.PathLike, *, role: str, seed: int, config: dict, provenance: dict,
                train_seconds: float, eval_seconds: float, metrics: dict, final_loss: float | None,
                device: str) -> Path:
    """Write ``folder/stamp.json`` (atomically) for a freshly trained stand-in."""
    from .corpus import CORPUS_STREAM

    stamp = {
        "simulator_version": SIMULATOR_VERSION,
        "role": role,
        "seed": seed,
        "config": config,
        "provenance": provenance,
        "corpus": f"SeedSequence([seed, {CORPUS_STREAM:#x}, split, batch]); disjoint from cc2017-sim's streams",
        "train_seconds": round(train_seconds, 1),
        "eval_seconds": round(eval_seconds, 1),
        "metrics": metrics,
        "final_loss": final_loss,
        "library_versions": library_versions(),
        "machine": {"device": device, "torch_threads": torch.get_num_threads(), "cpu": platform.processor()
                    or platform.machine(), "python": platform.python_version()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "retrain": retrain_command([role]),
    }
    return _write_stamp_file(Path(folder), stamp)


def _write_stamp_file(folder: Path, stamp: dict) -> Path:
    path = folder / STAMP_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(stamp, indent=1))
    os.replace(tmp, path)
    return path


#: Environment variable naming another stand-in root (e.g. your own retrained weights) for every default load.
STANDIN_ROOT_ENV = "NEUROCLIPS_STANDINS"


def standin_root(root: str | os.PathLike | None = None) -> Path:
    """``root``, else ``$NEUROCLIPS_STANDINS``, else the shipped :data:`STANDIN_DIR`."""
    return Path(root if root is not None else os.environ.get(STANDIN_ROOT_ENV) or STANDIN_DIR)


def standin_folder(role: str, root: str | os.PathLike | None = None) -> Path:
    """``root/<role>`` (``root`` defaults to :func:`standin_root`)."""
    get_role_or_error(role)
    return standin_root(root) / role


def read_stamp(folder: str | os.PathLike) -> dict:
    """The stamp of a stand-in folder; :class:`StandinError` if it is missing or unreadable."""
    path = Path(folder) / STAMP_FILE
    role = Path(folder).name
    if not path.is_file():
        raise StandinError(f"{role}: {folder} has no {STAMP_FILE}, so its simulator version is unknown.\n"
                           f"  retrain it: {retrain_command([role])}")
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise StandinError(f"{role}: {path} is unreadable ({e}).\n  retrain it: {retrain_command([role])}") from e


def check_stamp(role: str, folder: str | os.PathLike) -> dict:
    """The stamp of ``folder``, checked: same role, same simulator version as :data:`SIMULATOR_VERSION`."""
    stamp = read_stamp(folder)
    if stamp.get("role") != role:
        raise StandinError(f"{role}: {folder} holds a stand-in of role {stamp.get('role')!r}, not {role!r}.\n"
                           f"  retrain it: {retrain_command([role])}")
    if stamp.get("simulator_version") != SIMULATOR_VERSION:
        raise StandinError(
            f"{role}: the stand-in in {folder} was trained for simulator version {stamp.get('simulator_version')!r}, "
            f"but this is cc2017-sim {SIMULATOR_VERSION!r}: it learned another simulated world.\n"
            f"  retrain it: {retrain_command([role])}   (or every stand-in: {retrain_command()})")
    return stamp


def load_standin(role: str, device: str | torch.device = "cpu", dtype: torch.dtype | None = torch.float32,
                 root: str | os.PathLike | None = None):
    """Load the stand-in of ``role`` (what ``load_role`` returns) from ``root`` (default: the shipped weights).

    The weights are stored in float16 to keep the package small and come back as ``dtype`` (float32 unless
    told otherwise).  Raises :class:`StandinError` when the folder is missing or its stamp's simulator
    version differs from :data:`SIMULATOR_VERSION`, naming the retrain command.
    """
    folder = standin_folder(role, root)
    if not folder.is_dir():
        raise StandinError(f"{role}: no stand-in in {folder}. The sim profile needs it; train it once "
                           f"(seeded, resumable, minutes to an hour on a CPU):\n  {retrain_command([role])}"
                           + (f" --out {folder.parent}" if folder.parent != STANDIN_DIR else ""))
    check_stamp(role, folder)
    return load_role(role, folder, device=device, dtype=dtype)


def folder_size_mb(root: str | os.PathLike) -> float:
    return sum(p.stat().st_size for p in Path(root).rglob("*") if p.is_file()) / 2 ** 20


def parse_steps(text: str | None) -> dict[str, int]:
    """``"vae=1500,frame_classifier=2500"`` -> {role: steps}."""
    out = {}
    for item in filter(None, (s.strip() for s in (text or "").split(","))):
        role, sep, value = item.partition("=")
        if not sep or not value.strip().isdigit():
            raise ValueError(f"--steps expects role=N pairs separated by commas (e.g. vae=1500), got {item!r}")
        out[role.strip()] = int(value)
    return out


def train_standins(roles: list[str] | None = None, *, out: str | os.PathLike | None = None,
                   work: str | os.PathLike | None = None, seed: int = 0, quick: bool = False,
                   steps: dict[str, int] | None = None, options=None) -> dict:
    """Train (or resume) the stand-ins of ``roles`` in training order and save each to ``out/<role>``.

    Args:
        roles: roles to train (default: every role with a recipe); trained in the order of
            :data:`~neuroclips_core.zoo.train.RECIPES` whatever the order given.
        out: output root (default: the shipped :data:`STANDIN_DIR`; with ``quick``, ``runs/standins-quick/weights``).
        work: checkpoints and logs (default ``runs/standins`` or ``runs/standins-quick/work``).
        seed: seeds the models' initialisation, the corpus and every random draw.
        quick: a handful of steps per role on small batches (tests); never the shipped weights by default.
        steps: per-role override of the number of training steps.
        options: :class:`~neuroclips_core.zoo.train.RunOptions` (logging, checkpoints, early stop, device).

    Returns:
        {role: TrainResult}.  Prints each role's training time and a summary.
    """
    from .train import RECIPES, RunOptions, train_role

    options = options or RunOptions()
    roles = list(RECIPES) if roles is None else list(roles)
    unknown = [r for r in roles if r not in RECIPES]
    if unknown:
        raise ValueError(f"no stand-in recipe for {unknown}; roles with a recipe: {', '.join(RECIPES)}")
    bad_steps = sorted(set(steps or {}) - set(roles))
    if bad_steps:
        raise ValueError(f"--steps names {bad_steps}, which are not being trained ({', '.join(roles)})")
    out = Path(out) if out is not None else (QUICK_ROOT / "weights" if quick else STANDIN_DIR)
    work = Path(work) if work is not None else (QUICK_ROOT / "work" if quick else DEFAULT_WORK)
    results = {}
    for role in (r for r in RECIPES if r in roles):
        recipe_class = RECIPES[role]
        config = recipe_class.quick_config() if quick else recipe_class.full_config()
        if steps and role in steps:
            config = dataclasses.replace(config, steps=steps[role], warmup=min(config.warmup, steps[role]))
        recipe = recipe_class(config, seed, out, options.device)
        results[role] = train_role(recipe, out / role, work / role, options)
        if not results[role].finished:
            break       # later roles may depend on this one
    if options.verbose:
        print(_summary(results, out))
    return results


def config_from_stamp(recipe_class, stamp: dict):
    """The training config a stamp records, rebuilt as the recipe's config class (lists back to tuples)."""
    fields = {f.name for f in dataclasses.fields(recipe_class.config_class)}
    saved = {k: v for k, v in stamp["config"].items() if k != "kind"}
    unknown = sorted(set(saved) - fields)
    if unknown or stamp["config"].get("kind") != recipe_class.config_class.__name__:
        raise StandinError(f"{stamp['role']}: the stamp's config ({stamp['config'].get('kind')}, fields {unknown}) is "
                           f"not a {recipe_class.config_class.__name__} of this version.\n"
                           f"  retrain it: {retrain_command([stamp['role']])}")
    return recipe_class.config_class(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()})


def evaluate_standin(role: str, root: str | os.PathLike | None = None, device: str = "cpu") -> dict:
    """Judge a trained stand-in again, as trained, and write the new metrics into its stamp.

    A role's metrics can use its neighbours in the same root (the VAE is judged by the frame classifier): when
    a neighbour is trained after it, this fills in what the first evaluation could not, without retraining.
    The stamp keeps its training record and gains ``evaluated`` (when) and the new ``eval_seconds``.

    Returns:
        the new metrics dict.
    """
    from .train import RECIPES

    if role not in RECIPES:
        raise ValueError(f"no stand-in recipe for {role!r}; roles with a recipe: {', '.join(RECIPES)}")
    folder = standin_folder(role, root)
    stamp = check_stamp(role, folder)
    recipe = RECIPES[role](config_from_stamp(RECIPES[role], stamp), stamp["seed"], folder.parent, device)
    t0 = time.monotonic()
    metrics = recipe.evaluate(load_role(role, folder, device=device, dtype=torch.float32))
    stamp.update(metrics=metrics, eval_seconds=round(time.monotonic() - t0, 1),
                 evaluated=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    _write_stamp_file(folder, stamp)
    return metrics


def _summary(results: dict, out: Path) -> str:
    lines = [f"stand-ins in {out}:"]
    for role, r in results.items():
        state = "done" if r.finished else f"stopped at step {r.step}"
        metrics = ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in r.metrics.items())
        lines.append(f"  {role:18s} {state:22s} {r.train_seconds / 60:6.1f} min  "
                     f"{r.steps_per_second:5.2f} steps/s  {metrics}")
    if out.is_dir():
        size = folder_size_mb(out)
        flag = "" if size <= SHIPPED_BUDGET_MB else f"  OVER the {SHIPPED_BUDGET_MB:.0f} MB budget"
        lines.append(f"  total size of {out}: {size:.1f} MB{flag}")
    return "\n".join(lines)
