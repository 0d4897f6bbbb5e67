"""Chapter 06's core: the ablation batch over variants and subjects, and Tables 1-2 from its ``metrics.json`` files.

    from neuroclips_core.ablations_run import run_batch, collect, direction_checks

    run_batch(cfg, subjects=[1, 2, 3])                 # papermill: chapter 04 once per subject, every variant
    scores = collect(cfg, [1, 2, 3])                   # long table: subject, variant, metric, mean, se
    direction_checks(scores)                           # the paper's three directions, per subject

or from a shell (the same batch, then the tables and checks printed)::

    python -m neuroclips_core ablations --subjects 1,2,3 [--seed S] [--quick] [--n-clips N] [--parallel P]

**The batch** executes ``book/04_inference.ipynb`` with papermill once per subject, with ``compare`` set to the
other variants, so every variant of a subject runs in one kernel that loads the models once; the executed
notebooks are kept in ``runs/<profile>/ablations/`` as the record of each run.  Chapter 04 reuses a finished
variant whose parameters match (``video_run.reconstruct_videos``), so a rerun only makes what is missing, and an
interrupted batch resumes where it stopped.  ``parallel`` runs that many subjects at once, each kernel with its
share of the CPU threads: small models use two threads poorly, so on a 2-core machine two subjects at one thread
each finish sooner than one after the other at two.

**The tables** come only from ``runs/<profile>/subjNN/inference/<variant>/metrics.json``: Table 2 (the variants of
one subject, the paper's subject-1 rows beside) and Table 1's NeuroClips rows per subject and averaged (the paper's
beside).  Columns: video 2-/50-way, CLIP-pcc (all 16 frames, adjacent: the paper's), frame 2-/50-way, SSIM (S2),
PSNR, as in ``metrics_table.TABLE1_COLUMNS``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .config import RunConfig, project_root
from .metrics_table import TABLE1_COLUMNS, parse_paper_rows
from .notebook_batch import NotebookJob, check_parallel, run_notebooks
from .video_run import METRICS_FILE, VARIANTS, inference_dir

CHAPTER_04 = Path("book") / "04_inference.ipynb"
#: Table 1's column keys -> the metrics.json entries that fill them (the paper's SSIM and CLIP-pcc recipes)
METRIC_KEYS = {"video_2way": "video_2way", "video_50way": "video_50way", "clip_pcc": "clip_pcc_adjacent",
               "frame_2way": "frame_2way", "frame_50way": "frame_50way", "ssim": "ssim_s2", "psnr": "psnr"}

# Table 2 of the paper (seeds/000_0c7712290a6ae770.txt, §6): "Ablations on the modules of NeuroClips, and all
# results are from subject 1."  Quoted, not computed; mean and ± in TABLE1_COLUMNS' order.  "GIT captioning" is
# our fmri_caption variant; "w/o keyframe" drops the keyframe and its caption (prompt "a smooth video").
_PAPER_TABLE2_TEXT = """
no_keyframe   0.751 0.04  0.164 0.02  0.695 0.15  0.702 0.04  0.128 0.01  0.413 0.09  9.334 1.30
no_blurry     0.838 0.03  0.213 0.01  0.718 0.11  0.805 0.03  0.193 0.01  0.256 0.11  8.989 1.37
fmri_caption  0.828 0.03  0.195 0.01  0.728 0.12  0.785 0.03  0.174 0.01  0.399 0.08  9.297 1.43
full          0.830 0.03  0.208 0.01  0.736 0.12  0.799 0.03  0.187 0.01  0.392 0.08  9.226 1.42
"""
#: {variant: {column key: (mean, ±)}}: the paper's Table 2 (subject 1)
PAPER_TABLE2 = parse_paper_rows(_PAPER_TABLE2_TEXT)


def batch_folder(cfg: RunConfig) -> Path:
    """``runs/<profile>/ablations``: the executed chapter-04 notebooks of the batch."""
    return cfg.run_root / cfg.profile / "ablations"


def run_batch(cfg: RunConfig, subjects, variants=tuple(VARIANTS), *, n_clips: int | None = None,
              notebook: str | Path | None = None, progress: bool = True, parallel: int = 1) -> list[Path]:
    """Run chapter 04 under papermill once per subject with every variant in ``variants``; returns the executed
    notebooks (``runs/<profile>/ablations/04_inference_subjNN.ipynb``).

    Args:
        cfg: profile, seed, quick, data_root and run_root of the batch (its ``subject`` is not used).
        subjects: the subjects (1-3).
        variants: keys of :data:`~neuroclips_core.video_run.VARIANTS`; ``full`` always runs.
        n_clips: the first n test clips (None: chapter 04's default, all or the quick subset).
        notebook: the chapter to execute (default ``book/04_inference.ipynb`` of the project).
        parallel: how many subjects run at once, each in its own kernel with an equal share of the CPU threads
            (:func:`~neuroclips_core.notebook_batch.run_notebooks`).  Safe because each subject writes only its
            own ``subjNN`` folders, the shared encode-once caches are written atomically, and on the sim profile
            the dataset's missing subjects are simulated here first, one process writing.

    Raises:
        ValueError: an unknown variant or subject, or ``parallel`` < 1 (before anything runs).
        papermill.PapermillExecutionError: a cell failed; the executed notebook beside shows where.
    """
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"run_batch: unknown variants {unknown}; known: {list(VARIANTS)}")
    bad = [s for s in subjects if int(s) not in (1, 2, 3)]
    if bad:
        raise ValueError(f"run_batch: subjects must be 1, 2 or 3; found {bad}")
    check_parallel(parallel)
    notebook = Path(notebook) if notebook is not None else project_root() / CHAPTER_04
    if not notebook.is_file():
        raise FileNotFoundError(f"{notebook}: chapter 04 is not there; run from the project (or pass notebook=)")
    if parallel > 1 and len(subjects) > 1 and cfg.profile == "sim":
        # Kernels side by side would each simulate their subject into the one dataset, whose stimuli and sim.json
        # are not written for concurrent writers: simulate every subject here first (nothing to do when on disk).
        from .data.simulate import simulate_dataset

        simulate_dataset(cfg.data_root, cfg.sim_preset, cfg.seed, subjects=[int(s) for s in subjects],
                         progress=progress)
    out = batch_folder(cfg)
    out.mkdir(parents=True, exist_ok=True)
    compare = ",".join(v for v in variants if v != "full")
    jobs = []
    for s in subjects:
        params = {"profile": cfg.profile, "subject": int(s), "quick": bool(cfg.quick), "seed": int(cfg.seed),
                  "data_root": str(cfg.data_root), "run_root": str(cfg.run_root), "compare": compare,
                  "n_clips": n_clips}
        jobs.append(NotebookJob(str(notebook), str(out / f"04_inference_subj{int(s):02d}.ipynb"), params))
    return run_notebooks(jobs, parallel=parallel, progress=progress)


def default_parallel(cfg: RunConfig, n_subjects: int) -> int:
    """Subjects at once when the caller does not say: 1 on a GPU (one device), else one per CPU thread
    (:func:`~neuroclips_core.notebook.cpu_threads`; 2 on the 2-core machines: one thread each), at most
    ``n_subjects``."""
    from .notebook import cpu_threads

    return 1 if cfg.torch_device().type == "cuda" else max(1, min(n_subjects, cpu_threads()))


def collect(cfg: RunConfig, subjects, variants=tuple(VARIANTS)):
    """A long DataFrame (subject, variant, column, mean, se, n_clips) of Table 1's columns from each run's
    ``metrics.json``; ``se`` is the N-way's binomial SE or, for SSIM, PSNR and CLIP-pcc, std / sqrt(n_clips).

    Raises:
        FileNotFoundError: a subject's variant has not run (the message gives the batch command).
        ValueError: the runs scored different numbers of clips (a quick and a full run mixed).
    """
    import pandas as pd

    rows = []
    for s in subjects:
        for v in variants:
            path = inference_dir(cfg, int(s), v) / METRICS_FILE
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path}: variant {v!r} of subject {s} has not run; run the batch first: python -m "
                    f"neuroclips_core ablations --subjects {s} --variants {v} --seed {cfg.seed}"
                    + (" --quick" if cfg.quick else "") + " (or chapter 06)")
            summary = json.loads(path.read_text())
            n = int(summary.get("n_clips", summary.get("n_test")))
            for column, key in METRIC_KEYS.items():
                score = summary["scores"][key]
                se = score.get("se", score.get("std", np.nan) / np.sqrt(n))
                rows.append({"subject": int(s), "variant": v, "column": column, "mean": float(score["mean"]),
                             "se": float(se), "n_clips": n})
    frame = pd.DataFrame(rows)
    if frame["n_clips"].nunique() > 1:
        counts = frame.groupby(["subject", "variant"])["n_clips"].first().to_dict()
        raise ValueError(f"collect: the runs scored different numbers of test clips {counts}; rerun the batch with "
                         f"one n_clips (a quick run and a full run do not mix)")
    return frame


def wide(scores, index=("variant",)):
    """The long table as rows ``index`` x Table 1's columns (means), columns in the paper's order."""
    table = scores.pivot_table(index=list(index), columns="column", values="mean", sort=False)
    return table[[c.key for c in TABLE1_COLUMNS]]


def paper_frame(rows: dict):
    """{label: {column: (mean, ±)}} (:data:`PAPER_TABLE2`, ``metrics_table.PAPER_TABLE1``) as a DataFrame of means."""
    import pandas as pd

    return pd.DataFrame({label: {c: v[0] for c, v in row.items()} for label, row in rows.items()}).T[
        [c.key for c in TABLE1_COLUMNS]]


def direction_checks(scores) -> dict[int, dict[str, bool]]:
    """Per subject, the paper's directions (issue 7): removing the blurry video lowers SSIM; removing the keyframe
    lowers both 50-way metrics; the full model has the best CLIP-pcc or is within noise of the best (2 combined
    standard errors).  Needs the variants ``full``, ``no_blurry`` and ``no_keyframe`` of each subject."""
    out = {}
    for s, part in scores.groupby("subject"):
        m = part.set_index(["variant", "column"])
        missing = {"full", "no_blurry", "no_keyframe"} - set(part["variant"])
        if missing:
            raise ValueError(f"direction_checks: subject {s} lacks the variants {sorted(missing)}")
        mean, se = m["mean"], m["se"]
        others = [v for v in part["variant"].unique() if v != "full"]
        best = max(others, key=lambda v: mean[(v, "clip_pcc")])
        noise = 2 * np.hypot(se[("full", "clip_pcc")], se[(best, "clip_pcc")])
        out[int(s)] = {
            "no_blurry lowers SSIM": bool(mean[("full", "ssim")] > mean[("no_blurry", "ssim")]),
            "no_keyframe lowers both 50-way": bool(mean[("full", "frame_50way")] > mean[("no_keyframe", "frame_50way")]
                                                   and mean[("full", "video_50way")] > mean[("no_keyframe", "video_50way")]),
            "full has the best CLIP-pcc, or within noise": bool(mean[("full", "clip_pcc")] >=
                                                                 mean[(best, "clip_pcc")] - noise),
        }
    return out
