"""neuroclips_core.notebook_batch: papermill notebooks one at a time or several at once, each kernel with its share
of the threads; a failure reaches the caller.  Run on a tiny parameterised notebook, not a chapter."""
from __future__ import annotations

import json

import pytest

from neuroclips_core.notebook_batch import NotebookJob, kernel_threads, run_notebooks


def probe_notebook(path, record_dir, fail_subject=None):
    """A notebook with chapter 04's parameters that writes ``subject<N>.json`` (its kernel's NEUROCLIPS_THREADS,
    ``compare``, pid) into ``record_dir`` and fails for ``fail_subject``."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile = "sim"\nsubject = 1\nquick = False\nseed = 0\ndata_root = None\n'
                                       'run_root = None\ncompare = ""\nn_clips = None')
    params.metadata["tags"] = ["parameters"]
    body = ("import json, os, pathlib\n"
            f"assert subject != {fail_subject!r}, 'this subject fails'\n"
            f"pathlib.Path({str(record_dir)!r}, f'subject{{subject}}.json').write_text(json.dumps("
            "{'threads': os.environ.get('NEUROCLIPS_THREADS'), 'compare': compare, 'pid': os.getpid()}))")
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))
    return path


def jobs_for(notebook, tmp_path, subjects):
    return [NotebookJob(str(notebook), str(tmp_path / f"out{s}.ipynb"), {"subject": s}) for s in subjects]


@pytest.mark.parametrize("threads, parallel, expected", [("2", 2, 1), ("4", 2, 2), ("2", 3, 1), ("6", 1, 6)])
def test_kernel_threads_share_the_cpu_threads(monkeypatch, threads, parallel, expected):
    monkeypatch.setenv("NEUROCLIPS_THREADS", threads)
    assert kernel_threads(parallel) == expected


def test_parallel_kernels_each_get_their_share_of_threads(tmp_path, monkeypatch):
    monkeypatch.setenv("NEUROCLIPS_THREADS", "4")
    notebook = probe_notebook(tmp_path / "probe.ipynb", tmp_path)
    done = run_notebooks(jobs_for(notebook, tmp_path, [1, 2, 3]), parallel=2, progress=False)
    assert done == [tmp_path / f"out{s}.ipynb" for s in (1, 2, 3)]       # in the order given
    records = [json.loads((tmp_path / f"subject{s}.json").read_text()) for s in (1, 2, 3)]
    assert [r["threads"] for r in records] == ["2", "2", "2"]
    assert len({r["pid"] for r in records}) == 3                          # a kernel each


def test_one_at_a_time_kernels_inherit_this_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("NEUROCLIPS_THREADS", "3")
    notebook = probe_notebook(tmp_path / "probe.ipynb", tmp_path)
    run_notebooks(jobs_for(notebook, tmp_path, [2]), parallel=1, progress=False)
    assert json.loads((tmp_path / "subject2.json").read_text())["threads"] == "3"


def test_a_failed_notebook_reaches_the_caller_after_the_others_finish(tmp_path):
    import papermill as pm

    notebook = probe_notebook(tmp_path / "probe.ipynb", tmp_path, fail_subject=2)
    with pytest.raises(pm.PapermillExecutionError, match="this subject fails"):
        run_notebooks(jobs_for(notebook, tmp_path, [1, 2]), parallel=2, progress=False)
    assert (tmp_path / "subject1.json").is_file()


@pytest.mark.parametrize("parallel", [0, -1, 1.5, True])
def test_refuses_a_parallel_count_that_is_not_a_positive_int(tmp_path, parallel):
    with pytest.raises(ValueError, match="parallel must be a positive int"):
        run_notebooks(jobs_for(tmp_path / "none.ipynb", tmp_path, [1]), parallel=parallel)
