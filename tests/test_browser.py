"""neuroclips_core.viz.browser: the keyframe browser's logic, its widget callbacks, missing data, and from_run."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from neuroclips_core.data.store import STORE_FORMAT, StoreWriter
from neuroclips_core.metrics import aligned_frame_indices, frame_scores
from neuroclips_core.viz import BrowserData, KeyframeBrowser, gif_bytes, save_gif

N, H = 10, 16


def make_data(seed=0, **overrides) -> BrowserData:
    """N clips of H x H random frames, every reconstruction present, two scores with distinct values (one NaN)."""
    rng = np.random.default_rng(seed)

    def frames(*shape):
        return rng.integers(0, 256, shape, dtype=np.uint8)

    a = rng.permutation(N) / N + 0.01                      # distinct: argsort orders are unambiguous
    b = rng.random(N)
    b[2] = np.nan
    fields = dict(gt=frames(N, 6, H, H, 3), blurry=frames(N, 6, H, H, 3), keyframes=frames(N, H, H, 3),
                  captions=[f"a {'red' if i % 3 == 0 else 'blue'} shape {i}" for i in range(N)],
                  videos=frames(N, 16, H, H, 3), gt_captions=[f"Truth {i}" for i in range(N)],
                  scores={"a": a, "b": b})
    fields.update(overrides)
    return BrowserData(**fields)


@pytest.fixture
def browser():
    return KeyframeBrowser(make_data(), display_px=32)


def decode(data: bytes) -> tuple[int, tuple[int, int]]:
    """(number of frames, (width, height)) of GIF or PNG bytes."""
    im = Image.open(io.BytesIO(data))
    return getattr(im, "n_frames", 1), im.size


# ------------------------------------------------------------------------------------------------- order
def test_sort_ascending_descending_is_argsort(browser):
    a = browser.data.scores["a"]
    browser.set_sort("a", descending=False)
    np.testing.assert_array_equal(browser.order(), np.argsort(a))
    browser.set_sort("a", descending=True)
    np.testing.assert_array_equal(browser.order(), np.argsort(a)[::-1])
    browser.set_sort("clip", descending=True)
    np.testing.assert_array_equal(browser.order(), np.arange(N)[::-1])
    with pytest.raises(ValueError, match="unknown 'nope'"):
        browser.set_sort("nope")


def test_nan_scores_sort_last_and_are_skipped_by_best_worst(browser):
    b = browser.data.scores["b"]
    for descending in (False, True):
        browser.set_sort("b", descending)
        assert browser.order()[-1] == 2                    # the NaN clip, whichever the direction
        assert browser.jump("best") and browser.current == np.nanargmax(b)
        assert browser.jump("worst") and browser.current == np.nanargmin(b)


@pytest.mark.parametrize("descending", [False, True])
def test_best_and_worst_follow_the_score_within_the_filter(browser, descending):
    a = browser.data.scores["a"]
    browser.set_sort("a", descending)
    browser.jump("best")
    assert browser.current == np.argmax(a)
    browser.jump("worst")
    assert browser.current == np.argmin(a)
    browser.set_filter("a", 0.2, 0.75)
    inside = np.flatnonzero((a >= 0.2) & (a <= 0.75))
    browser.jump("best")
    assert browser.current == inside[np.argmax(a[inside])]
    browser.jump("worst")
    assert browser.current == inside[np.argmin(a[inside])]


def test_prev_next_walk_the_sorted_order_and_stop_at_the_ends(browser):
    browser.set_sort("a", descending=True)
    order = browser.order()
    browser.select(order[0])
    walked = [browser.current]
    for _ in range(N + 2):                                  # bounded: a wrap-around would never return False
        if not browser.step(+1):
            break
        walked.append(browser.current)
    assert walked == list(order)
    assert "last" in browser.message and browser.current == order[-1]      # stops, does not wrap
    assert browser.step(-1) and browser.current == order[-2]
    browser.select(order[0])
    assert not browser.step(-1) and browser.current == order[0] and "first" in browser.message


def test_score_filter_restricts_the_order_and_moves_the_selection(browser):
    a = browser.data.scores["a"]
    browser.set_sort("a")
    outside = int(np.argmax(a))
    browser.select(outside)
    browser.set_filter("a", 0.0, 0.5)
    expected = [i for i in np.argsort(a) if a[i] <= 0.5]
    assert list(browser.order()) == expected
    assert browser.current == expected[0]                   # moved into the filtered set
    inside = expected[2]
    browser.select(inside)
    browser.set_filter("a", 0.0, 0.6)                       # still inside: the selection stays
    assert browser.current == inside
    assert not browser.select(outside) and "hidden by the filter" in browser.message
    assert browser.current == inside
    with pytest.raises(ValueError, match="out of range"):
        browser.select(N)


def test_text_filter_matches_either_caption_case_insensitively(browser):
    browser.set_filter(text="RED")
    assert list(browser.order()) == [i for i in range(N) if i % 3 == 0]
    browser.set_filter(text="truth 7")                      # in the ground-truth caption only
    assert list(browser.order()) == [7] and browser.current == 7
    browser.set_filter()
    assert len(browser.order()) == N


def test_empty_filter_gives_a_message_not_an_exception(browser):
    browser.set_filter("a", 0.3, 0.9, text="no such words")
    assert len(browser.order()) == 0 and browser.current is None
    assert "No clip matches" in browser.message
    panels = browser.current_panels()
    assert panels["clip"] is None and panels["images"] == {} and "No clip matches" in panels["message"]
    assert not browser.step(+1) and not browser.jump("best")
    browser.set_filter()
    assert browser.current == browser.order()[0]


# ------------------------------------------------------------------------------------------------ panels
def test_panels_are_nearest_neighbour_upscaled_and_cached(browser):
    d = browser.data
    browser.select(4)
    p = browser.current_panels()
    assert list(p["images"]) == ["gt", "blurry", "keyframe", "video"]
    assert p["caption"] == d.captions[4] and p["gt_caption"] == "Truth 4"
    assert p["scores"]["a"] == d.scores["a"][4]
    assert decode(p["images"]["gt"]) == (6, (32, 32))       # 16 px x 2 to reach display_px = 32
    assert decode(p["images"]["video"]) == (16, (32, 32))
    key = np.asarray(Image.open(io.BytesIO(p["images"]["keyframe"])).convert("RGB"))
    np.testing.assert_array_equal(key, d.keyframes[4].repeat(2, 0).repeat(2, 1))
    assert browser.current_panels()["images"] is p["images"]          # cached, not rendered again
    browser.cache_size = 2
    for i in range(3):
        browser.select(i)
        browser.current_panels()
    assert sorted(browser._cache) == [1, 2]


def test_gif_bytes_is_what_save_gif_writes(tmp_path):
    v = make_data().videos[0]
    assert save_gif(v, tmp_path / "v.gif", fps=8, scale=2).read_bytes() == gif_bytes(v, 8, scale=2)


def test_pixel_scores_match_the_metric_and_use_the_aligned_frames():
    d = make_data()
    perfect = np.zeros_like(d.videos)
    perfect[:, aligned_frame_indices(16, 6)] = d.gt            # exactly the ground truth at the scored frames
    d.videos = perfect
    d.add_pixel_scores(("ssim_s2",))
    np.testing.assert_allclose(d.scores["video_ssim_s2"], 1.0)
    expected = frame_scores(d.blurry, d.gt, ("ssim_s2",))["ssim_s2"].mean(axis=1)
    np.testing.assert_allclose(d.scores["blurry_ssim_s2"], expected)
    assert expected.max() < 0.5                                # random blurry frames: far from 1


# ------------------------------------------------------------------------------------------------ widgets
def test_widget_callbacks_update_selection_and_panels(browser):
    d = browser.data
    top = browser.widget
    assert browser.widget is top and set(browser.images) == {"gt", "blurry", "keyframe", "video"}
    before = {k: im.value for k, im in browser.images.items()}
    assert before["gt"] and browser.caption_label.value == f"keyframe caption: {d.captions[0]}"

    browser.sort_dropdown.value = "a"
    browser.descending_toggle.value = True
    assert (browser.sort, browser.descending) == ("a", True)
    browser.best_button.click()
    best = int(np.argmax(d.scores["a"]))
    assert browser.current == best and browser.clip_box.value == best and browser.rank_slider.value == 0
    assert browser.caption_label.value == f"keyframe caption: {d.captions[best]}"
    assert browser.gt_caption_label.value == f"ground-truth caption: Truth {best}"
    assert all(browser.images[k].value != before[k] for k in before)      # new clip, new pictures
    assert f"{d.scores['a'][best]:.4g}" in browser.score_table.value

    browser.next_button.click()
    assert browser.current == browser.order()[1] and browser.rank_slider.value == 1
    browser.rank_slider.value = 5
    assert browser.current == browser.order()[5] and browser.clip_box.value == browser.current
    browser.clip_box.value = 3
    assert browser.current == 3 and browser.rank_slider.value == list(browser.order()).index(3)
    browser.worst_button.click()
    assert browser.current == np.argmin(d.scores["a"])
    browser.prev_button.click()
    assert browser.current == browser.order()[-2]


def test_widget_filters_and_empty_result(browser):
    a = browser.data.scores["a"]
    browser.widget
    browser.sort_dropdown.value = "a"
    assert browser.range_slider.min == pytest.approx(a.min()) and browser.range_slider.max == pytest.approx(a.max())
    browser.range_slider.value = (0.3, 0.7)
    assert browser.filter.score == "a"
    assert set(browser.order()) == set(np.flatnonzero((a >= 0.3) & (a <= 0.7)))
    assert browser.clip_box.value in browser.order()
    browser.sort_dropdown.value = "b"                         # another score: its full range, the old range dropped
    assert browser.filter.score is None and len(browser.order()) == N
    browser.text_filter.value = "blue"
    assert all(i % 3 for i in browser.order())
    browser.text_filter.value = "zebra"
    assert "No clip matches" in browser.message_label.value
    assert all(im.value == b"" for im in browser.images.values())
    assert browser.next_button.disabled
    browser.text_filter.value = ""
    assert len(browser.order()) == N and not browser.next_button.disabled
    assert browser.images["gt"].value != b""


def test_widget_filter_keeps_a_selection_that_passes_and_shows_its_new_rank(browser):
    browser.widget
    browser.sort_dropdown.value = "a"                         # ascending: rank r holds a = r / 10 + 0.01
    browser.rank_slider.value = 7
    kept = browser.current
    browser.range_slider.value = (0.5, browser.range_slider.max)          # ranks 5 .. 9 pass
    assert len(browser.order()) == 5
    # the slider's maximum shrinks below its old value: that clamp must not select another clip
    assert browser.current == kept and browser.rank_slider.value == 2 and browser.clip_box.value == kept


def test_ipython_display_shows_the_widget(browser, monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    browser._ipython_display_()
    assert shown == [browser.widget]


# ------------------------------------------------------------------------------------------ missing data
def test_missing_reconstructions_leave_their_panels_out():
    full = make_data()
    b = KeyframeBrowser(BrowserData(gt=full.gt), display_px=16)
    assert list(b.current_panels()["images"]) == ["gt"] and b.current_panels()["caption"] is None
    b.widget
    assert set(b.images) == {"gt"} and b.text_filter is None
    assert b.sort_names == ["clip"] and b.range_slider.disabled
    assert b.jump("worst") and b.current == N - 1            # sorted by index: the last clip
    with pytest.raises(ValueError, match="needs captions"):
        b.set_filter(text="red")
    b = KeyframeBrowser(BrowserData(gt=full.gt, keyframes=full.keyframes, captions=full.captions))
    assert list(b.current_panels()["images"]) == ["gt", "keyframe"]
    b.widget                                                   # builds without the missing panels
    assert set(b.images) == {"gt", "keyframe"}


@pytest.mark.parametrize("name, value, match", [
    ("videos", np.zeros((N - 1, 16, H, H, 3), np.uint8), f"videos has {N - 1} clips but gt has {N}"),
    ("keyframes", np.zeros((N + 2, H, H, 3), np.uint8), f"keyframes has {N + 2} clips but gt has {N}"),
    ("captions", ["x"] * 3, f"captions has 3 clips but gt has {N}"),
    ("scores", {"a": np.zeros(N - 1)}, rf"scores\['a'\] has {N - 1} clips but gt has {N}"),
    ("blurry", np.zeros((N, 6, H, H, 3), np.float32),
     r"blurry: expected a uint8 array \(10, F, H, W, 3\), found float32"),
    ("gt", np.zeros((N, 6, H, H), np.uint8),
     r"gt: expected a uint8 array \(N, 6, H, W, 3\), found uint8 \(10, 6, 16, 16\)"),
    ("scores", {"clip": np.zeros(N)}, "other than 'clip'"),
])
def test_bad_shapes_are_named(name, value, match):
    with pytest.raises(ValueError, match=match):
        make_data(**{name: value})


# ------------------------------------------------------------------------------------------------ from_run
def write_store(out, gt, captions):
    with StoreWriter(out) as w:
        w.save_array("voxel_indices.npy", np.arange(4))
        w.save_array("fmri_train.npy", np.zeros((3, 2, 4), np.float32))
        w.save_array("fmri_test.npy", np.zeros((len(gt), 10, 4), np.float32))
        w.save_array("frames_train.npy", np.zeros((3, *gt.shape[1:]), np.uint8))
        w.save_array("frames_test.npy", gt)
        w.write_json("captions_train.json", ["t"] * 3)
        w.write_json("captions_test.json", captions)
        w.write_json("meta.json", {"format": STORE_FORMAT, "n_train": 3, "n_test": len(gt)})


def test_from_run_reads_the_design_layout(tmp_path):
    d = make_data()
    run = tmp_path / "sim" / "subj01"
    write_store(run / "store", d.gt, d.gt_captions)
    only_store = BrowserData.from_run(run)
    assert only_store.blurry is only_store.keyframes is only_store.videos is only_store.captions is None
    assert only_store.gt_captions == d.gt_captions and only_store.scores == {}

    for rel, arr in (("perception/blurry_test.npy", d.blurry), ("semantics/keyframes_test.npy", d.keyframes),
                     ("inference/full/videos_test.npy", d.videos)):
        (run / rel).parent.mkdir(parents=True, exist_ok=True)
        np.save(run / rel, arr)
    (run / "semantics" / "captions_test.json").write_text(json.dumps(d.captions))
    per_clip = {"ssim_s2": list(d.scores["a"]), "video_50way": [None] + [0.5] * (N - 1)}
    (run / "inference" / "full" / "metrics.json").write_text(json.dumps({"ssim_s2": {"mean": 0.3},
                                                                         "per_clip": per_clip}))
    (run / "perception" / "metrics.json").write_text(json.dumps({"per_clip": {"ssim_s2": list(d.scores["b"])}}))
    got = BrowserData.from_run(run)
    for name in ("gt", "blurry", "keyframes", "videos"):
        np.testing.assert_array_equal(getattr(got, name), getattr(d, name))
    assert got.captions == d.captions
    assert sorted(got.scores) == ["blurry_ssim_s2", "ssim_s2", "video_50way"]
    np.testing.assert_array_equal(got.scores["ssim_s2"], d.scores["a"])
    np.testing.assert_array_equal(got.scores["blurry_ssim_s2"], d.scores["b"])       # NaN stays NaN
    assert np.isnan(got.scores["video_50way"][0])
    assert BrowserData.from_run(run, variant="no_keyframe").videos is None            # another variant: not run

    (run / "inference" / "full" / "metrics.json").write_text(json.dumps({"per_clip": {"ssim_s2": [1.0, 2.0]}}))
    with pytest.raises(ValueError, match=r"per_clip\['ssim_s2'\] has shape \(2,\), expected .* \(10,\)"):
        BrowserData.from_run(run)
    # a run of the first 4 clips (quick mode, n_clips): the browser shows those 4, everything cut to match
    np.save(run / "inference" / "full" / "videos_test.npy", d.videos[:4])
    (run / "inference" / "full" / "metrics.json").write_text(json.dumps({"per_clip": {"ssim_s2": [1.0] * 4}}))
    first = BrowserData.from_run(run)
    assert first.n_clips == 4 and f"first 4 of {N} clips" in first.title
    np.testing.assert_array_equal(first.keyframes, d.keyframes[:4])
    assert first.captions == d.captions[:4] and len(first.scores["blurry_ssim_s2"]) == 4
