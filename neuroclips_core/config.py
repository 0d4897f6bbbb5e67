"""One run configuration shared by every chapter, script and test.

Every chapter has a papermill ``parameters`` cell with the same names (``profile``, ``subject``, ``quick``,
``seed``, ``data_root``, ``run_root``, ``device``) and turns them into a :class:`RunConfig` with
:func:`make_config`, which validates them and resolves every path, so no chapter hard-codes one.

Paths left as ``None`` resolve against the project root: ``$NEUROCLIPS_ROOT`` if set, else the nearest
folder at or above the working directory that holds ``_toc.yml`` (so a chapter executed by Jupyter Book
from ``book/`` and one papermilled from the repository root find the same data), else the working directory.
"""
from __future__ import annotations

import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .data import layout

PROFILES = ("sim", "paper")
SUBJECTS = (1, 2, 3)
SIM_PRESETS = ("tiny", "default", "full")


class ConfigError(ValueError):
    """A run parameter or a path is wrong; the message says what was expected and what to do."""


def project_root(start: str | Path | None = None) -> Path:
    env = os.environ.get("NEUROCLIPS_ROOT")
    if env:
        return Path(env).expanduser().resolve()
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "_toc.yml").is_file() and (folder / "neuroclips_core").is_dir():
            return folder
    return here


@dataclass(frozen=True)
class RunConfig:
    """Validated run parameters.  Build it with :func:`make_config`.

    Attributes:
        profile: ``"sim"`` (cc2017-sim and shipped stand-in models, CPU) or ``"paper"`` (real data and weights).
        subject: cc2017 subject, 1..3.
        quick: small sizes and few steps, for tests and CI; sim quick mode uses the ``tiny`` preset.
        seed: seeds the simulation (sim profile) and every random choice of a run.
        data_root: folder holding ``video_fmri_dataset/`` (raw layout) or the authors' preprocessed release.
        run_root: folder under which ``<profile>/subjNN/...`` artifacts are written.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (cuda when available).
        sim_preset: the cc2017-sim preset the sim profile uses (``tiny`` in quick mode, else ``default``).
    """

    profile: str
    subject: int
    quick: bool
    seed: int
    data_root: Path
    run_root: Path
    device: str
    sim_preset: str = "default"
    extra: dict = field(default_factory=dict)

    @property
    def run_dir(self) -> Path:
        """``run_root/<profile>/subjNN``: where every artifact of this subject goes."""
        return self.run_root / self.profile / f"subj{self.subject:02d}"

    @property
    def store_dir(self) -> Path:
        return self.run_dir / "store"

    def torch_device(self):
        import torch

        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def seed_everything(self, offset: int = 0) -> int:
        """Seed python, numpy and torch with ``seed + offset``; returns the seed used."""
        import numpy as np

        s = self.seed + offset
        random.seed(s)
        np.random.seed(s % 2**32)
        try:
            import torch

            torch.manual_seed(s)
        except ImportError:  # torch is always installed with the package; keep config importable without it
            pass
        return s

    def as_dict(self) -> dict:
        d = asdict(self)
        d["data_root"], d["run_root"] = str(self.data_root), str(self.run_root)
        return d


def _validate_device(device: str) -> str:
    if device in ("auto", "cpu", "cuda") or (device.startswith("cuda:") and device[5:].isdigit()):
        return device
    raise ConfigError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {device!r}")


