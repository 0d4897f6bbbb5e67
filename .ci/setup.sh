#!/usr/bin/env bash
# Fresh-machine set-up of the one environment everything runs in: .venv (Python 3.11) with the exact pins of
# requirements.txt plus neuroclips_core installed editable.  Idempotent: when .venv already matches
# requirements.txt + pyproject.toml (a stamp inside .venv holds their hash) it only re-checks and exits.
#
#   bash .ci/setup.sh            # from anywhere; works on the repository this script lives in
#   NEUROCLIPS_PYTHON=/path/to/python3.11 bash .ci/setup.sh     # pick the interpreter for a new .venv
#
# pip only (never uv/poetry): torch must come from the pins in requirements.txt.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
STAMP="$VENV/.neuroclips-setup.sha256"
T0=$SECONDS

die() { echo "setup.sh: ERROR: $*" >&2; exit 1; }
log() { echo "setup.sh: $*"; }

[[ -f requirements.txt && -f pyproject.toml ]] || die "requirements.txt or pyproject.toml missing in $ROOT"

# --- 1. the virtual environment (Python 3.11) -------------------------------------------------------------
if [[ ! -x "$PY" ]]; then
    BASE="${NEUROCLIPS_PYTHON:-}"
    if [[ -z "$BASE" ]]; then
        for cand in python3.11 python3; do
            if command -v "$cand" >/dev/null 2>&1 \
               && "$cand" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
                BASE="$(command -v "$cand")"; break
            fi
        done
    fi
    [[ -n "$BASE" ]] || die "no Python 3.11 found (tried python3.11, python3); install it or set NEUROCLIPS_PYTHON"
    log "creating .venv with $BASE ($("$BASE" --version 2>&1))"
    "$BASE" -m venv "$VENV" || die "'$BASE -m venv .venv' failed (on Debian/Ubuntu: apt-get install python3.11-venv)"
fi
"$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
    || die ".venv runs $("$PY" --version 2>&1), not Python 3.11; remove .venv and run this script again"

# --- 2. packages: skipped when the stamp matches ----------------------------------------------------------
# The stamp covers the pins, the package metadata, the interpreter and where the repository lives (an
# editable install points at an absolute path, so a moved or copied .venv must be re-installed).
WANT="$( { cat requirements.txt pyproject.toml; "$PY" -c 'import sys; print(sys.version)'; echo "$ROOT"; } \
         | sha256sum | cut -d' ' -f1 )"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
    log ".venv is up to date (stamp matches requirements.txt + pyproject.toml); skipping pip"
else
    rm -f "$STAMP"
    log "pip install -r requirements.txt (first time: a few minutes, several GB)"
    t=$SECONDS
    "$PY" -m pip install --disable-pip-version-check -r requirements.txt || die "pip install -r requirements.txt failed"
    log "requirements installed in $((SECONDS - t)) s"
    # The package itself, editable and without dependencies (they are the pins above).  Build it with the
    # venv's own setuptools when it is new enough for PEP 660 editable installs, else let pip isolate the build.
    ISO=()
    if "$PY" -c 'import setuptools, sys; sys.exit(int(setuptools.__version__.split(".")[0]) < 64)' 2>/dev/null; then
        ISO=(--no-build-isolation)
    fi
    "$PY" -m pip install --disable-pip-version-check --no-deps "${ISO[@]}" -e . || die "pip install -e . failed"
    "$PY" -m pip check || die "pip check found broken requirements in .venv"
    echo "$WANT" > "$STAMP"
fi

# --- 2b. chromium, for the keyframe browser's real-browser test (tests/test_browser_page.py) -----------------
# Debian's package (playwright's own browser download needs a CDN); without root or apt the test is skipped.
if ! command -v chromium >/dev/null 2>&1; then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        log "apt-get install chromium (the browser test's headless browser)"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            chromium >/dev/null; } || log "WARNING: chromium could not be installed; tests/test_browser_page.py will skip"
    else
        log "no chromium and no root apt-get: tests/test_browser_page.py will skip (apt-get install chromium)"
    fi
fi

# --- 2c. the built book's browser assets (MathJax, require.js, the widget manager), from npm: offline pages ------
"$PY" -m neuroclips_core vendor-assets || die "could not vendor the book's browser assets (see above)"

# --- 3. sanity: the package and the kernel that papermill / jupyter-book will use ---------------------------
"$PY" - "$ROOT" <<'PYEOF' || die "sanity check failed (see above); remove .venv/.neuroclips-setup.sha256 to force a reinstall"
import os, sys
from pathlib import Path

root = Path(sys.argv[1]).resolve()
import neuroclips_core

pkg = Path(neuroclips_core.__file__).resolve().parent
if pkg != root / "neuroclips_core":
    sys.exit(f"neuroclips_core imports from {pkg}, not from {root}/neuroclips_core")

# papermill and jupyter-book start the kernel named in the notebooks ("python3").  Jupyter resolves it from
# the first kernelspec folder on its path; ipykernel's spec runs argv[0] == "python", which jupyter_client
# replaces with the interpreter that runs papermill / jupyter-book, i.e. this venv's python.
from jupyter_client.kernelspec import KernelSpecManager

spec = KernelSpecManager().get_kernel_spec("python3")
exe = spec.argv[0]
if exe not in ("python", "python3", "python3.11"):
    real = Path(exe).resolve()
    venv = (root / ".venv").resolve()
    if venv not in real.parents and real != Path(sys.executable).resolve():
        sys.exit(f"the Jupyter kernel 'python3' ({spec.resource_dir}) runs {exe}, outside .venv; remove that "
                 f"kernelspec or run `jupyter kernelspec remove python3` for the environment that owns it")
print(f"setup.sh: kernel 'python3' -> {spec.resource_dir} (argv[0]={exe!r} -> {sys.executable})")
PYEOF

log "done in $((SECONDS - T0)) s ($("$PY" --version 2>&1), $("$PY" -c 'from importlib.metadata import version; print("torch", version("torch"))'))"
