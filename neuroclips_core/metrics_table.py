"""Table 1 of the paper beside ours: the paper's NeuroClips numbers (quoted) and a layout helper.

:func:`table1_frame` takes our scores in the shape ``metrics.json`` holds them (``{key: value}``, a value a number,
a ``{"mean", "se" | "std"}`` dict, or an :class:`~neuroclips_core.metrics_semantic.NWayResult`) and lays out a
DataFrame with Table 1's columns: our row, the paper's row, the chance level of each semantic column, and the
recipe each column was computed with (so a reader sees which SSIM and which CLIP-pcc stand in the table).
"""
from __future__ import annotations

from typing import NamedTuple

from .metrics_semantic import GT_TOP, n_way_chance

_N_WAY = "GT top-3 vs N-1 distractors, top-1, 100 trials, ± binomial SE"
SSIM_RECIPES = {"ssim_s1": "SSIM S1: colour, 7x7 uniform window (MinD-Video)",
                "ssim_s2": "SSIM S2: grayscale 2-D, Gaussian sigma 1.5 (MindEye2)",
                "ssim_s2p": "SSIM S2': grayscale, channel_axis=-1, 1-D per column (NEURONS)"}
CLIP_PCC_RECIPES = {"clip_pcc_adjacent": "CLIP image embeddings, adjacent frames, mean cosine (paper; no gate)",
                    "clip_pcc_all_pairs": "CLIP image embeddings, all frame pairs, mean cosine (NEURONS)"}


class Table1Column(NamedTuple):
    key: str          # the column's key in PAPER_TABLE1
    header: tuple     # (video/frame-based, level, metric), Table 1's three header rows
    recipe: str
    n_way: int | None = None


TABLE1_COLUMNS = (
    Table1Column("video_2way", ("Video-based", "Semantic-level", "2-way"), f"video classifier; {_N_WAY}", 2),
    Table1Column("video_50way", ("Video-based", "Semantic-level", "50-way"), f"video classifier; {_N_WAY}", 50),
    Table1Column("clip_pcc", ("Video-based", "ST-level", "CLIP-pcc"), ""),
    Table1Column("frame_2way", ("Frame-based", "Semantic-level", "2-way"), f"frame classifier; {_N_WAY}", 2),
    Table1Column("frame_50way", ("Frame-based", "Semantic-level", "50-way"), f"frame classifier; {_N_WAY}", 50),
    Table1Column("ssim", ("Frame-based", "Pixel-level", "SSIM"), ""),
    Table1Column("psnr", ("Frame-based", "Pixel-level", "PSNR"), "PSNR, data range 255, RGB (NEURONS)"),
)


# Table 1 of the paper (seeds/000_0c7712290a6ae770.txt): "Quantitative comparison of NeuroClips reconstruction
# performance against other methods. [...] MinD-Video and NeuroClips are both results averaged across all three
# subjects, and the other methods are results from subject 1."  Quoted, not computed: the NeuroClips rows as
# printed, mean and ± per column in TABLE1_COLUMNS' order.
_PAPER_TABLE1_TEXT = """
average     0.834 0.03  0.220 0.01  0.738 0.17  0.806 0.03  0.203 0.01  0.390 0.08  9.211 1.46
subject 1   0.830 0.03  0.208 0.01  0.736 0.12  0.799 0.03  0.187 0.01  0.392 0.08  9.226 1.42
subject 2   0.837 0.03  0.230 0.01  0.742 0.19  0.811 0.03  0.210 0.01  0.392 0.08  9.336 1.52
subject 3   0.835 0.03  0.221 0.01  0.735 0.20  0.807 0.03  0.213 0.01  0.387 0.09  9.072 1.44
"""