def make_config(
    profile: str = "sim",
    subject: int = 1,
    quick: bool = False,
    seed: int = 0,
    data_root: str | Path | None = None,
    run_root: str | Path | None = None,
    device: str = "auto",
    **extra,
) -> RunConfig:
    """Validate chapter parameters and resolve paths.  Raises :class:`ConfigError` with a fix on bad input.

    Defaults: sim data in ``<root>/data/cc2017-sim/<preset>-seed<seed>``; paper data must be given
    (``data_root=``, or ``$NEUROCLIPS_CC2017``); runs in ``<root>/runs`` (``<root>/runs/quick`` in quick mode,
    so a quick test never overwrites a full run).
    """
    if profile not in PROFILES:
        raise ConfigError(f"profile must be one of {PROFILES}; got {profile!r}")
    if isinstance(subject, bool) or not str(subject).strip().isdigit() or int(subject) not in SUBJECTS:
        raise ConfigError(f"subject must be 1, 2 or 3 (cc2017 has three subjects); got {subject!r}")
    subject_i = int(subject)
    if isinstance(quick, str):
        if quick.lower() not in ("true", "false", "1", "0"):
            raise ConfigError(f"quick must be a boolean; got {quick!r}")
        quick = quick.lower() in ("true", "1")
    try:
        seed_i = int(seed)
    except (TypeError, ValueError):
        raise ConfigError(f"seed must be an integer; got {seed!r}") from None
    if seed_i < 0:
        raise ConfigError(f"seed must be >= 0; got {seed_i}")
    device = _validate_device(str(device))
    root = project_root()
    preset = str(extra.pop("sim_preset", None) or ("tiny" if quick else "default"))
    if preset not in SIM_PRESETS:
        raise ConfigError(f"sim_preset must be one of {SIM_PRESETS}; got {preset!r}")

    if data_root in (None, ""):
        if profile == "sim":
            data_root = root / "data" / "cc2017-sim" / f"{preset}-seed{seed_i}"
        elif os.environ.get("NEUROCLIPS_CC2017"):
            data_root = os.environ["NEUROCLIPS_CC2017"]
        else:
            raise ConfigError(
                "the paper profile needs the real cc2017 data: pass data_root=<folder holding "
                "video_fmri_dataset/ or the authors' preprocessed release> or set NEUROCLIPS_CC2017"
            )
    data_root = Path(data_root).expanduser()
    if not data_root.is_absolute():
        data_root = (root / data_root).resolve()
    if run_root in (None, ""):
        run_root = root / "runs" / ("quick" if quick else "")
    run_root = Path(run_root).expanduser()
    if not run_root.is_absolute():
        run_root = (root / run_root).resolve()

    cfg = RunConfig(profile, subject_i, bool(quick), seed_i, data_root, run_root.resolve(), device, preset, extra)
    if profile == "paper":
        detect_data_format(cfg.data_root, cfg.subject)  # the real data must already be there
    elif data_root.exists():
        # a sim root may not exist yet (chapter 00 simulates it) but if it exists it must look right
        if any(data_root.iterdir()) and not (layout.dataset_dir(data_root).is_dir()
                                             or (data_root / ".simulating").exists()):
            raise ConfigError(
                f"data_root {data_root} exists but holds no {layout.DATASET_DIR}/ folder: it is not a cc2017 "
                "(or cc2017-sim) dataset. Point data_root at an empty or missing folder to simulate there."
            )
    return cfg


def detect_data_format(data_root: Path, subject: int) -> str:
    """Return ``"raw"`` (cc2017 layout) or ``"release"`` (the authors' preprocessed ``.pt`` files).

    Raises :class:`ConfigError` naming what was looked for when ``data_root`` is neither.
    """
    data_root = Path(data_root)
    if not data_root.is_dir():
        raise ConfigError(f"data_root {data_root} does not exist; expected a folder holding "
                          f"{layout.DATASET_DIR}/ (raw cc2017) or subj0{subject}_train_fmri.pt (preprocessed release)")
    if layout.subject_dir(data_root, subject).is_dir():
        return "raw"
    if (data_root / f"subj0{subject}_train_fmri.pt").is_file():
        return "release"
    found = sorted(p.name for p in data_root.iterdir())[:10]
    raise ConfigError(
        f"data_root {data_root} has the wrong layout for subject {subject}: expected "
        f"{layout.DATASET_DIR}/subject{subject}/fmri/... (raw cc2017) or subj0{subject}_train_fmri.pt "
        f"(the authors' preprocessed release); found {found or 'an empty folder'}"
    )
