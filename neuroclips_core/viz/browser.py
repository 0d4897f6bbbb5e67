"""The keyframe browser: an ipywidgets viewer over the test clips of one run (issue 6, item 4).

For the selected clip, side by side: the ground-truth frames, the blurry video, the keyframe, the final video
(GIFs and a PNG, upscaled by nearest neighbour), the keyframe caption and the clip's ground-truth caption, and a
table of the clip's scores with its rank among all clips.  Clips can be sorted by any per-clip score (or by
index), filtered by a score range or by words in the captions, walked with prev/next, and the best and worst
clip of the current score are one click away.

Two layers, so the logic is testable without a front end::

    data = BrowserData.from_run(cfg.run_dir)           # or BrowserData(gt=..., videos=..., scores={...})
    b = KeyframeBrowser(data)
    b.set_sort("ssim_s2", descending=True); b.jump("worst"); b.current_panels()    # plain methods
    b                                                    # in a notebook: the widget (b.widget)

Every widget callback is a thin wrapper around one of the plain methods (:meth:`KeyframeBrowser.select`,
:meth:`~KeyframeBrowser.step`, :meth:`~KeyframeBrowser.jump`, :meth:`~KeyframeBrowser.set_sort`,
:meth:`~KeyframeBrowser.set_filter`), and every plain method re-syncs the widgets when they exist.

Per-clip scores come from the caller, from ``"per_clip"`` entries of the run's metrics files (see
:meth:`BrowserData.from_run`), or from :meth:`BrowserData.add_pixel_scores` (SSIM and friends against the ground
truth, computed here).
"""
from __future__ import annotations

import html
import json
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.layout import CLIP_SECONDS
from .frames import gif_bytes, png_bytes

CLIP_ORDER = "clip"        # the sort key of "by clip index" (a reserved name: no score may take it)
PANEL_TITLES = {"gt": "ground truth", "blurry": "blurry video", "keyframe": "keyframe", "video": "final video"}


