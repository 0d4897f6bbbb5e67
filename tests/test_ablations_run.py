"""Chapter 06's core (:mod:`neuroclips_core.ablations_run`): the tables from metrics.json files, the paper's
directions, the batch's refusals, and its subjects run side by side (on a stand-in notebook).  The batch itself
(papermill over chapter 04) runs in the quick run of chapter 06 (tests/test_book.py)."""
from __future__ import annotations

import json

import pytest

from neuroclips_core.ablations_run import (METRIC_KEYS, PAPER_TABLE2, collect, direction_checks, paper_frame,
                                           run_batch, wide)
from neuroclips_core.config import make_config
from neuroclips_core.metrics_table import TABLE1_COLUMNS
from neuroclips_core.video_run import inference_dir


def write_run(cfg, subject, variant, n=24, **means):
    """A metrics.json as reconstruct_videos writes it; every column 0.5 unless given."""
    scores = {}
    for column, key in METRIC_KEYS.items():
        m = means.get(column, 0.5)
        scores[key] = {"mean": m, "se": 0.01} if "way" in key else {"mean": m, "std": 0.1}
    folder = inference_dir(cfg, subject, variant)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps({"scores": scores, "n_clips": n, "n_test": 240}))


@pytest.fixture
def cfg(tmp_path):
    return make_config(run_root=tmp_path, data_root=tmp_path / "data", quick=True)


def test_collect_reads_the_columns_and_their_standard_errors(cfg):
    write_run(cfg, 1, "full", ssim=0.4, frame_50way=0.2)
    write_run(cfg, 1, "no_blurry", ssim=0.3)
    scores = collect(cfg, [1], ["full", "no_blurry"])
    row = scores.set_index(["variant", "column"])
    assert row.loc[("full", "ssim"), "mean"] == 0.4 and row.loc[("full", "frame_50way"), "mean"] == 0.2
    assert row.loc[("full", "frame_50way"), "se"] == 0.01                       # the N-way's own SE
    assert row.loc[("full", "ssim"), "se"] == pytest.approx(0.1 / 24 ** 0.5)   # std / sqrt(n)
    table = wide(scores)
    assert list(table.columns) == [c.key for c in TABLE1_COLUMNS] and list(table.index) == ["full", "no_blurry"]


def test_collect_names_the_missing_run_and_the_command(cfg):
    write_run(cfg, 1, "full")
    with pytest.raises(FileNotFoundError, match=r"variant 'no_keyframe' of subject 1 has not run.*ablations "
                                                r"--subjects 1 --variants no_keyframe --seed 0 --quick"):
        collect(cfg, [1], ["full", "no_keyframe"])


def test_collect_refuses_runs_of_different_sizes(cfg):
    write_run(cfg, 1, "full", n=24)
    write_run(cfg, 1, "no_blurry", n=240)
    with pytest.raises(ValueError, match="different numbers of test clips"):
        collect(cfg, [1], ["full", "no_blurry"])


def test_direction_checks_follow_the_paper(cfg):
    # subject 1 as the paper: blurry lifts SSIM, keyframe lifts both 50-way, full has the best CLIP-pcc
    write_run(cfg, 1, "full", ssim=0.4, frame_50way=0.2, video_50way=0.2, clip_pcc=0.7)
    write_run(cfg, 1, "no_blurry", ssim=0.3, clip_pcc=0.69)
    write_run(cfg, 1, "no_keyframe", frame_50way=0.1, video_50way=0.1, clip_pcc=0.6)
    # subject 2: the keyframe lifts frame 50-way only, and another variant is far smoother
    write_run(cfg, 2, "full", ssim=0.4, frame_50way=0.2, video_50way=0.1, clip_pcc=0.5)
    write_run(cfg, 2, "no_blurry", ssim=0.3)
    write_run(cfg, 2, "no_keyframe", frame_50way=0.1, video_50way=0.2, clip_pcc=0.9)
    checks = direction_checks(collect(cfg, [1, 2], ["full", "no_blurry", "no_keyframe"]))
    assert all(checks[1].values())
    assert checks[2]["no_blurry lowers SSIM"]
    assert not checks[2]["no_keyframe lowers both 50-way"]
    assert not checks[2]["full has the best CLIP-pcc, or within noise"]


