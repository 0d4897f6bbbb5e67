"""cc2017-sim: stimuli, simulated brains, and the written dataset (layout, determinism, resume)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from neuroclips_core.data import layout, sim_brain, sim_stimuli
from neuroclips_core.data import simulate as sim
from neuroclips_core.data.cifti import read_cortex


# ------------------------------------------------------------------------------------------ stimuli
def test_class_table_has_64_distinct_named_classes():
    table = sim_stimuli.class_table()
    assert len(table) == sim_stimuli.N_CLASSES == 64
    assert len({c["name"] for c in table}) == 64
    assert all(c["name"] == f'{c["pattern"]} {c["shape"]}' for c in table)


def test_shots_cover_the_segment_and_some_clips_straddle_cuts():
    shots = sim.segment_shots(seed=3, segment="seg1")
    assert shots[0].start == 0 and shots[-1].stop == 240 * 60
    assert all(a.stop == b.start for a, b in zip(shots, shots[1:]))
    ann = sim_stimuli.clip_annotations(shots, 240)
    assert len(ann["labels"]) == 240 and 0 < sum(ann["straddles_cut"]) < 240
    # every caption names its clip's class
    assert all(sim_stimuli.CLASSES[lab] in cap for lab, cap in zip(ann["labels"], ann["captions"]))


def test_clip_captions_follow_the_motion_actually_seen():
    """Objects bounce off the frame edges: each clip's caption and velocity describe its own net motion."""
    shots = sim.segment_shots(seed=4, segment="seg1")
    ann = sim_stimuli.clip_annotations(shots, 240)
    checked = 0
    for (vx, vy), cap in zip(ann["velocity"], ann["captions"]):
        if abs(vx) > 2 * abs(vy) and abs(vx) > 0.05:
            assert ("moving right" if vx > 0 else "moving left") in cap
            checked += 1
        elif abs(vy) > 2 * abs(vx) and abs(vy) > 0.05:
            assert ("moving down" if vy > 0 else "moving up") in cap
            checked += 1
    assert checked > 40


def test_same_seed_same_shots_other_seed_other_shots():
    a, b = sim.segment_shots(1, "seg2"), sim.segment_shots(1, "seg2")
    c = sim.segment_shots(2, "seg2")
    assert [s.to_json() for s in a] == [s.to_json() for s in b]
    assert [s.label for s in a] != [s.label for s in c]


def test_class_lives_in_fine_detail_that_blur_removes():
    """Two classes with the same outline differ at high spatial frequency only: blur (sigma = W/16) makes
    their frames nearly identical, while the sharp frames differ a lot."""
    shot = sim.segment_shots(0, "seg1")[0]
    size = 64
    frames = {}
    for pattern in (0, 1):                       # striped vs checkered disk, same colours/position
        shot.label = pattern
        frames[pattern] = sim_stimuli.render_frames([shot], np.array([0]), size)[0]
    sharp = np.abs(frames[0] - frames[1]).mean()
    blur = lambda x: gaussian_filter(x, (size / 16, size / 16, 0))
    blurred = np.abs(blur(frames[0]) - blur(frames[1])).mean()
    assert sharp > 0.02 and blurred < 0.1 * sharp


def test_objects_move_within_a_shot():
    shot = next(s for s in sim.segment_shots(0, "seg1") if np.hypot(*s.vel) > 0.1)
    st = sim_stimuli.shot_state(shot, np.array([shot.start, shot.start + 30]))
    assert np.linalg.norm(st["centre"][1] - st["centre"][0]) > 0.03
    assert np.all((st["centre"] > 0) & (st["centre"] < 1))


# ------------------------------------------------------------------------------------------ brains
def test_hrf_peaks_two_trs_after_the_clip():
    h = sim_brain.hrf_at_tr(2.0)
    assert np.argmax(h) == 2 and np.isclose(h.sum(), 1)


def test_subjects_differ_and_roles_follow_parcels():
    models = {s: sim_brain.build_subject(s, np.random.default_rng(0)) for s in (1, 2, 3)}
    counts = {s: int(m.responsive.sum()) for s, m in models.items()}
    assert len(set(counts.values())) == 3 and counts[2] > counts[1] > counts[3]
    v1 = sim_brain.parcel_vertices(["V1"])
    m = models[1]
    assert np.all(m.roles[v1] == 1)
    assert not m.responsive[m.roles == 0].any()                 # only visual parcels are driven
    # the left hemisphere's early pRFs sit in the right half of the image, and vice versa
    early = m.params["early"]["vertices"]
    left = early < 29696
    assert m.prf[early[left], 0].mean() > 0.6 and m.prf[early[~left], 0].mean() < 0.4


