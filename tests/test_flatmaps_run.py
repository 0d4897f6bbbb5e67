"""Chapter 07's core (:mod:`neuroclips_core.flatmaps_run`): per-vertex maps, saliency, area-group masses and the
errors for a model that does not match the voxel selection.  The whole step runs on trained PR and SR checkpoints
in the quick run of chapter 07 (tests/test_book.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from neuroclips_core.flatmaps_run import (AREA_GROUPS, activation_pattern, baseline_shares, direction_checks,
                                          group_mass, group_vertices, input_saliency, map_file, on_cortex,
                                          random_layer_pattern)
from neuroclips_core.models.blocks import voxel_weight_norms
from neuroclips_core.notebook import parameter_list
from neuroclips_core.config import ConfigError


def linear(weight) -> torch.nn.Linear:
    """An nn.Linear holding ``weight`` (hidden, V): the first layers the models expose."""
    w = torch.as_tensor(np.asarray(weight), dtype=torch.float32)
    layer = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
    with torch.no_grad():
        layer.weight.copy_(w)
    return layer


def test_column_norms_are_placed_at_the_selected_vertices():
    w = np.array([[3.0, 0.0, 1.0], [4.0, 2.0, 0.0]])            # columns: norms 5, 2, 1
    out = on_cortex(voxel_weight_norms(linear(w)).numpy(), np.array([10, 3, 7]), n_vertices=12)
    assert out[10] == 5 and out[3] == 2 and out[7] == 1
    assert np.isnan(np.delete(out, [3, 7, 10])).all()


@pytest.mark.parametrize("values, idx, match", [
    (np.ones(3), np.array([0, 1]), r"3 values for 2 selected voxels.*another voxel selection"),
    (np.ones(2), np.array([0, 0]), r"distinct"),
    (np.ones(2), np.array([0, 12]), r"in \[0, 12\)"),
])
def test_values_that_do_not_fit_the_selection_are_refused(values, idx, match):
    with pytest.raises(ValueError, match=match):
        on_cortex(values, idx, n_vertices=12)


def test_saliency_of_a_linear_map_is_its_column_norm():
    """For y = W x the Jacobian is W, so the estimate must approach ||W[:, v]|| (within the probes' noise)."""
    rng = np.random.default_rng(0)
    w = torch.tensor(rng.normal(size=(40, 6)) * np.array([0.1, 1, 2, 0, 3, 0.5]), dtype=torch.float32)
    s = input_saliency(lambda x: x @ w.T, rng.normal(size=(256, 6)), probes=16)
    np.testing.assert_allclose(s, voxel_weight_norms(linear(w)).numpy(), rtol=0.08, atol=1e-6)
    assert s[3] == 0


def test_saliency_follows_the_network_downstream():
    """A hidden unit the output ignores does not count: the raw column norm and the saliency disagree."""
    first = torch.tensor([[1.0, 0.0], [0.0, 1.0]])               # voxel v feeds hidden unit v alone
    s = input_saliency(lambda x: (x @ first.T)[:, :1] * 3.0, np.ones((8, 2)), probes=4)
    assert s[0] == pytest.approx(3.0, rel=0.5) and s[1] == 0
    assert voxel_weight_norms(linear(first))[1] == 1


def test_saliency_refuses_non_finite_fmri():
    with pytest.raises(ValueError, match="NaN"):
        input_saliency(lambda x: x, np.array([[1.0, np.nan]]))


def test_pattern_finds_the_signal_voxel_that_equal_decoder_weights_hide():
    """Haufe et al.'s example: x1 = s + d carries the signal, x2 = d only the distractor.  The best decoder
    w = [1, -1] weighs both voxels alike; its pattern Cov(x, w x) = Cov(x, s) lies on x1 alone."""
    rng = np.random.default_rng(1)
    signal, distractor = rng.normal(size=(2, 20000))
    fmri = np.stack([signal + distractor, distractor], axis=1)
    w = torch.tensor([[1.0, -1.0]])
    assert voxel_weight_norms(linear(w)).tolist() == [1.0, 1.0]
    pattern = activation_pattern(w, fmri)
    assert pattern[0] == pytest.approx(1.0, abs=0.03) and pattern[1] == pytest.approx(0.0, abs=0.03)


def test_pattern_is_the_covariance_of_each_voxel_with_the_layer_output():
    rng = np.random.default_rng(2)
    fmri = rng.normal(size=(50, 5)) @ rng.normal(size=(5, 5)) + 3.0        # correlated, off-centre
    w = rng.normal(size=(3, 5))
    expected = np.linalg.norm(np.cov(fmri, rowvar=False) @ w.T, axis=1)
    np.testing.assert_allclose(activation_pattern(torch.tensor(w), fmri), expected, rtol=1e-4)


def test_random_layer_pattern_is_the_covariance_row_norm_and_what_random_layers_average_to():
    rng = np.random.default_rng(3)
    fmri = rng.normal(size=(400, 6)) * np.array([1, 1, 1, 2, 2, 2])
    fmri[:, 1] += fmri[:, 0]                                  # voxels 0, 1 share variance: more baseline
    base = random_layer_pattern(fmri, block=4)                # blocks that do not divide V
    np.testing.assert_allclose(base, np.linalg.norm(np.cov(fmri, rowvar=False), axis=1), rtol=1e-4)
    layers = [activation_pattern(rng.normal(size=(64, 6)), fmri) for _ in range(200)]
    np.testing.assert_allclose(np.sqrt(np.mean(np.square(layers), axis=0) / 64), base, rtol=0.05)


@pytest.mark.parametrize("weight, fmri, match", [
    (np.ones((2, 3)), np.ones((1, 3)), "N >= 2"),
    (np.ones((2, 3)), np.array([[1.0, np.nan, 0], [0, 1, 2]]), "NaN"),
    (np.ones((2, 4)), np.ones((5, 3)), r"\(hidden, V\) with the fMRI's V = 3, found \(2, 4\).*voxel selection"),
])
def test_pattern_refuses_bad_input(weight, fmri, match):
    with pytest.raises(ValueError, match=match):
        activation_pattern(weight, fmri)


def test_each_measure_is_compared_with_its_own_baseline():
    summary = {"equal_weights": {"early": 0.4}, "random_layer_pattern": {"early": 0.55}}
    assert baseline_shares(summary, "weights") == baseline_shares(summary, "saliency") == {"early": 0.4}
    assert baseline_shares(summary, "pattern") == {"early": 0.55}
    with pytest.raises(KeyError, match="predates the pattern"):
        baseline_shares({"equal_weights": {}}, "pattern")
    with pytest.raises(ValueError, match="unknown measure"):
        baseline_shares(summary, "gradient")


def test_group_mass_is_the_share_of_the_total():
    w = np.array([1.0, 3.0, np.nan, 4.0, 2.0])
    mass = group_mass(w, {"a": np.array([0, 1]), "b": np.array([3]), "c": np.array([2])})
    assert mass == pytest.approx({"a": 0.4, "b": 0.4, "c": 0.0})
    with pytest.raises(ValueError, match="no mass"):
        group_mass(np.full(3, np.nan), {"a": np.array([0])})
    with pytest.raises(ValueError, match="non-negative"):
        group_mass(np.array([1.0, -1.0]), {"a": np.array([0])})


def test_direction_checks_need_every_subject():
    good = {"mass": {"saliency": {"pr": {"early": 0.5, "higher": 0.3}, "sr": {"early": 0.4, "higher": 0.4}}}}
    bad = {"mass": {"saliency": {"pr": {"early": 0.3, "higher": 0.3}, "sr": {"early": 0.4, "higher": 0.4}}}}
    assert direction_checks({1: good, 2: good}, "saliency") == {"pr_early_above_sr": True, "sr_higher_above_pr": True}
    assert direction_checks({1: good, 2: bad}, "saliency")["pr_early_above_sr"] is False


def test_map_files_follow_the_contract_and_refuse_unknown_names():
    assert map_file("pr", "weights") == "pr_weights.npy" and map_file("sr", "weights") == "sr_weights.npy"
    with pytest.raises(ValueError, match="measures"):
        map_file("pr", "gradient")


def test_area_groups_are_disjoint_visual_parcels():
    members = group_vertices()
    assert set(members) == set(AREA_GROUPS) == {"early", "motion", "higher"}
    assert all(len(m) > 500 for m in members.values())
    joined = np.concatenate(list(members.values()))
    assert len(np.unique(joined)) == len(joined)            # no vertex in two groups


@pytest.mark.parametrize("value, expected", [(None, [1, 2, 3]), (2, [2]), ("1, 3", [1, 3]), ([3, "1"], [3, 1])])
def test_parameter_list_reads_papermill_values(value, expected):
    assert parameter_list(value, (1, 2, 3), "subjects", [1, 2, 3]) == expected


def test_parameter_list_names_the_unknown_values():
    with pytest.raises(ConfigError, match=r"subjects: unknown values \[4\]; known: \[1, 2, 3\]"):
        parameter_list("1,4", (1, 2, 3), "subjects", [1])
    with pytest.raises(ConfigError, match="compare: unknown values"):
        parameter_list("full,sharp", {"full": 0, "no_blurry": 1}, "compare", [])