def test_direction_checks_need_the_three_variants(cfg):
    write_run(cfg, 1, "full")
    write_run(cfg, 1, "no_blurry")
    with pytest.raises(ValueError, match=r"lacks the variants \['no_keyframe'\]"):
        direction_checks(collect(cfg, [1], ["full", "no_blurry"]))


def test_paper_table2_is_quoted_row_for_row():
    assert set(PAPER_TABLE2) == {"full", "no_keyframe", "no_blurry", "fmri_caption"}
    assert PAPER_TABLE2["no_blurry"]["ssim"] == (0.256, 0.11)
    assert PAPER_TABLE2["full"]["psnr"] == (9.226, 1.42)
    assert paper_frame(PAPER_TABLE2).loc["no_keyframe", "frame_50way"] == 0.128


@pytest.mark.parametrize("subjects, variants, match", [([1], ["full", "sharp"], "unknown variants"),
                                                        ([4], ["full"], "subjects must be 1, 2 or 3")])
def test_run_batch_refuses_unknown_names(cfg, subjects, variants, match):
    with pytest.raises(ValueError, match=match):
        run_batch(cfg, subjects, variants)


def test_run_batch_needs_the_chapter(cfg, tmp_path):
    with pytest.raises(FileNotFoundError, match="chapter 04 is not there"):
        run_batch(cfg, [1], ["full"], notebook=tmp_path / "missing.ipynb")


def test_the_command_line_refuses_unknown_subjects(capsys):
    from neuroclips_core.__main__ import main

    assert main(["ablations", "--subjects", "1,5"]) == 2
    assert "unknown values [5]" in capsys.readouterr().err


def test_the_command_line_refuses_a_parallel_count_below_one(capsys):
    from neuroclips_core.__main__ import main

    assert main(["ablations", "--subjects", "1", "--parallel", "0"]) == 2
    assert "parallel must be a positive int" in capsys.readouterr().err


def test_run_batch_runs_every_subject_in_parallel_with_the_other_variants(cfg, tmp_path, monkeypatch):
    from test_notebook_batch import probe_notebook

    import neuroclips_core.data.simulate as simulate

    simulated = []      # the dataset is simulated before any kernel starts (recorded, not run: the kernels are stubs)
    monkeypatch.setattr(simulate, "simulate_dataset", lambda root, preset, seed, subjects, progress: simulated.append(
        (subjects, list(tmp_path.glob("subject*.json")))))
    monkeypatch.setenv("NEUROCLIPS_THREADS", "2")
    notebook = probe_notebook(tmp_path / "probe.ipynb", tmp_path)
    done = run_batch(cfg, [1, 2, 3], ["full", "no_blurry"], notebook=notebook, progress=False, parallel=2)
    assert [p.name for p in done] == [f"04_inference_subj0{s}.ipynb" for s in (1, 2, 3)]
    assert all(p.is_file() for p in done)
    records = [json.loads((tmp_path / f"subject{s}.json").read_text()) for s in (1, 2, 3)]
    assert [r["threads"] for r in records] == ["1", "1", "1"]      # 2 threads shared by 2 kernels at once
    assert {r["compare"] for r in records} == {"no_blurry"}
    assert simulated == [([1, 2, 3], [])]


@pytest.mark.parametrize("device, n_subjects, threads, expected", [("cpu", 3, "2", 2), ("cpu", 1, "2", 1),
                                                                   ("cpu", 3, "1", 1), ("cuda", 3, "2", 1)])
def test_default_parallel_is_one_subject_per_cpu_thread_and_one_on_a_gpu(tmp_path, monkeypatch, device, n_subjects,
                                                                         threads, expected):
    from neuroclips_core.ablations_run import default_parallel

    monkeypatch.setenv("NEUROCLIPS_THREADS", threads)
    cfg = make_config(run_root=tmp_path, data_root=tmp_path / "data", quick=True)
    monkeypatch.setattr(type(cfg), "torch_device", lambda self: __import__("torch").device(device))
    assert default_parallel(cfg, n_subjects) == expected


@pytest.mark.parametrize("parallel", [0, 1.5])
def test_run_batch_refuses_a_parallel_count_that_is_not_a_positive_int(cfg, parallel):
    with pytest.raises(ValueError, match="parallel must be a positive int"):
        run_batch(cfg, [1], ["full"], parallel=parallel)
