"""Chapter conventions: the parameters cell and the first call every chapter makes.

A chapter starts with an imports cell, then one cell tagged ``parameters`` (papermill injects its overrides
right after it), then turns the parameters into a validated :class:`~neuroclips_core.config.RunConfig`::

    # %%
    from neuroclips_core.notebook import chapter_config, env_default

    # %% tags=["parameters"]
    profile = "sim"
    subject = 1
    quick = env_default("NEUROCLIPS_QUICK", False)
    seed = 0
    data_root = None
    run_root = None

    # %%
    cfg = chapter_config(profile=profile, subject=subject, quick=quick, seed=seed,
                         data_root=data_root, run_root=run_root)
"""
from __future__ import annotations

import os
from pathlib import Path

from .config import ConfigError, RunConfig, make_config, project_root

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")

# Figures that read well in JupyterLab and in the built book: moderate size, crisp pixels for video frames.
MPL_DEFAULTS = {
    "figure.figsize": (8.0, 4.0),
    "figure.dpi": 100,
    "savefig.dpi": 120,
    "savefig.bbox": "tight",
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "image.interpolation": "nearest",
}


def env_default(name: str, default):
    """Value of environment variable ``name`` parsed like ``default``, or ``default`` when it is unset.

    Lets a parameters cell take a default from the environment (``quick = env_default("NEUROCLIPS_QUICK",
    False)``) so ``NEUROCLIPS_QUICK=1 jupyter-book build book/`` runs every chapter in quick mode, while
    papermill's ``-p quick ...`` still overrides it.  Booleans accept 1/0, true/false, yes/no, on/off; ints
    and floats are parsed as such; anything else (str, None) is returned as the raw string.
    """
    raw = os.environ.get(name)
    if raw is None:
        return default
    text = raw.strip()
    if isinstance(default, bool):
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ConfigError(f"environment variable {name}={raw!r} is not a boolean; use 1/0, true/false, yes/no or on/off")
    if isinstance(default, int):
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"environment variable {name}={raw!r} is not an integer") from None
    if isinstance(default, float):
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"environment variable {name}={raw!r} is not a number") from None
    return raw


def _short(path: Path, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


def _inline_figures() -> None:
    """Inside a Jupyter kernel, draw figures inline even if ``MPLBACKEND`` (e.g. Agg, as in CI) says otherwise."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None and getattr(shell, "kernel", None) is not None:
        shell.run_line_magic("matplotlib", "inline")


def _quiet_library_progress() -> None:
    """No per-file "Loading weights" bars from transformers/diffusers in chapter outputs (our own tqdm bars stay).

    Only for libraries the chapter has already imported (its imports cell comes first), so a chapter that does
    not use them does not pay their import time.
    """
    import importlib
    import sys

    for name in ("transformers", "diffusers"):
        if name in sys.modules:
            importlib.import_module(f"{name}.utils.logging").disable_progress_bar()


def cpu_threads() -> int:
    """Torch threads for a CPU run: ``NEUROCLIPS_THREADS`` or 2 (the 2-core machines this book targets).

    Raises:
        ConfigError: ``NEUROCLIPS_THREADS`` is set to something other than a positive int.
    """
    threads = env_default("NEUROCLIPS_THREADS", 2)
    if not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"NEUROCLIPS_THREADS: expected a positive number of torch threads, found "
                         f"{os.environ.get('NEUROCLIPS_THREADS')!r}; unset it for the default 2")
    return threads


def chapter_config(*, verbose: bool = True, **params) -> RunConfig:
    """:func:`~neuroclips_core.config.make_config` plus the chapter set-up every chapter wants.

    Validates ``params`` (see ``make_config``), sets matplotlib defaults (inline figures in a kernel), limits torch to 2 threads when there
    is no GPU (the CPU machines this book targets have 2 cores; ``NEUROCLIPS_THREADS=N`` sets another count, e.g.
    1 for a chapter run beside a training job, where two 2-thread processes on 2 cores slow each other down
    several-fold), seeds python/numpy/torch with ``seed``, and prints a one-line summary of the resolved
    configuration.  Returns the :class:`RunConfig`.
    """
    cfg = make_config(**params)

    import matplotlib as mpl
    import torch

    _inline_figures()
    mpl.rcParams.update(MPL_DEFAULTS)
    _quiet_library_progress()
    device = cfg.torch_device()
    if not torch.cuda.is_available():
        torch.set_num_threads(cpu_threads())
    cfg.seed_everything()
    if verbose:
        root = project_root()
        threads = f", {torch.get_num_threads()} threads" if device.type == "cpu" else ""
        preset = f" preset={cfg.sim_preset}" if cfg.profile == "sim" else ""
        extra = "".join(f" {k}={v!r}" for k, v in sorted(cfg.extra.items()))
        print(f"NeuroClips run: profile={cfg.profile} subject={cfg.subject} quick={cfg.quick} seed={cfg.seed}"
              f"{preset} device={device}{threads} data_root={_short(cfg.data_root, root)} "
              f"run_dir={_short(cfg.run_dir, root)}{extra}")
    return cfg


def parameter_list(value, known, name: str, default) -> list:
    """A list-valued chapter parameter, from a list, a comma string (``papermill -p subjects 1,3``, where a single
    item arrives as an int) or None (-> ``default``); each item must be one of ``known`` (items are converted to the
    type of ``known``'s first element first, so ``"2"`` matches subject 2).

    Raises:
        ConfigError: an item that is not in ``known`` (the message lists them).
    """
    if value is None:
        value = default
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        value = [v.strip() for v in str(value).split(",") if v.strip()]
    known = list(known)
    kind = type(known[0]) if known else str
    items = []
    for v in value:
        try:
            items.append(kind(v))
        except (TypeError, ValueError):
            items.append(v)
    unknown = [v for v in items if v not in known]
    if unknown:
        raise ConfigError(f"{name}: unknown values {unknown}; known: {known}")
    return items