# ================================================================================================ the data
@dataclass
class BrowserData:
    """What the browser shows, for N test clips.  Any reconstruction may be ``None`` (its panel is left out).

    Attributes:
        gt: uint8 (N, 6, H, W, 3): the ground-truth frames at 3 FPS (the store's ``frames_test.npy``).
        blurry: uint8 (N, F, H', W', 3) or None: the Perception Reconstructor's blurry video (F = 6 at 3 FPS, or
            16 at 8 FPS; the frame rate shown is F / 2 s).
        keyframes: uint8 (N, H', W', 3) or None.
        captions: N keyframe captions or None (an entry may be None: not captioned).
        videos: uint8 (N, 16, H', W', 3) or None: the final videos at 8 FPS.
        gt_captions: N ground-truth captions or None.
        scores: {name: float (N,)}: per-clip scores (NaN where a clip has none); higher is taken as better.
        title: a line shown above the panels (e.g. the run and variant).

    Memory-mapped arrays are kept as they are: only the clips shown are read.
    """

    gt: np.ndarray
    blurry: np.ndarray | None = None
    keyframes: np.ndarray | None = None
    captions: list | None = None
    videos: np.ndarray | None = None
    gt_captions: list | None = None
    scores: dict = field(default_factory=dict)
    title: str = ""

    def __post_init__(self):
        gt = self.gt
        if not isinstance(gt, np.ndarray) or gt.dtype != np.uint8 or gt.ndim != 5 or gt.shape[-1] != 3:
            raise ValueError(f"BrowserData: gt: expected a uint8 array (N, 6, H, W, 3), found {_describe(gt)}")
        n = self.n_clips
        if n == 0:
            raise ValueError("BrowserData: gt holds no clips (N = 0); there is nothing to browse")
        for name, ndim, layout in (("blurry", 5, "F, H, W, 3"), ("keyframes", 4, "H, W, 3"),
                                   ("videos", 5, "16, H, W, 3")):
            a = getattr(self, name)
            if a is None:
                continue
            if not isinstance(a, np.ndarray) or a.dtype != np.uint8 or a.ndim != ndim or a.shape[-1] != 3:
                raise ValueError(f"BrowserData: {name}: expected a uint8 array ({n}, {layout}), found {_describe(a)}")
            _check_count(name, len(a), n)
        for name in ("captions", "gt_captions"):
            c = getattr(self, name)
            if c is None:
                continue
            if isinstance(c, (str, bytes)) or not hasattr(c, "__len__"):
                raise ValueError(f"BrowserData: {name}: expected a list of {n} strings, found {type(c).__name__}")
            _check_count(name, len(c), n)
            setattr(self, name, [None if x is None else str(x) for x in c])
        scores = {}
        for name, s in dict(self.scores).items():
            if not isinstance(name, str) or name == CLIP_ORDER:
                raise ValueError(f"BrowserData: score names must be strings other than {CLIP_ORDER!r} (the sort by "
                                 f"clip index); found {name!r}")
            s = np.asarray(s, dtype=np.float64)
            if s.ndim != 1:
                raise ValueError(f"BrowserData: scores[{name!r}]: expected one number per clip ({n},), found shape "
                                 f"{s.shape}")
            _check_count(f"scores[{name!r}]", len(s), n)
            scores[name] = s
        self.scores = scores

    @property
    def n_clips(self) -> int:
        return int(self.gt.shape[0])

    # ------------------------------------------------------------------------------------------ from a run
    @classmethod
    def from_run(cls, run_dir: str | Path, variant: str = "full", store_dir: str | Path | None = None) -> "BrowserData":
        """Read what exists of one subject's run folder (DESIGN.md §7 layout); what is missing stays ``None``.

        Reads ``store/frames_test.npy`` and ``store/captions_test.json`` (through :class:`~neuroclips_core.data.
        store.Store`; ``store_dir`` overrides ``run_dir/store``), ``perception/blurry_test.npy``,
        ``semantics/keyframes_test.npy``, ``semantics/captions_test.json`` and ``inference/<variant>/
        videos_test.npy``.  Per-clip scores are taken from any ``"per_clip": {name: [N numbers]}`` entry of
        ``inference/<variant>/metrics.json`` (names as they are) and ``perception/metrics.json`` (names prefixed
        ``blurry_``); null entries become NaN.
        """
        from ..data.store import Store

        run_dir = Path(run_dir)
        store = Store.open(Path(store_dir) if store_dir is not None else run_dir / "store")
        if not store.has_frames:
            raise ValueError(f"{store.path}: the store has no frames (fMRI-only); the browser needs the ground-truth "
                             "frames: re-run prepare with frames")
        n = store.n_test
        videos = _load_npy(run_dir / "inference" / variant / "videos_test.npy")
        # a run of the first clips only (quick mode, n_clips): browse those; everything else is cut to match
        n_shown = n if videos is None else min(len(videos), n)
        scores = {**_per_clip_scores(run_dir / "perception" / "metrics.json", n, "blurry_"),
                  **_per_clip_scores(run_dir / "inference" / variant / "metrics.json", n_shown, "")}
        scores = {k: v[:n_shown] for k, v in scores.items()}
        gt_captions = store.captions_test if any(c is not None for c in store.captions_test) else None
        captions_file = run_dir / "semantics" / "captions_test.json"
        captions = json.loads(captions_file.read_text()) if captions_file.is_file() else None

        def first(a):
            return None if a is None else a[:n_shown]

        return cls(gt=store.frames_test[:n_shown],
                   blurry=first(_load_npy(run_dir / "perception" / "blurry_test.npy")),
                   keyframes=first(_load_npy(run_dir / "semantics" / "keyframes_test.npy")),
                   captions=first(captions), videos=videos, gt_captions=first(gt_captions), scores=scores,
                   title=f"{run_dir} · variant {variant}" + (f" · first {n_shown} of {n} clips" if n_shown < n else ""))

    # ------------------------------------------------------------------------------------------ pixel scores
    def add_pixel_scores(self, metrics=("ssim_s2",), rule: str = "anchors", chunk: int = 64) -> "BrowserData":
        """Add per-clip pixel scores of the blurry and final videos against ``gt``; returns ``self``.

        For each metric of :data:`~neuroclips_core.metrics.FRAME_METRICS` adds ``blurry_<metric>`` and
        ``video_<metric>``: the mean over the 6 ground-truth frames, a 16-frame video first aligned to them with
        :func:`~neuroclips_core.metrics.align_to_ground_truth` (``rule``).  Reads ``chunk`` clips at a time.
        """
        from ..metrics import align_to_ground_truth, frame_scores

        n_gt = self.gt.shape[1]
        for name, rec in (("blurry", self.blurry), ("video", self.videos)):
            if rec is None:
                continue
            if rec.shape[2:] != self.gt.shape[2:]:
                raise ValueError(f"add_pixel_scores: {name} frames are {rec.shape[2:4]} but gt frames are "
                                 f"{self.gt.shape[2:4]}; pixel scores need the same frame size")
            parts = {m: [] for m in metrics}
            for s in range(0, self.n_clips, chunk):
                pred = np.asarray(rec[s:s + chunk])
                if pred.shape[1] != n_gt:
                    pred = align_to_ground_truth(pred, n_gt, rule)
                for m, v in frame_scores(pred, np.asarray(self.gt[s:s + chunk]), metrics).items():
                    parts[m].append(np.nanmean(v, axis=1))
            for m in metrics:
                self.scores[f"{name}_{m}"] = np.concatenate(parts[m])
        return self


