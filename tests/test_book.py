"""The book: chapter conventions, the table of contents, and every chapter run in quick mode with papermill.

Chapters are jupytext pairs ``book/NN_name.py`` (py:percent) + ``book/NN_name.ipynb`` (committed without outputs)
with exactly one cell tagged ``parameters``.  The chapters to execute are read from ``_toc.yml``, so a chapter
added there is tested automatically.  The harness itself (TOC walking, twin checks, papermill runs and their
error reports) is tested on toy chapters written to a temporary folder.
"""
from __future__ import annotations

import ast
import json
import re
import tomllib
from pathlib import Path

import jupytext
import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
TOC = ROOT / "_toc.yml"
KERNEL = "python3"
REQUIRED_PARAMETERS = ("profile", "subject", "quick", "seed", "data_root", "run_root")
QUICK_PARAMETERS = dict(quick=True, subject=1)
CELL_TIMEOUT_S = 1800
# Chapters listed in _toc.yml before they are written: a missing file is skipped (not failed) only for these.
# Remove a name once its chapter lands; any other TOC entry without a file fails test_toc_entries_exist.
PENDING_CHAPTERS: set[str] = set()


# --- helpers (also used on toy books below) ---------------------------------------------------------------

def toc_entries(toc_path: Path) -> list[str]:
    """Every ``file:`` entry of a Jupyter Book ``_toc.yml`` (root first), through parts, chapters and sections."""
    toc = yaml.safe_load(Path(toc_path).read_text())
    if not isinstance(toc, dict) or "root" not in toc:
        raise ValueError(f"{toc_path} is not a jb-book table of contents (no 'root:')")
    entries = [str(toc["root"])]

    def walk(items):
        for item in items or []:
            if "file" in item:
                entries.append(str(item["file"]))
            for key in ("parts", "chapters", "sections"):
                walk(item.get(key))

    walk(toc.get("parts"))
    walk(toc.get("chapters"))
    return entries


def resolve_document(book_dir: Path, entry: str) -> Path | None:
    """The file a TOC entry names (``.ipynb`` or ``.md`` when it has no suffix), or None if there is none."""
    path = Path(book_dir) / entry
    if path.suffix in (".ipynb", ".md"):
        return path if path.is_file() else None
    found = [p for p in (path.with_suffix(".ipynb"), path.with_suffix(".md")) if p.is_file()]
    if len(found) > 1:
        raise ValueError(f"TOC entry {entry!r} is ambiguous: both {found[0].name} and {found[1].name} exist")
    return found[0] if found else None


def chapter_notebooks(book_dir: Path, toc_path: Path) -> list[Path]:
    """The notebooks the book executes, in TOC order (entries whose file does not exist are left out)."""
    docs = [resolve_document(book_dir, e) for e in toc_entries(toc_path)]
    return [d for d in docs if d is not None and d.suffix == ".ipynb"]


def _cells(nb) -> list[tuple[str, str, tuple]]:
    return [(c.cell_type, c.source, tuple(c.metadata.get("tags", ()))) for c in nb.cells]


def parameter_names(source: str) -> set[str]:
    """Names assigned at the top level of a (parameters) cell."""
    names = set()
    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        for t in targets:
            for n in ast.walk(t) if t is not None else ():
                if isinstance(n, ast.Name):
                    names.add(n.id)
    return names


def twin_problems(py_path: Path) -> list[str]:
    """What is wrong with the pair ``NN_name.py`` / ``NN_name.ipynb`` (empty list: nothing)."""
    py_path = Path(py_path)
    ipynb = py_path.with_suffix(".ipynb")
    if not ipynb.is_file():
        return [f"{py_path.name} has no {ipynb.name} twin (run: jupytext --sync {py_path})"]
    problems = []
    expected = jupytext.read(py_path)
    actual = nbformat.read(ipynb, as_version=4)
    exp_code = [c for c in _cells(expected) if c[0] == "code"]
    act_code = [c for c in _cells(actual) if c[0] == "code"]
    if [c[1] for c in exp_code] != [c[1] for c in act_code]:
        diff = next((i for i, (a, b) in enumerate(zip(exp_code, act_code)) if a[1] != b[1]),
                    min(len(exp_code), len(act_code)))
        problems.append(f"code cells of {ipynb.name} differ from {py_path.name} (first at code cell {diff}; "
                        f"run: jupytext --sync {py_path})")
    elif [c[2] for c in exp_code] != [c[2] for c in act_code]:
        problems.append(f"cell tags of {ipynb.name} differ from {py_path.name} (run: jupytext --sync {py_path})")
    for i, cell in enumerate(actual.cells):
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None):
            problems.append(f"{ipynb.name} cell {i} has outputs or an execution count (commit it stripped: "
                            f"jupyter nbconvert --clear-output --inplace {ipynb})")
    kernel = actual.metadata.get("kernelspec", {}).get("name")
    if kernel != KERNEL:
        problems.append(f"{ipynb.name} kernelspec is {kernel!r}, expected {KERNEL!r} "
                        f"(run: jupytext --set-kernel {KERNEL} {ipynb})")
    if "py:percent" not in str(actual.metadata.get("jupytext", {}).get("formats", "")):
        problems.append(f"{ipynb.name} is not paired with py:percent (run: jupytext --set-formats "
                        f"ipynb,py:percent {ipynb})")
    param_cells = [c for c in actual.cells if "parameters" in c.metadata.get("tags", ())]
    if len(param_cells) != 1:
        problems.append(f"{ipynb.name} has {len(param_cells)} cells tagged 'parameters'; expected exactly 1")
    else:
        try:
            missing = set(REQUIRED_PARAMETERS) - parameter_names(param_cells[0].source)
        except SyntaxError as err:
            problems.append(f"the parameters cell of {ipynb.name} is not plain Python: {err}")
        else:
            if missing:
                problems.append(f"the parameters cell of {ipynb.name} does not define {sorted(missing)}")
    return problems


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class ChapterFailed(AssertionError):
    pass


