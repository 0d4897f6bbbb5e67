"""Run configuration: validation errors, path resolution, quick mode; and the chapter helpers built on it."""
from __future__ import annotations


import pytest

from neuroclips_core.config import ConfigError, detect_data_format, make_config, project_root
from neuroclips_core.notebook import chapter_config, env_default


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A bare project folder (``_toc.yml`` + ``neuroclips_core/``) as the working directory."""
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: intro\n")
    (tmp_path / "neuroclips_core").mkdir()
    (tmp_path / "book").mkdir()
    monkeypatch.delenv("NEUROCLIPS_ROOT", raising=False)
    monkeypatch.delenv("NEUROCLIPS_CC2017", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path.resolve()


@pytest.mark.parametrize("subject", [0, 4, "x", True, None, 1.5])
def test_bad_subject(project, subject):
    with pytest.raises(ConfigError, match="subject must be 1, 2 or 3"):
        make_config(subject=subject)


def test_subject_as_string_is_accepted(project):
    assert make_config(subject="3").subject == 3


def test_unknown_profile(project):
    with pytest.raises(ConfigError, match=r"profile must be one of \('sim', 'paper'\); got 'real'"):
        make_config(profile="real")


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "", "CPU"])
def test_bad_device(project, device):
    with pytest.raises(ConfigError, match="device must be"):
        make_config(device=device)


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:1"])
def test_good_device(project, device):
    assert make_config(device=device).device == device


@pytest.mark.parametrize("seed, msg", [(-1, "seed must be >= 0"), ("abc", "seed must be an integer")])
def test_bad_seed(project, seed, msg):
    with pytest.raises(ConfigError, match=msg):
        make_config(seed=seed)


def test_bad_quick_string(project):
    with pytest.raises(ConfigError, match="quick must be a boolean"):
        make_config(quick="maybe")


def test_paper_without_data_root_says_what_to_do(project):
    with pytest.raises(ConfigError) as err:
        make_config(profile="paper")
    msg = str(err.value)
    assert "data_root" in msg and "NEUROCLIPS_CC2017" in msg and "video_fmri_dataset" in msg


def test_paper_data_root_from_environment(project, monkeypatch):
    data = project / "cc2017"
    (data / "video_fmri_dataset" / "subject2").mkdir(parents=True)
    monkeypatch.setenv("NEUROCLIPS_CC2017", str(data))
    cfg = make_config(profile="paper", subject=2)
    assert cfg.data_root == data
    assert detect_data_format(cfg.data_root, 2) == "raw"


def test_paper_release_layout_is_detected(project):
    (project / "release").mkdir()
    (project / "release" / "subj01_train_fmri.pt").write_bytes(b"")
    cfg = make_config(profile="paper", data_root="release")
    assert detect_data_format(cfg.data_root, 1) == "release"


def test_paper_wrong_layout_names_what_it_found(project):
    (project / "wrong").mkdir()
    (project / "wrong" / "readme.txt").write_text("not cc2017")
    with pytest.raises(ConfigError, match=r"wrong layout for subject 1.*readme\.txt"):
        make_config(profile="paper", data_root="wrong")


def test_paper_missing_data_root(project):
    with pytest.raises(ConfigError, match="does not exist"):
        make_config(profile="paper", data_root="nowhere")


def test_sim_data_root_with_wrong_layout(project):
    bad = project / "data" / "mine"
    bad.mkdir(parents=True)
    (bad / "something.bin").write_bytes(b"x")
    with pytest.raises(ConfigError, match="holds no video_fmri_dataset/"):
        make_config(data_root=bad)


def test_sim_data_root_missing_or_empty_is_fine(project):
    (project / "empty").mkdir()
    assert make_config(data_root="empty").data_root == project / "empty"
    assert make_config(data_root="later").data_root == project / "later"


def test_defaults_resolve_against_project_root(project):
    cfg = make_config()
    assert (cfg.profile, cfg.subject, cfg.quick, cfg.seed, cfg.sim_preset) == ("sim", 1, False, 0, "default")
    assert cfg.data_root == project / "data" / "cc2017-sim" / "default-seed0"
    assert cfg.run_root == project / "runs"
    assert cfg.run_dir == project / "runs" / "sim" / "subj01"
    assert cfg.store_dir == cfg.run_dir / "store"


def test_relative_paths_resolve_against_project_root_from_a_subfolder(project, monkeypatch):
    # Jupyter Book runs chapters in book/, papermill from the root: both must see the same paths
    monkeypatch.chdir(project / "book")
    assert project_root() == project
    cfg = make_config(data_root="data/x", run_root="out", subject=2, seed=7)
    assert cfg.data_root == project / "data" / "x"
    assert cfg.run_root == project / "out"
    assert cfg.run_dir == project / "out" / "sim" / "subj02"


def test_neuroclips_root_overrides(project, tmp_path_factory, monkeypatch):
    other = tmp_path_factory.mktemp("elsewhere").resolve()
    monkeypatch.setenv("NEUROCLIPS_ROOT", str(other))
    assert make_config().run_root == other / "runs"


def test_quick_uses_tiny_preset_and_separate_runs(project):
    cfg = make_config(quick=True, seed=3)
    assert cfg.quick is True and cfg.sim_preset == "tiny"
    assert cfg.data_root == project / "data" / "cc2017-sim" / "tiny-seed3"
    assert cfg.run_root == project / "runs" / "quick"
    assert make_config(quick="True").quick is True  # papermill/CLI strings
    assert make_config(quick="0").quick is False


def test_unknown_preset(project):
    with pytest.raises(ConfigError, match="sim_preset must be one of"):
        make_config(sim_preset="huge")


def test_extra_parameters_are_kept(project):
    assert make_config(ablation="no_blurry").extra == {"ablation": "no_blurry"}


def test_seed_everything_is_reproducible(project):
    import numpy as np
    import torch

    cfg = make_config(seed=5)
    cfg.seed_everything()
    a = (np.random.rand(3), torch.rand(3))
    cfg.seed_everything()
    b = (np.random.rand(3), torch.rand(3))
    assert np.array_equal(a[0], b[0]) and torch.equal(a[1], b[1])


# --- chapter helpers ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, default, expected", [
    ("1", False, True), ("true", False, True), ("YES", False, True), ("on", False, True),
    ("0", True, False), ("false", True, False), ("no", True, False), ("", True, False),
    ("7", 0, 7), (" 2.5 ", 1.0, 2.5), ("paper", "sim", "paper"), ("/data/cc", None, "/data/cc"),
])
def test_env_default_parses_like_the_default(monkeypatch, raw, default, expected):
    monkeypatch.setenv("NC_TEST_VAR", raw)
    value = env_default("NC_TEST_VAR", default)
    assert value == expected and type(value) is type(expected)


def test_env_default_unset_returns_default(monkeypatch):
    monkeypatch.delenv("NC_TEST_VAR", raising=False)
    assert env_default("NC_TEST_VAR", False) is False
    assert env_default("NC_TEST_VAR", None) is None


@pytest.mark.parametrize("raw, default", [("maybe", False), ("x", 3), ("1.2.3", 0.5)])
def test_env_default_rejects_unparsable(monkeypatch, raw, default):
    monkeypatch.setenv("NC_TEST_VAR", raw)
    with pytest.raises(ConfigError, match="NC_TEST_VAR"):
        env_default("NC_TEST_VAR", default)


def test_chapter_config_seeds_and_summarises(project, capsys, monkeypatch):
    import matplotlib as mpl
    import numpy as np
    import torch

    monkeypatch.delenv("NEUROCLIPS_THREADS", raising=False)     # the default thread count, whatever the shell says
    cfg = chapter_config(subject=2, quick=True, seed=11, device="cpu")
    out = capsys.readouterr().out.strip()
    assert out.count("\n") == 0
    assert "profile=sim subject=2 quick=True seed=11 preset=tiny" in out
    assert "run_dir=runs/quick/sim/subj02" in out
    assert cfg.run_dir == project / "runs" / "quick" / "sim" / "subj02"
    assert mpl.rcParams["image.interpolation"] == "nearest"
    if not torch.cuda.is_available():
        assert torch.get_num_threads() == 2
    first = np.random.rand()
    chapter_config(subject=2, quick=True, seed=11, device="cpu", verbose=False)
    assert np.random.rand() == first
    assert capsys.readouterr().out == ""


def test_chapter_config_validates(project):
    with pytest.raises(ConfigError, match="subject"):
        chapter_config(subject=4)


def test_chapter_threads_follow_neuroclips_threads(project, monkeypatch, capsys):
    import torch

    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("NEUROCLIPS_THREADS", "1")
        chapter_config(subject=1, quick=True, device="cpu")
        assert torch.get_num_threads() == 1 and "1 threads" in capsys.readouterr().out
        monkeypatch.delenv("NEUROCLIPS_THREADS")
        chapter_config(subject=1, quick=True, device="cpu")
        assert torch.get_num_threads() == 2
        for bad in ("0", "two"):
            monkeypatch.setenv("NEUROCLIPS_THREADS", bad)
            with pytest.raises(ConfigError, match="NEUROCLIPS_THREADS"):
                chapter_config(subject=1, quick=True, device="cpu")
    finally:
        torch.set_num_threads(before)