def test_higher_vertices_respond_to_class_not_early_ones():
    m = sim_brain.build_subject(1, np.random.default_rng(1))
    base = sim_brain.blank_features()
    feats = {k: np.repeat(v, 64, 0) for k, v in base.items()}
    feats["classes"] = np.eye(64, dtype=np.float32)               # same pixels, different class
    feats["presence"][:] = 0.1
    resp = m.responses(feats)
    idx = {v: i for i, v in enumerate(m.responsive_idx)}
    hi = [idx[v] for v in m.params["higher"]["vertices"]]
    early = [idx[v] for v in m.params["early"]["vertices"]]
    assert resp[:, hi].std(0).mean() > 0.3
    assert resp[:, early].std(0).max() < 1e-5


# ------------------------------------------------------------------------------------------ dataset
def test_tiny_dataset_has_the_cc2017_layout(tiny_root):
    info = json.loads((layout.ground_truth_dir(tiny_root) / "sim.json").read_text())
    assert info["preset"] == "tiny" and 1 in info["subjects_complete"]
    for seg in info["train_segments"] + info["test_segments"]:
        assert layout.stimulus_path(tiny_root, seg).is_file()
        reps = sorted(layout.run_path(tiny_root, 1, seg, 1).parent.glob("*_Atlas.dtseries.nii"))
        assert len(reps) == layout.repetitions(seg)
    run = read_cortex(layout.run_path(tiny_root, 1, "seg1", 1), expected_volumes=245)
    assert run.shape == (245, layout.N_CORTEX) and 500 < run.mean() < 1500
    resp = np.load(layout.ground_truth_dir(tiny_root) / "subject1" / "responsive.npy")
    assert resp.shape == (layout.N_CORTEX,) and resp.dtype == bool and 1000 < resp.sum() < 20000


def test_responsive_vertices_are_reproducible_and_others_are_not(tiny_root):
    a = read_cortex(layout.run_path(tiny_root, 1, "seg2", 1), 245)[3:243]
    b = read_cortex(layout.run_path(tiny_root, 1, "seg2", 2), 245)[3:243]
    legendre = np.polynomial.legendre.legvander(np.linspace(-1, 1, len(a)), 4)

    def z(x):  # 4th-order detrend (slow scanner drift is shared by the two runs' vertices), z-score
        x = x - legendre @ np.linalg.lstsq(legendre, x, rcond=None)[0]
        return (x - x.mean(0)) / x.std(0)

    r = (z(a) * z(b)).mean(0)
    resp = np.load(layout.ground_truth_dir(tiny_root) / "subject1" / "responsive.npy")
    assert np.median(r[resp]) > 0.3 and abs(np.median(r[~resp])) < 0.1


def test_noise_free_response_matches_the_data(tiny_root):
    gt = sim.load_ground_truth(tiny_root, 1)
    clean = sim.load_noise_free(tiny_root, 1, "test1")
    idx = np.nonzero(gt["responsive"])[0]
    runs = [read_cortex(layout.run_path(tiny_root, 1, "test1", r), 245)[:, idx] for r in range(1, 11)]
    mean = np.mean(runs, 0)
    zc = lambda x: (x - x.mean(0)) / x.std(0)
    r = (zc(mean[1:241]) * zc(clean[1:241])).mean(0)
    assert np.median(r) > 0.7


def test_resume_rewrites_a_deleted_run_identically(tiny_root):
    path = layout.run_path(tiny_root, 1, "seg3", 2)
    before = read_cortex(path, 245)
    path.unlink()
    sim.simulate_dataset(tiny_root, "tiny", 0, subjects=[1])
    assert np.array_equal(read_cortex(path, 245), before)


def test_a_different_simulation_in_the_same_folder_is_refused(tiny_root):
    with pytest.raises(sim.SimulationError, match="already holds cc2017-sim"):
        sim.simulate_dataset(tiny_root, "tiny", seed=99, subjects=[1])
    with pytest.raises(sim.SimulationError, match="unknown preset"):
        sim.simulate_dataset(tiny_root, "huge", seed=0, subjects=[1])