def run_chapter(notebook: Path, output: Path, parameters: dict, cwd: Path = ROOT):
    """Execute ``notebook`` from a clean kernel with papermill; raise :class:`ChapterFailed` naming the cell."""
    import papermill as pm

    try:
        return pm.execute_notebook(str(notebook), str(output), parameters=parameters, kernel_name=KERNEL,
                                   cwd=str(cwd), progress_bar=False, execution_timeout=CELL_TIMEOUT_S)
    except pm.PapermillExecutionError as err:
        tb = _ANSI.sub("", "\n".join(err.traceback))
        src = "\n".join("    " + line for line in err.source.splitlines())
        raise ChapterFailed(f"{Path(notebook).name} failed in cell {err.cell_index} "
                            f"(execution count {err.exec_count}) with {err.ename}: {err.evalue}\n"
                            f"--- cell source ---\n{src}\n--- traceback ---\n{tb}\n"
                            f"(executed notebook: {output})") from None


# --- the real book --------------------------------------------------------------------------------------------

CHAPTER_PY = sorted(BOOK.glob("[0-9][0-9]*_*.py"))          # 00_..., 00b_..., 01_...
CHAPTER_IPYNB = sorted(BOOK.glob("[0-9][0-9]*_*.ipynb"))
CHAPTERS = chapter_notebooks(BOOK, TOC) if TOC.is_file() else []


@pytest.mark.parametrize("py_path", CHAPTER_PY, ids=lambda p: p.stem)
def test_chapter_twins(py_path):
    problems = twin_problems(py_path)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("ipynb", CHAPTER_IPYNB, ids=lambda p: p.stem)
def test_every_notebook_has_a_py_twin(ipynb):
    assert ipynb.with_suffix(".py").is_file(), f"{ipynb.name} has no py:percent twin (jupytext --sync {ipynb})"


def test_book_config_links():
    for name in ("_config.yml", "_toc.yml"):
        link = BOOK / name
        assert link.is_symlink() and link.resolve() == (ROOT / name).resolve(), f"book/{name} must link to ../{name}"
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["execute"]["execute_notebooks"] == "cache" and config["execute"]["allow_errors"] is False
    assert "nb_custom_formats" not in (config.get("sphinx", {}).get("config") or {})  # .py twins are no documents


def test_toc_entries_exist():
    entries = toc_entries(TOC)
    assert entries[0] == "intro"
    pending = []
    for entry in entries:
        if resolve_document(BOOK, entry) is None:
            assert Path(entry).stem in PENDING_CHAPTERS, f"_toc.yml lists {entry!r} but book/ has no such file"
            pending.append(entry)
    if pending:
        pytest.skip(f"chapters listed in _toc.yml but not written yet: {pending}")


