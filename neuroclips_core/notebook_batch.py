"""Run several papermill notebooks, one after another or a few at once, each kernel with its share of the CPU.

    from neuroclips_core.notebook_batch import NotebookJob, run_notebooks

    run_notebooks([NotebookJob("book/04_inference.ipynb", "out_s2.ipynb", {"subject": 2}), ...], parallel=2)

Small models use a second thread poorly, so on a 2-core machine two kernels at one thread each get more done than
one at two.  A kernel reads its thread count from ``NEUROCLIPS_THREADS``
(:func:`~neuroclips_core.notebook.cpu_threads`), which each worker process sets before papermill starts the kernel
(a kernel inherits its parent's environment).
This module imports nothing heavy, so the spawned workers start in about a second.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple


class NotebookJob(NamedTuple):
    """One papermill run: ``notebook`` executed into ``target`` with ``parameters``, in the notebook's folder."""

    notebook: str
    target: str
    parameters: dict


def kernel_threads(parallel: int) -> int:
    """Torch threads for each of ``parallel`` kernels sharing this machine's CPU threads
    (:func:`~neuroclips_core.notebook.cpu_threads`: ``NEUROCLIPS_THREADS`` or 2), at least 1."""
    from .notebook import cpu_threads

    return max(1, cpu_threads() // parallel)


def check_parallel(parallel) -> int:
    """``parallel`` itself when it is a positive int (how many notebooks at once), else ValueError."""
    if not isinstance(parallel, int) or isinstance(parallel, bool) or parallel < 1:
        raise ValueError(f"parallel must be a positive int (notebooks at once), found {parallel!r}")
    return parallel


def run_notebooks(jobs: list[NotebookJob], *, parallel: int = 1, progress: bool = True) -> list[Path]:
    """Execute ``jobs``; returns their targets in the order given.

    Args:
        jobs: the runs.
        parallel: how many run at once (1: in this process, one after another, the kernels inheriting this
            process's environment); above 1, in that many worker processes whose kernels each get
            :func:`kernel_threads` threads.
        progress: papermill's progress bar when one at a time; a line per finished job when several.

    Raises:
        ValueError: ``parallel`` is not a positive int.
        papermill.PapermillExecutionError: a cell failed (the first failure; the others still run to their end).
    """
    if check_parallel(parallel) == 1 or len(jobs) <= 1:
        for job in jobs:
            _execute(job, progress)
        return [Path(job.target) for job in jobs]

    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    workers = min(parallel, len(jobs))
    threads = kernel_threads(workers)
    # spawn, not fork: the caller may be a kernel holding torch's thread pool and open files
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_set_threads, initargs=(threads,)) as pool:
        futures = {pool.submit(_execute, job, False): job for job in jobs}
        for future in as_completed(futures):
            future.result()                       # re-raises a failed job's error here
            if progress:
                print(f"done: {futures[future].target} ({workers} at once, {threads} thread(s) each)", flush=True)
    return [Path(job.target) for job in jobs]


def _set_threads(threads: int) -> None:
    """Worker initialiser: the kernels this process starts inherit ``NEUROCLIPS_THREADS``."""
    os.environ["NEUROCLIPS_THREADS"] = str(threads)


def _execute(job: NotebookJob, progress: bool) -> str:
    import papermill as pm

    pm.execute_notebook(job.notebook, job.target, parameters=job.parameters, cwd=str(Path(job.notebook).parent),
                        progress_bar=progress, kernel_name="python3")
    return job.target
