"""The command line ``python -m neuroclips_core`` (DESIGN.md §7): help texts and argument checking."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "neuroclips_core", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_top_level_help_lists_subcommands():
    r = cli("--help")
    assert r.returncode == 0, r.stderr
    for sub in ("simulate", "prepare", "import-release"):
        assert sub in r.stdout


@pytest.mark.parametrize("sub, options", [
    ("simulate", ["--preset", "tiny", "default", "full", "--seed", "--out", "--subjects"]),
    ("prepare", ["--data-root", "--subject", "--out", "--frame-size", "--no-frames"]),
    ("import-release", ["--release-dir", "--subject", "--out", "--frame-size", "--voxel-indices"]),
])
def test_subcommand_help_mentions_options(sub, options):
    r = cli(sub, "--help")
    assert r.returncode == 0, r.stderr
    for opt in options:
        assert opt in r.stdout, f"{sub} --help does not mention {opt}"


def test_no_subcommand_fails():
    r = cli()
    assert r.returncode != 0
    assert "required" in r.stderr


def test_unknown_preset_fails(tmp_path):
    r = cli("simulate", "--preset", "huge", "--out", str(tmp_path / "data"))
    assert r.returncode != 0
    assert "invalid choice: 'huge'" in r.stderr
    assert not (tmp_path / "data").exists()


def test_bad_subject_fails(tmp_path):
    r = cli("prepare", "--data-root", str(tmp_path), "--subject", "4", "--out", str(tmp_path / "store"))
    assert r.returncode != 0
    assert "--subject" in r.stderr and not (tmp_path / "store").exists()


def test_missing_required_option_fails():
    r = cli("prepare", "--subject", "1")
    assert r.returncode != 0
    assert "--data-root" in r.stderr and "--out" in r.stderr