def parse_paper_rows(text: str) -> dict[str, dict[str, tuple[float, float]]]:
    """Rows "name  mean ± mean ± ..." -> {name: {column key: (mean, ±)}}."""
    n = 2 * len(TABLE1_COLUMNS)
    rows = {}
    for line in text.strip().splitlines():
        words = line.split()
        numbers = [float(w) for w in words[-n:]]
        rows[" ".join(words[:-n])] = {c.key: (numbers[2 * i], numbers[2 * i + 1]) for i, c in enumerate(TABLE1_COLUMNS)}
    return rows


#: {"average" | "subject N": {column key: (mean, ±)}}: NeuroClips in the paper's Table 1
PAPER_TABLE1 = parse_paper_rows(_PAPER_TABLE1_TEXT)


def _mean_pm(value) -> tuple[float, float | None]:
    """A score as (mean, ±): a number, a (mean, ±) pair, a dict with "mean" and "se" or "std", or an object with
    .mean and .se (:class:`~neuroclips_core.metrics_semantic.NWayResult`)."""
    if isinstance(value, tuple):
        return float(value[0]), value[1]
    if isinstance(value, dict):
        return float(value["mean"]), value.get("se", value.get("std"))
    if hasattr(value, "mean") and hasattr(value, "se"):
        return float(value.mean), float(value.se)
    return float(value), None


def _format(value) -> str:
    if value is None:
        return "-"
    mean, pm = _mean_pm(value)
    return f"{mean:.3f}" if pm is None else f"{mean:.3f} ± {pm:.2f}"


def table1_frame(results: dict, paper: dict = PAPER_TABLE1["subject 1"], *, ssim: str = "ssim_s2",
                 clip_pcc: str = "clip_pcc_adjacent", ours: str = "ours",
                 paper_label: str = "NeuroClips (paper)", gt_top: int = GT_TOP):
    """Table 1's columns with our numbers, the paper's, the chance level and the recipe per column.

    Args:
        results: our scores; keys as Table 1's columns (``video_2way``, ``video_50way``, ``frame_2way``,
            ``frame_50way``, ``psnr``), plus the SSIM and CLIP-pcc chosen below under their own keys.
        paper: one entry of :data:`PAPER_TABLE1` (``{column key: (mean, ±)}``).
        ssim: which SSIM recipe fills the SSIM column (a key of :data:`SSIM_RECIPES`; S2 by default, the
            true 2-D grayscale SSIM the paper's environment most likely used).
        clip_pcc: which CLIP-pcc fills its column (a key of :data:`CLIP_PCC_RECIPES`).
        gt_top: GT classes of the N-way tests, for the chance row.

    Returns:
        a pandas DataFrame of strings ("0.830 ± 0.03"; "-" where a number is missing), rows ``ours``,
        ``paper_label``, "chance", "recipe", and Table 1's three header rows as a column MultiIndex.
    """
    import pandas as pd

    if ssim not in SSIM_RECIPES or clip_pcc not in CLIP_PCC_RECIPES:
        raise ValueError(f"table1_frame: ssim must be one of {list(SSIM_RECIPES)} and clip_pcc one of "
                         f"{list(CLIP_PCC_RECIPES)}; found {ssim!r} and {clip_pcc!r}")
    our_keys = {"ssim": ssim, "clip_pcc": clip_pcc}
    recipes = {"ssim": SSIM_RECIPES[ssim], "clip_pcc": CLIP_PCC_RECIPES[clip_pcc]}
    rows = {ours: [], paper_label: [], "chance": [], "recipe": []}
    for column in TABLE1_COLUMNS:
        rows[ours].append(_format(results.get(our_keys.get(column.key, column.key))))
        rows[paper_label].append(_format(paper.get(column.key)))
        rows["chance"].append(f"{n_way_chance(column.n_way, gt_top):.3f}" if column.n_way else "")
        rows["recipe"].append(recipes.get(column.key, column.recipe))
    header = pd.MultiIndex.from_tuples([c.header for c in TABLE1_COLUMNS])
    return pd.DataFrame.from_dict(rows, orient="index", columns=header)