def _describe(a) -> str:
    if isinstance(a, np.ndarray):
        return f"{a.dtype} {a.shape}"
    return type(a).__name__


def _check_count(name: str, found: int, n: int) -> None:
    if found != n:
        raise ValueError(f"BrowserData: {name} has {found} clips but gt has {n}; every array must hold the same "
                         "test clips, in the same order")


def _load_npy(path: Path) -> np.ndarray | None:
    return np.load(path, mmap_mode="r", allow_pickle=False) if path.is_file() else None


def _per_clip_scores(path: Path, n: int, prefix: str) -> dict[str, np.ndarray]:
    """``{prefix + name: float (n,)}`` from the ``"per_clip"`` entry of a metrics JSON file (none: ``{}``)."""
    if not path.is_file():
        return {}
    per_clip = json.loads(path.read_text()).get("per_clip") or {}
    out = {}
    for name, values in per_clip.items():
        s = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
        if s.shape != (n,):
            raise ValueError(f"{path}: per_clip[{name!r}] has shape {s.shape}, expected one number per test clip "
                             f"({n},)")
        out[prefix + name] = s
    return out


# ============================================================================================= the browser
@dataclass(frozen=True)
class ClipFilter:
    """Which clips are shown: ``low <= scores[score] <= high`` (when ``score`` is set; NaN never passes) and
    ``text`` (case-insensitive) in the keyframe or ground-truth caption (when ``text`` is not empty)."""

    score: str | None = None
    low: float = -math.inf
    high: float = math.inf
    text: str = ""

    def describe(self) -> str:
        parts = []
        if self.score is not None:
            parts.append(f"{self.score} in [{self.low:.4g}, {self.high:.4g}]")
        if self.text:
            parts.append(f"caption contains {self.text!r}")
        return " and ".join(parts) or "no filter"