@pytest.mark.slow
@pytest.mark.parametrize("notebook", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_runs_in_quick_mode(notebook, tmp_path, monkeypatch):
    monkeypatch.delenv("MPLBACKEND", raising=False)  # draw figures as the book does (inline)
    failure = None
    try:
        run_chapter(notebook, tmp_path / notebook.name, QUICK_PARAMETERS, cwd=ROOT)
    except ChapterFailed as err:
        failure = str(err)
    if failure:
        pytest.fail(failure, pytrace=False)


# --- the environment: one set of pins ------------------------------------------------------------------------

def _pins(lines) -> dict[str, str]:
    pins = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            name, _, version = line.partition("==")
            assert version, f"not an exact pin: {line!r}"
            pins[re.sub(r"[-_.]+", "-", name.strip().lower())] = version.strip()
    return pins


def test_pyproject_pins_equal_requirements():
    req = _pins((ROOT / "requirements.txt").read_text().splitlines())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert _pins(project["dependencies"]) == req
    assert list(req)[:2] == ["torch", "torchvision"]  # torch first, so pip never resolves an unpinned one


def test_environment_yml_installs_the_same_pins():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    assert "python=3.11" in deps and "pip" in deps
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    assert pip == ["-r requirements.txt", "-e ."]


# --- the harness, on toy chapters --------------------------------------------------------------------------------

TOY_PY = '''# %% [markdown]
# # Toy chapter

# %%
import json
from neuroclips_core.notebook import env_default

# %% tags=["parameters"]
profile = "sim"
subject = 1
quick = env_default("NEUROCLIPS_QUICK", False)
seed = 0
data_root = None
run_root = None
record = "seen.json"

# %%
import os
json.dump(dict(profile=profile, subject=subject, quick=quick, seed=seed, cwd=os.getcwd()), open(record, "w"))
'''


def make_toy(folder: Path, name: str, text: str) -> Path:
    """Write ``name.py`` and its paired, output-free ``name.ipynb`` the way chapters are made."""
    py = folder / f"{name}.py"
    py.write_text(text)
    nb = jupytext.read(py)
    nb.metadata["jupytext"] = {"formats": "ipynb,py:percent"}
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "Python 3 (ipykernel)", "language": "python"}
    jupytext.write(nb, folder / f"{name}.ipynb")
    return folder / f"{name}.ipynb"


@pytest.fixture
def toy_book(tmp_path):
    book = tmp_path / "book"
    book.mkdir()
    (book / "intro.md").write_text("# Toy\n")
    make_toy(book, "00_toy", TOY_PY)
    make_toy(book, "01_fails", TOY_PY + '\n# %%\nraise RuntimeError("toy chapter broke on purpose")\n')
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nparts:\n  - caption: Part\n    chapters:\n      - file: 00_toy\n"
        "        sections:\n          - file: 01_fails\n      - file: 02_missing\n")
    return book


def test_harness_reads_toc_and_twins(toy_book):
    toc = toy_book.parent / "_toc.yml"
    assert toc_entries(toc) == ["intro", "00_toy", "01_fails", "02_missing"]
    assert [p.name for p in chapter_notebooks(toy_book, toc)] == ["00_toy.ipynb", "01_fails.ipynb"]
    assert twin_problems(toy_book / "00_toy.py") == []


def test_harness_catches_broken_twins(toy_book):
    py = toy_book / "00_toy.py"
    py.write_text(py.read_text().replace("seed = 0", "seed = 1"))
    assert any("code cells" in p for p in twin_problems(py))
    nb = nbformat.read(py.with_suffix(".ipynb"), as_version=4)
    nb.cells[1].execution_count = 3
    nb.metadata.pop("kernelspec")
    nbformat.write(nb, py.with_suffix(".ipynb"))
    problems = "\n".join(twin_problems(py))
    assert "outputs or an execution count" in problems and "kernelspec" in problems
    make_toy(toy_book, "03_noparams", TOY_PY.replace('# %% tags=["parameters"]', "# %%").replace("run_root = None", ""))
    assert any("0 cells tagged 'parameters'" in p for p in twin_problems(toy_book / "03_noparams.py"))
    make_toy(toy_book, "04_partial", TOY_PY.replace("run_root = None", "runroot = None"))
    assert any("does not define ['run_root']" in p for p in twin_problems(toy_book / "04_partial.py"))


def test_harness_runs_a_chapter_with_injected_parameters(toy_book, tmp_path, monkeypatch):
    monkeypatch.setenv("NEUROCLIPS_QUICK", "1")  # quick comes from the environment, subject/seed from papermill
    seen = tmp_path / "seen.json"
    out = run_chapter(toy_book / "00_toy.ipynb", tmp_path / "out.ipynb",
                      dict(subject=2, seed=5, record=str(seen)), cwd=tmp_path)
    assert json.loads(seen.read_text()) == dict(profile="sim", subject=2, quick=True, seed=5, cwd=str(tmp_path))
    assert any("injected-parameters" in c.metadata.get("tags", ()) for c in out.cells)


def test_harness_reports_the_failing_cell(toy_book, tmp_path):
    with pytest.raises(ChapterFailed) as err:
        run_chapter(toy_book / "01_fails.ipynb", tmp_path / "out.ipynb", dict(record=str(tmp_path / "s.json")),
                    cwd=tmp_path)
    msg = str(err.value)
    assert "01_fails.ipynb failed in cell" in msg
    assert "RuntimeError: toy chapter broke on purpose" in msg
    assert 'raise RuntimeError("toy chapter broke on purpose")' in msg  # the cell source
    assert (tmp_path / "s.json").is_file()  # the cells before the failing one did run
