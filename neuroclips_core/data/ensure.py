"""Build-or-reuse for the processed store, so any chapter run on its own gets the data it needs.

``ensure_store(cfg)`` is what every chapter after 00 calls: on the sim profile it simulates the subject if
the dataset is missing, then prepares ``runs/<profile>/subjNN/store`` from the raw layout (or imports the
authors' preprocessed release on the paper profile) unless a complete store made from the same data with
the same settings is already there.
"""
from __future__ import annotations

from pathlib import Path

from ..config import RunConfig, detect_data_format
from .store import Store, StoreError

# settings that change what prepare writes; a store made with others is rebuilt
PREPARE_DEFAULTS = {"delay_trs": 2, "alpha": 0.05, "one_sided": True}


def _reusable(store_dir: Path, data_root: Path, settings: dict) -> Store | None:
    try:
        store = Store.open(store_dir)
    except StoreError:
        return None
    meta = store.meta
    same_source = Path(meta.get("data_root", "")).resolve() == data_root.resolve()
    sel = meta.get("selection", {})
    same_settings = (meta.get("delay_trs") == settings["delay_trs"]
                     and sel.get("alpha") == settings["alpha"] and sel.get("one_sided") == settings["one_sided"])
    return store if same_source and same_settings and store.has_frames else None


def ensure_store(cfg: RunConfig, subject: int | None = None, progress: bool = True, **settings) -> Store:
    """The processed store of ``subject`` (default ``cfg.subject``), built if missing or stale.

    ``settings`` override :data:`PREPARE_DEFAULTS` (``delay_trs``, ``alpha``, ``one_sided``).
    """
    subject = subject or cfg.subject
    settings = {**PREPARE_DEFAULTS, **settings}
    store_dir = cfg.run_root / cfg.profile / f"subj{subject:02d}" / "store"
    if cfg.profile == "sim":
        from .simulate import simulate_dataset

        simulate_dataset(cfg.data_root, cfg.sim_preset, cfg.seed, subjects=[subject], progress=progress)
        fmt = "raw"
    else:
        fmt = detect_data_format(cfg.data_root, subject)
    store = _reusable(store_dir, cfg.data_root, settings) if fmt == "raw" else None
    if store is not None:
        return store
    if fmt == "raw":
        from .prepare import prepare_subject

        prepare_subject(cfg.data_root, subject, store_dir, progress=progress, **settings)
    else:
        from .release import import_release

        if (store_dir / "meta.json").is_file():
            try:
                return Store.open(store_dir)
            except StoreError:
                pass
        import_release(cfg.data_root, subject, store_dir, progress=progress)
    return Store.open(store_dir)