class KeyframeBrowser:
    """Browse the test clips of :class:`BrowserData`; see the module docstring.

    State: ``sort`` (a score name or ``"clip"``), ``descending``, ``filter`` (:class:`ClipFilter`), ``current``
    (the selected clip index, ``None`` when the filter hides every clip) and ``message`` (the last note for the
    user, e.g. why a step did nothing).  Prev/next **stop** at the ends of the order (no wrap-around).

    Args:
        data: the clips.
        display_px: frames are enlarged by the integer factor that brings them closest to this many pixels
            (nearest neighbour, so 64-px frames stay sharp at 128).
        cache_size: rendered clips kept (each a few hundred kB of GIFs).
    """

    def __init__(self, data: BrowserData, *, display_px: int = 128, cache_size: int = 64):
        self.data = data
        self.display_px, self.cache_size = int(display_px), int(cache_size)
        self.sort, self.descending = CLIP_ORDER, False
        self.filter = ClipFilter()
        self.current: int | None = 0
        self.message = ""
        self._cache: OrderedDict[int, dict] = OrderedDict()
        self._widget = None
        self._syncing = False

    # ------------------------------------------------------------------------------------------ the order
    @property
    def sort_names(self) -> list[str]:
        """What the clips can be sorted by: ``"clip"`` (index), then the score names."""
        return [CLIP_ORDER, *self.data.scores]

    def order(self) -> np.ndarray:
        """int64 (M,): the clips shown, in the current sort (stable; NaN scores last either way), after the filter."""
        n = self.data.n_clips
        if self.sort == CLIP_ORDER:
            idx = np.arange(n)[::-1] if self.descending else np.arange(n)
        else:
            s = self.data.scores[self.sort]
            idx = np.argsort(-s if self.descending else s, kind="stable")
        return idx[self._keep()[idx]].astype(np.int64)

    def _keep(self) -> np.ndarray:
        """bool (N,): the clips that pass the filter."""
        f, d = self.filter, self.data
        keep = np.ones(d.n_clips, bool)
        if f.score is not None:
            s = d.scores[f.score]
            with np.errstate(invalid="ignore"):
                keep &= (s >= f.low) & (s <= f.high)
        if f.text:
            needle = f.text.casefold()
            texts = [c for c in (d.captions, d.gt_captions) if c is not None]
            keep &= np.array([any(needle in (c[i] or "").casefold() for c in texts) for i in range(d.n_clips)])
        return keep

    def set_sort(self, name: str, descending: bool = False) -> None:
        """Sort by score ``name`` (or ``"clip"``: by index); the selection stays on the same clip."""
        if name not in self.sort_names:
            raise ValueError(f"sort: unknown {name!r}; choose one of {self.sort_names}")
        self.sort, self.descending, self.message = name, bool(descending), ""
        self._sync()

    def set_filter(self, score: str | None = None, low: float = -math.inf, high: float = math.inf,
                   text: str = "") -> None:
        """Show only clips with ``low <= scores[score] <= high`` (if ``score``) whose captions contain ``text``.

        ``set_filter()`` clears the filter.  When the selected clip is filtered out, the selection moves to the
        first clip of the new order; when nothing passes, ``current`` becomes ``None`` and ``message`` says so.
        """
        if score is not None and score not in self.data.scores:
            raise ValueError(f"filter: unknown score {score!r}; known: {list(self.data.scores)}")
        if text and self.data.captions is None and self.data.gt_captions is None:
            raise ValueError("filter: a text filter needs captions, and this data has neither keyframe nor "
                             "ground-truth captions")
        if low > high:
            raise ValueError(f"filter: low ({low}) is above high ({high})")
        self.filter = ClipFilter(score, float(low), float(high), str(text).strip())
        order, self.message = self.order(), ""
        if not len(order):
            self.current = None
            self.message = f"No clip matches the filter ({self.filter.describe()}); widen or clear it."
        elif self.current not in order:
            self.current = int(order[0])
            if self.filter != ClipFilter():
                self.message = f"The filter hides the clip shown before; now showing the first of {len(order)}."
        self._sync()

    # ------------------------------------------------------------------------------------------ moving
    def select(self, clip: int) -> bool:
        """Show clip ``clip`` (an index into the N clips); False (and a message) if the filter hides it."""
        clip = int(clip)
        if not 0 <= clip < self.data.n_clips:
            raise ValueError(f"select: clip {clip} is out of range; there are {self.data.n_clips} clips (0 .. "
                             f"{self.data.n_clips - 1})")
        if not self._keep()[clip]:
            self.message = f"Clip {clip} is hidden by the filter ({self.filter.describe()}); clear it to see it."
            self._sync()
            return False
        self.current, self.message = clip, ""
        self._sync()
        return True

    def select_rank(self, rank: int) -> bool:
        """Show the clip at position ``rank`` (0-based) of :meth:`order`."""
        order = self.order()
        if not 0 <= rank < len(order):
            self.message = f"Rank {rank} is out of range: {len(order)} clips are shown."
            self._sync()
            return False
        return self.select(int(order[rank]))

    def rank(self) -> int | None:
        """Position of the selected clip in :meth:`order` (None when nothing is selected)."""
        hits = np.flatnonzero(self.order() == self.current) if self.current is not None else []
        return int(hits[0]) if len(hits) else None

    def step(self, delta: int) -> bool:
        """Move ``delta`` places along :meth:`order` (+1: next, -1: prev); stops at the ends (returns False)."""
        order, rank = self.order(), self.rank()
        if not len(order):
            return self._note(f"No clip to step to: the filter ({self.filter.describe()}) hides them all.")
        if rank is None:
            return self.select(int(order[0]))
        target = rank + int(delta)
        if not 0 <= target < len(order):
            end = "last" if delta > 0 else "first"
            return self._note(f"Already at the {end} clip of the order (prev/next stop at the ends).")
        return self.select(int(order[target]))

    def jump(self, which: str) -> bool:
        """``"best"`` / ``"worst"``: the clip with the highest / lowest value of the sort score among the clips
        shown (NaN scores skipped); with the sort by clip index, the first / last clip of the order."""
        if which not in ("best", "worst"):
            raise ValueError(f"jump: expected 'best' or 'worst', got {which!r}")
        order = self.order()
        if self.sort != CLIP_ORDER:
            order = order[np.isfinite(self.data.scores[self.sort][order])]
        if not len(order):
            return self._note(f"No clip to jump to: none shown has a {self.sort} score.")
        top_is_best = self.descending or self.sort == CLIP_ORDER
        first = (which == "best") == top_is_best
        return self.select(int(order[0] if first else order[-1]))

    def _note(self, message: str) -> bool:
        self.message = message
        self._sync()
        return False

    # ------------------------------------------------------------------------------------------ what is shown
    def current_panels(self) -> dict:
        """What the output area shows for the selected clip.

        Returns ``{"clip": int | None, "rank": int | None, "shown": M, "images": {panel: bytes}, "formats":
        {panel: "gif" | "png"}, "caption": str | None, "gt_caption": str | None, "scores": {name: float},
        "message": str}``; panels are ``gt``, ``blurry``, ``keyframe``, ``video``, each only when its data
        exists.  With every clip filtered out, ``clip`` is None and ``images`` empty (``message`` says why).
        """
        d, i = self.data, self.current
        out = {"clip": i, "rank": self.rank(), "shown": len(self.order()), "images": {}, "formats": {},
               "caption": None, "gt_caption": None, "scores": {}, "message": self.message}
        if i is None:
            return out
        out["images"] = self._render(i)
        out["formats"] = {k: ("png" if k == "keyframe" else "gif") for k in out["images"]}
        out["caption"] = d.captions[i] if d.captions is not None else None
        out["gt_caption"] = d.gt_captions[i] if d.gt_captions is not None else None
        out["scores"] = {name: float(s[i]) for name, s in d.scores.items()}
        return out

    def _scale(self, frame_shape) -> int:
        return max(1, int(round(self.display_px / max(frame_shape[:2]))))

    def _render(self, i: int) -> dict[str, bytes]:
        """{panel: image bytes} of clip ``i``; cached (least recently used clips are dropped)."""
        if i in self._cache:
            self._cache.move_to_end(i)
            return self._cache[i]
        d, images = self.data, {}
        for name, video in (("gt", d.gt), ("blurry", d.blurry), ("video", d.videos)):
            if video is not None:
                v = np.asarray(video[i])
                images[name] = gif_bytes(v, fps=len(v) / CLIP_SECONDS, scale=self._scale(v.shape[1:]))
        if d.keyframes is not None:
            k = np.asarray(d.keyframes[i])
            images["keyframe"] = png_bytes(k, scale=self._scale(k.shape))
        images = {k: images[k] for k in PANEL_TITLES if k in images}       # display order
        self._cache[i] = images
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return images

    def score_table_html(self) -> str:
        """The selected clip's scores as an HTML table: value and rank among all N clips (1 = highest)."""
        i, d = self.current, self.data
        if i is None or not d.scores:
            return ""
        rows = []
        for name, s in d.scores.items():
            if np.isfinite(s[i]):
                rank = int((s > s[i]).sum()) + 1
                rows.append(f"<tr><td>{html.escape(name)}</td><td>{s[i]:.4g}</td><td>{rank} / "
                            f"{int(np.isfinite(s).sum())}</td></tr>")
            else:
                rows.append(f"<tr><td>{html.escape(name)}</td><td>n/a</td><td></td></tr>")
        return ("<table><tr><th>score</th><th>this clip</th><th>rank (1 = highest)</th></tr>"
                + "".join(rows) + "</table>")

    def status(self) -> str:
        """One line: which clip, its place in the order and how many clips the filter shows."""
        p = self.current_panels()
        if p["clip"] is None:
            return f"no clip shown (0 of {self.data.n_clips})"
        by = "clip index" if self.sort == CLIP_ORDER else self.sort
        return (f"clip {p['clip']} · {p['rank'] + 1} of {p['shown']} shown ({self.data.n_clips} clips), sorted by "
                f"{by} {'descending' if self.descending else 'ascending'}")

    # ============================================================================================ widgets
    @property
    def widget(self):
        """The top-level ipywidgets container (built on first use)."""
        if self._widget is None:
            self._build()
            self._sync()
        return self._widget

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    def _build(self) -> None:
        """Create the widgets (attributes ``sort_dropdown``, ``descending_toggle``, ``best_button``,
        ``worst_button``, ``range_slider``, ``text_filter`` (None without captions), ``prev_button``,
        ``rank_slider``, ``next_button``, ``clip_box``, ``message_label``, ``images`` {panel: Image},
        ``caption_label``, ``gt_caption_label``, ``score_table``) and wire each to a plain method."""
        import ipywidgets as w

        d = self.data
        self.sort_dropdown = w.Dropdown(options=[("clip index", CLIP_ORDER)] + [(s, s) for s in d.scores],
                                        description="sort by")
        self.descending_toggle = w.ToggleButton(description="descending")
        self.best_button = w.Button(description="best", tooltip="highest value of the sort score")
        self.worst_button = w.Button(description="worst", tooltip="lowest value of the sort score")
        self.range_slider = w.FloatRangeSlider(description="score range", min=0.0, max=1.0, value=(0.0, 1.0),
                                               step=0.005, readout_format=".3g", continuous_update=False,
                                               layout=w.Layout(width="420px"))
        has_text = d.captions is not None or d.gt_captions is not None
        self.text_filter = w.Text(description="caption has", placeholder="words in a caption",
                                  continuous_update=False) if has_text else None
        self.prev_button, self.next_button = w.Button(description="◀ prev"), w.Button(description="next ▶")
        self.rank_slider = w.IntSlider(description="rank", min=0, max=max(d.n_clips - 1, 0),
                                       continuous_update=False, layout=w.Layout(width="420px"))
        self.clip_box = w.BoundedIntText(description="clip", min=0, max=d.n_clips - 1,
                                         layout=w.Layout(width="160px"))
        self.message_label = w.Label()
        self.images, boxes = {}, []
        for name in self._render(0):               # the panels this data has (the same for every clip)
            self.images[name] = w.Image(format="png" if name == "keyframe" else "gif")
            boxes.append(w.VBox([w.Label(self._panel_title(name)), self.images[name]]))
        self.caption_label, self.gt_caption_label = w.Label(), w.Label()
        self.score_table = w.HTML()

        self.sort_dropdown.observe(self._on_sort, "value")
        self.descending_toggle.observe(self._on_sort, "value")
        self.best_button.on_click(lambda _: self.jump("best"))
        self.worst_button.on_click(lambda _: self.jump("worst"))
        self.range_slider.observe(self._on_filter, "value")
        if self.text_filter is not None:
            self.text_filter.observe(self._on_filter, "value")
        self.prev_button.on_click(lambda _: self.step(-1))
        self.next_button.on_click(lambda _: self.step(+1))
        self.rank_slider.observe(self._guarded(lambda c: self.select_rank(c["new"])), "value")
        self.clip_box.observe(self._guarded(lambda c: self.select(c["new"])), "value")

        filters = [self.range_slider] + ([self.text_filter] if self.text_filter is not None else [])
        rows = [w.HBox([self.sort_dropdown, self.descending_toggle, self.best_button, self.worst_button]),
                w.HBox(filters),
                w.HBox([self.prev_button, self.rank_slider, self.next_button, self.clip_box]),
                self.message_label, w.HBox(boxes)]
        if d.captions is not None:
            rows.append(self.caption_label)
        if d.gt_captions is not None:
            rows.append(self.gt_caption_label)
        rows.append(self.score_table)
        if d.title:
            rows.insert(0, w.HTML(f"<b>{html.escape(d.title)}</b>"))
        self._widget = w.VBox(rows)

    def _panel_title(self, name: str) -> str:
        v = {"gt": self.data.gt, "blurry": self.data.blurry, "video": self.data.videos}.get(name)
        fps = f" ({v.shape[1] / CLIP_SECONDS:g} FPS)" if v is not None else ""
        return PANEL_TITLES[name] + fps

    def _guarded(self, method):
        """A widget callback that ignores the changes :meth:`_sync` itself makes."""
        def callback(change):
            if not self._syncing:
                method(change)
        return callback

    def _on_sort(self, change) -> None:
        if self._syncing:
            return
        name = self.sort_dropdown.value
        if name != self.sort and self.filter.score is not None:
            # the range slider shows the sort score's range: a range on the old score would no longer be visible
            self.set_filter(text=self.filter.text)
        self.set_sort(name, self.descending_toggle.value)

    def _on_filter(self, change) -> None:
        if self._syncing:
            return
        text = self.text_filter.value if self.text_filter is not None else ""
        lo, hi = self.range_slider.value
        full = self._score_range()
        if self.sort == CLIP_ORDER or full is None or (lo <= full[0] + 1e-12 and hi >= full[1] - 1e-12):
            self.set_filter(text=text)                        # the whole range: no score filter
        else:
            self.set_filter(self.sort, lo, hi, text)

    def _score_range(self) -> tuple[float, float] | None:
        """(min, max) of the finite values of the sort score (None for the sort by index or no finite value)."""
        if self.sort == CLIP_ORDER:
            return None
        s = self.data.scores[self.sort]
        s = s[np.isfinite(s)]
        return (float(s.min()), float(s.max())) if len(s) else None

    def _sync(self) -> None:
        """Make the widgets show the state (no-op before the widget is built)."""
        if self._widget is None:
            return
        self._syncing = True
        try:
            panels = self.current_panels()
            self.sort_dropdown.value, self.descending_toggle.value = self.sort, self.descending
            self._sync_range_slider()
            if self.text_filter is not None:
                self.text_filter.value = self.filter.text
            shown = panels["shown"]
            self.rank_slider.max = max(shown - 1, 0)
            self.rank_slider.value = panels["rank"] or 0
            for widget in (self.rank_slider, self.prev_button, self.next_button, self.best_button,
                           self.worst_button, self.clip_box):
                widget.disabled = shown == 0
            if panels["clip"] is not None:
                self.clip_box.value = panels["clip"]
            self.message_label.value = self.message or self.status()
            for name, image in self.images.items():
                image.value = panels["images"].get(name, b"")
            self.caption_label.value = f"keyframe caption: {panels['caption'] or '(none)'}"
            self.gt_caption_label.value = f"ground-truth caption: {panels['gt_caption'] or '(none)'}"
            self.score_table.value = self.score_table_html()
        finally:
            self._syncing = False

    def _sync_range_slider(self) -> None:
        full = self._score_range()
        slider = self.range_slider
        slider.disabled = full is None
        if full is None:
            return
        lo, hi = full
        if hi <= lo:                      # one value only: a slider needs a non-empty range
            hi = lo + 1e-6
        f = self.filter
        value = (max(f.low, lo), min(f.high, hi)) if f.score == self.sort else (lo, hi)
        # min, max and value change together and are cross-validated once, at the end (a new range may lie
        # wholly outside the old one)
        with slider.hold_trait_notifications():
            slider.min, slider.max = lo, hi
            slider.step = (hi - lo) / 200
            slider.value = value
