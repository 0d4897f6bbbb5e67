"""The paper profile's ``weights.yml`` and the check of one role folder.

``weights.yml`` maps each role of :data:`~neuroclips_core.zoo.roles.ROLES` to a local folder::

    vae: /models/sd15/vae                  # absolute, ~ and $VARS expanded
    clip: clip-vit-bigG                    # relative paths are relative to the yml's own folder
    unclip: mindeye2/unclip6_epoch0_step110000.ckpt   # unclip alone may also name the sgm checkpoint file

``neuroclips_core/zoo/weights.example.yml`` documents every role and its source.  Nothing here downloads: a
missing or malformed folder is a :class:`WeightsError` naming the role, the folder, what is missing, the
expected layout and where the weights come from.  A role left out of the file is an error only when asked for.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .roles import ROLES, Layout, Need, Role

SGM_SUFFIXES = (".ckpt", ".safetensors")
SGM_LAYOUT = "sgm checkpoint"          # the name of the unclip layout that holds an sgm checkpoint
EXAMPLE_FILE = Path(__file__).with_name("weights.example.yml")


class WeightsError(ValueError):
    """A weights file, role or folder is wrong; the message says what was expected, found, and what to do."""


def get_role_or_error(name: str) -> Role:
    if name not in ROLES:
        raise WeightsError(f"unknown model role {name!r}; the known roles are: {', '.join(ROLES)}")
    return ROLES[name]


def role_help(role: str | Role) -> str:
    """The lines every error about ``role`` ends with: expected layout(s), the paper's weights, how to get them."""
    r = role if isinstance(role, Role) else get_role_or_error(role)
    layouts = "\n".join(f"    - {lay.describe()}" for lay in r.layouts)
    return (f"  expected layout{' (one of)' if len(r.layouts) > 1 else ''}:\n{layouts}\n"
            f"  paper weights: {r.paper_weights}\n"
            f"  source: {r.source}\n"
            f"  how to get them: {r.how_to}")


def _present(folder: Path, relpath: str) -> bool:
    if any(ch in relpath for ch in "*?["):
        return any(folder.glob(relpath))
    return (folder / relpath).exists()


def _missing(folder: Path, needs: tuple[Need, ...]) -> list[str]:
    """The descriptions of the needs of a layout that ``folder`` does not satisfy."""
    return [n.describe() for n in needs
            if not any(all(_present(folder, p) for p in option) for option in n.options)]


def split_role_path(role: str, path: str | os.PathLike) -> tuple[Path, Path | None]:
    """(folder, checkpoint file or None).  Only ``unclip`` may name a file: its sgm checkpoint."""
    path = Path(path).expanduser()
    if path.is_file():
        if role == "unclip" and path.suffix in SGM_SUFFIXES:
            return path.parent, path
        raise WeightsError(f"{role}: expected a folder, found the file {path}.\n{role_help(role)}")
    return path, None


def check_role_folder(role: str, folder: str | os.PathLike) -> Layout:
    """Check that ``folder`` holds ``role``'s weights in one of its layouts and return that layout.

    Only file presence is checked here (cheap, no import of any library); the loaders check the contents.
    Raises :class:`WeightsError` naming the role, the folder, the missing files of the closest layout, every
    accepted layout and where to get the weights.
    """
    r = get_role_or_error(role)
    path = Path(folder).expanduser()
    if not path.exists():
        raise WeightsError(f"{role}: the folder {path} does not exist; point the {role!r} entry of weights.yml "
                           f"at a folder holding these weights.\n{role_help(r)}")
    folder, ckpt = split_role_path(role, path)
    if ckpt is not None:   # unclip named by its sgm checkpoint file, which is that layout's first need
        sgm = next(lay for lay in r.layouts if lay.name == SGM_LAYOUT)
        candidates = {sgm: sgm.needs[1:]}
    else:
        candidates = {lay: lay.needs for lay in r.layouts}
    missing = {lay: _missing(folder, needs) for lay, needs in candidates.items()}
    for lay, gaps in missing.items():
        if not gaps:
            return lay
    closest = min(missing, key=lambda lay: len(missing[lay]))
    found = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())[:20]
    raise WeightsError(
        f"{role}: {path} does not hold the {role!r} weights in an accepted layout.\n"
        f"  missing ({closest.name}): {'; '.join(missing[closest])}\n"
        f"  found: {', '.join(found) if found else 'an empty folder'}\n{role_help(r)}")


@dataclass(frozen=True)
class WeightsFile:
    """A parsed ``weights.yml``: ``folders[role]`` is the absolute local path of each listed role."""

    path: Path
    folders: dict[str, Path] = field(default_factory=dict)

    def folder(self, role: str) -> Path:
        """The folder of ``role``; a :class:`WeightsError` if the file does not list it."""
        r = get_role_or_error(role)
        if role not in self.folders:
            raise WeightsError(
                f"{role}: {self.path} has no entry for the {role!r} role, which this step needs.\n"
                f"  add a line `{role}: /path/to/folder` (see {EXAMPLE_FILE}).\n{role_help(r)}")
        return self.folders[role]

    def load(self, role: str, device: str = "cpu", dtype=None):
        """``load_role(role, self.folder(role), device, dtype)``."""
        from .loaders import load_role

        return load_role(role, self.folder(role), device=device, dtype=dtype)


def load_weights_file(path: str | os.PathLike) -> WeightsFile:
    """Parse and validate a ``weights.yml``: known roles only, each listed path must exist.

    A role may be left out (or set to null): that is an error only when it is requested through
    :meth:`WeightsFile.folder`.  The layout of each folder is checked when the role is loaded.
    """
    import yaml

    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise WeightsError(f"the weights file {path} does not exist; copy {EXAMPLE_FILE} there and point each "
                           f"role at its local folder.")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise WeightsError(f"{path} is not valid YAML ({e}); see {EXAMPLE_FILE} for the format.") from e
    if not isinstance(raw, dict):
        raise WeightsError(f"{path}: expected a mapping `role: folder`, found a {type(raw).__name__}; "
                           f"see {EXAMPLE_FILE}.")
    unknown = sorted(str(k) for k in raw if k not in ROLES)
    if unknown:
        raise WeightsError(f"{path}: unknown role(s) {', '.join(unknown)}; the known roles are: "
                           f"{', '.join(ROLES)}. Fix the spelling or remove the entry.")
    folders = {}
    for role, value in raw.items():
        if value is None:
            continue
        if not isinstance(value, str):
            raise WeightsError(f"{path}: the {role!r} entry must be a path string, found {value!r}.")
        folder = Path(os.path.expandvars(value)).expanduser()
        folder = folder if folder.is_absolute() else path.parent / folder
        if not folder.exists():
            raise WeightsError(f"{role}: {path} points the {role!r} role at {folder}, which does not exist; fix the "
                               f"path or remove the entry.\n{role_help(role)}")
        folders[role] = folder
    return WeightsFile(path, folders)
