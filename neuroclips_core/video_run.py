"""Chapter 04's core: a subject's test videos (alpha + beta + gamma guidance) and their evaluation (Table 1).

    from neuroclips_core.video_run import reconstruct_videos, score_references

    full = reconstruct_videos(cfg, subject=3)                       # needs chapters 02 and 03 for the subject
    full.metrics["frame_50way"]["mean"], full.videos.shape           # (N_test, 16, H, W, 3) uint8
    bare = reconstruct_videos(cfg, subject=3, variant="no_keyframe")  # an ablation (chapter 06 runs them all)
    refs = score_references(cfg, subject=3)                          # the blurry video and the ground truth, scored

What it reads and writes (DESIGN.md §7)::

    runs/<profile>/subjNN/perception/blurry_test.npy        alpha: the PR's 6-frame blurry videos (3 FPS)
    runs/<profile>/subjNN/semantics/keyframes_test.npy      beta: the keyframes (chapter 03)
    runs/<profile>/subjNN/semantics/captions_test.json      gamma: their captions
    runs/<profile>/subjNN/semantics/fmri_captions_test.json the fmri_caption ablation's captions (made here)
    runs/<profile>/subjNN/inference/<variant>/
        videos_test.npy          uint8 (N_test, 16, H, W, 3) at 8 FPS
        metrics.json             the parameters, the scores below, per-clip scores (the browser sorts by them)
        gifs/clip_NNNN.gif       ground truth | blurry | keyframe | video, for the first ``n_gifs`` clips
    runs/<profile>/subjNN/inference/references.json          the same scores for the blurry video and the truth

**Variants** (:data:`VARIANTS`): ``full`` (alpha + beta + gamma), ``no_keyframe`` (no SparseCtrl, and the paper's
prompt "a smooth video" in place of the keyframe's caption), ``no_blurry`` (pure-noise start), ``fmri_caption``
(the prompt is decoded from the prior's fMRI tokens, never from a keyframe: the paper's GIT comparison,
:func:`~neuroclips_core.pipelines.captions.caption_tokens`).

**Scoring** (:func:`score_videos`; recipes in :mod:`neuroclips_core.metrics`).  The store keeps 6 ground-truth
frames per clip at 3 FPS; a 16-frame video at 8 FPS is scored on its frames 0, 3, 6, 9, 12, 15 (the ``anchors``
alignment of :func:`~neuroclips_core.metrics_semantic.aligned_frame_indices`: the blurry video's 6 frames sit
there, so those are the generated frames that track the stimulus' 6).  On those 6 frames: SSIM S1, S2, S2',
PSNR and pixel correlation; frame-level N-way with the frame classifier; video-level N-way with the video
classifier run on the 6-frame video, as the field's harness loads VideoMAE (``num_frames=6``).  CLIP-pcc is
given twice: on all 16 frames at 8 FPS (the paper's recipe, Table 1's column) and on the 6 aligned frames at
3 FPS, which is the number to set beside the ground truth's own (its 6 stored frames): adjacent frames 1/8 s
apart are more alike than frames 1/3 s apart, so only equal frame rates compare.

A run is reused when ``metrics.json`` records the same parameters (variant, generation config, seed, the PR's
and SR's run parameters, the keyframes' and captions' content, every model's weights).  When only the judges'
weights differ (a retrained classifier or CLIP), the stored videos are scored again, which takes half a minute
where generating them takes several; anything else generates again.  Arrays and JSON files are written through
temp files and renames, so an interrupted run leaves the previous files whole, and ``metrics.json`` is written
last.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from .artifacts import json_clean, module_fingerprint, profile_role, sha1_array, step_dir, store_with_frames
from .config import RunConfig
from .data.store import Store
from .metrics import FRAME_METRICS, frame_scores, summarize
from .metrics_semantic import (_unit, align_to_ground_truth, aligned_frame_indices, clip_pcc, clip_video_embeddings,
                               frame_class_probabilities, n_way_accuracy, video_class_probabilities)
from .perception_run import load_perception_result
from .pipelines.blurry import interpolate_frames, save_npy_atomic
from .pipelines.captions import CAPTIONS_FILE, FMRI_CAPTIONS_FILE, caption_tokens, write_captions
from .pipelines.keyframes import KEYFRAMES_FILE
from .pipelines.video import NeuroClipsVideoPipeline, VideoGenerationConfig, _resized
from .semantics_run import load_semantics_result, semantics_dir
from .train import write_json_atomic

VIDEOS_FILE = "videos_test.npy"
METRICS_FILE = "metrics.json"
REFERENCES_FILE = "references.json"
N_WAYS = (2, 50)
QUICK_INFERENCE_STEPS = 3          # quick mode (CI): the chain's length, enough to exercise every part
QUICK_TEST_CLIPS = 24              # quick mode: the first clips of the test set (the whole set: 240 on sim)
ALIGNMENT = "anchors"


class Variant(NamedTuple):
    """One row of the ablation table: which guidance a video gets."""

    use_blurry: bool          # alpha: start from the blurry video noised by Eq. 5 (else pure noise)
    use_keyframe: bool        # beta: the keyframe at frame 0 through SparseCtrl
    captions: str             # gamma: "keyframe" (the keyframe's caption), "fmri" (decoded from the fMRI tokens) or
                              # "generic" (GENERIC_PROMPT for every clip)
    what: str


#: the prompt of the paper's "w/o keyframe" row (§6): the caption is made from the keyframe, so it goes with it
GENERIC_PROMPT = "a smooth video"
VARIANTS = {
    "full": Variant(True, True, "keyframe", "alpha + beta + gamma: the full NeuroClips"),
    "no_keyframe": Variant(True, False, "generic", f"without the keyframe and its caption (no SparseCtrl, prompt "
                                                   f"'{GENERIC_PROMPT}')"),
    "no_blurry": Variant(False, True, "keyframe", "without the blurry video (the chain starts from pure noise)"),
    "fmri_caption": Variant(True, True, "fmri", "captions decoded from the fMRI tokens (the GIT comparison)"),
}


def check_variant(variant: str) -> Variant:
    if variant not in VARIANTS:
        raise ValueError(f"video variant: expected one of {', '.join(VARIANTS)}, found {variant!r}")
    return VARIANTS[variant]


def inference_dir(cfg: RunConfig, subject: int | None = None, variant: str = "full") -> Path:
    """``runs/<profile>/subjNN/inference/<variant>`` (DESIGN.md §7)."""
    check_variant(variant)
    return step_dir(cfg, subject, "inference") / variant


def generation_config(cfg: RunConfig) -> VideoGenerationConfig:
    """The run's :class:`VideoGenerationConfig`: the paper's (25 steps, 256 px) or the stand-ins' (64 px); quick
    mode shortens the chain to :data:`QUICK_INFERENCE_STEPS`."""
    config = VideoGenerationConfig.sim() if cfg.profile == "sim" else VideoGenerationConfig.paper()
    return config.replace(num_inference_steps=QUICK_INFERENCE_STEPS) if cfg.quick else config


def n_test_clips(cfg: RunConfig, n_test: int, n_clips: int | None = None) -> int:
    """How many test clips a run generates and scores: the first ``n_clips`` (None: all ``n_test``, or the first
    :data:`QUICK_TEST_CLIPS` in quick mode).  Raises ValueError for a count below 1."""
    if n_clips is None:
        return min(n_test, QUICK_TEST_CLIPS) if cfg.quick else n_test
    if int(n_clips) < 1:
        raise ValueError(f"n_clips: expected a positive number of test clips (at most {n_test}), got {n_clips}")
    return min(int(n_clips), n_test)


def clip_seeds(seed: int, n: int) -> list[int]:
    """One seed per test clip, a function of the run seed and the clip's index (never of batching): clip i of
    every variant starts from the same noise, so variants differ by their guidance only."""
    return [int(np.random.SeedSequence([seed, 0x51DE0, i]).generate_state(1)[0]) for i in range(n)]


def video_pipeline(cfg: RunConfig, device=None) -> NeuroClipsVideoPipeline:
    """The profile's t2v, SparseCtrl and VAE in :class:`NeuroClipsVideoPipeline` (the VAE of the t2v folder when
    it ships one, as RealisticVision does; else the ``vae`` role, as for the stand-ins)."""
    device = device or cfg.torch_device()
    t2v = profile_role(cfg, "t2v", device)
    vae = t2v.get("vae")
    if vae is None:
        vae = profile_role(cfg, "vae", device)
    pipe = NeuroClipsVideoPipeline.from_roles(t2v, sparsectrl=profile_role(cfg, "sparsectrl", device), vae=vae,
                                              config=generation_config(cfg))
    # half precision on a GPU (AnimateDiff's own inference dtype); float32 on a CPU, where fp16 is slower
    return pipe.to(dtype=torch.float16) if torch.device(device).type == "cuda" else pipe


def generate_across_processes(generate, n: int, parts_dir: Path, state=None) -> np.ndarray | None:
    """``generate(indices) -> uint8 videos`` over clips ``0 .. n-1``, split across accelerate's processes.

    One process (CPU, one GPU) generates everything.  Under ``accelerate launch`` with several processes
    (several GPUs), each takes a contiguous share (``PartialState.split_between_processes``), writes it to
    ``parts_dir/rank<k>.npy``, and the main process assembles them in clip order; the others get None.  As in
    training, the clip-to-process split never changes a clip's video: its noise is a function of its own seed.
    ``state``: the ``PartialState`` (default accelerate's).
    """
    if state is None:
        from accelerate import PartialState

        state = PartialState()
    if state.num_processes == 1:
        return generate(np.arange(n))
    with state.split_between_processes(list(range(n))) as mine:
        part = generate(np.asarray(mine, dtype=np.int64))
    save_npy_atomic(parts_dir / f"rank{state.process_index}.npy", part)
    state.wait_for_everyone()
    if not state.is_main_process:
        return None
    parts = [np.load(parts_dir / f"rank{k}.npy") for k in range(state.num_processes)]
    for k in range(state.num_processes):
        (parts_dir / f"rank{k}.npy").unlink()
    videos = np.concatenate(parts)
    if len(videos) != n:
        raise RuntimeError(f"generate_across_processes: the processes made {len(videos)} videos for {n} clips")
    return videos


# ================================================================================================ scoring
def _sized_like(videos: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 videos (N, F, h, w, 3) resized to ``size`` = (H, W) the way the pipeline resizes its inputs
    (:func:`~neuroclips_core.pipelines.video._resized`: bilinear, antialiased); unchanged if the size is equal."""
    if tuple(videos.shape[2:4]) == tuple(size):
        return videos
    x = torch.from_numpy(np.ascontiguousarray(videos)).flatten(0, 1).permute(0, 3, 1, 2).float() / 255.0
    x = (_resized(x, *size) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1)
    return x.unflatten(0, videos.shape[:2]).numpy()


def _n_way(pred_probs: np.ndarray, gt_probs: np.ndarray, seed: int) -> tuple[dict, dict]:
    """{"2": summary, "50": summary} and {n: per-clip success rates (N,)} of one N-way family."""
    summaries, per_clip = {}, {}
    for n in N_WAYS:
        r = n_way_accuracy(pred_probs, gt_probs, n, seed=seed)
        summaries[n] = r.as_dict()
        per = r.per_item
        per_clip[n] = per.mean(axis=tuple(range(1, per.ndim))) if per.ndim > 1 else per
    return summaries, per_clip


def score_videos(videos: np.ndarray, truth: np.ndarray, *, frame_classifier, video_classifier, clip,
                 seed: int = 0, truth_embeddings: np.ndarray | None = None) -> dict:
    """Table 1's scores of videos uint8 (N, F, h, w, 3) against the ground truth uint8 (N, 6, H, W, 3).

    Returns a JSON-ready dict: ``ssim_s1``, ``ssim_s2``, ``ssim_s2p``, ``psnr``, ``pixcorr`` ({"mean", "std"} over
    clips), ``frame_2way``, ``frame_50way``, ``video_2way``, ``video_50way`` (the N-way summaries: mean, se,
    chance, ...), ``clip_pcc_adjacent`` / ``clip_pcc_all_pairs`` (all F frames), ``clip_pcc_aligned`` (the 6
    aligned frames, adjacent), ``n_clips``, ``alignment``, and ``per_clip`` ({name: N numbers}: SSIM S2, PSNR, the
    50-way successes, CLIP-pcc) for the browser.  Frames are resized to the ground truth's size first.
    ``truth_embeddings``: the truth's CLIP embeddings (N, 6, D) when already computed.
    """
    videos, truth = np.asarray(videos), np.asarray(truth)
    if videos.ndim != 5 or truth.ndim != 5 or len(videos) != len(truth):
        raise ValueError(f"score_videos: expected videos (N, F, H, W, 3) and truth (N, 6, H, W, 3) of the same N, "
                         f"found {videos.shape} and {truth.shape}")
    n_gt = truth.shape[1]
    aligned = _sized_like(align_to_ground_truth(videos, n_gt, ALIGNMENT), truth.shape[2:4])
    pixel = frame_scores(aligned, truth, FRAME_METRICS)
    scores = {m: {"mean": v["mean"], "std": v["std"]} for m, v in summarize(pixel).items()}
    per_clip = {"ssim_s2": np.nanmean(pixel["ssim_s2"], axis=1), "psnr": np.nanmean(pixel["psnr"], axis=1)}

    frame_pred, frame_gt = (frame_class_probabilities(frame_classifier, x) for x in (aligned, truth))
    video_pred, video_gt = (video_class_probabilities(video_classifier, x) for x in (aligned, truth))
    for level, (pred, gt) in (("frame", (frame_pred, frame_gt)), ("video", (video_pred, video_gt))):
        summaries, per = _n_way(pred, gt, seed)
        for n in N_WAYS:
            scores[f"{level}_{n}way"] = summaries[n]
        per_clip[f"{level}_50way"] = per[50]

    emb_all = clip_video_embeddings(clip, videos)
    emb_aligned = emb_all[:, aligned_frame_indices(videos.shape[1], n_gt, ALIGNMENT)]
    for key, e, pairs in (("clip_pcc_adjacent", emb_all, "adjacent"), ("clip_pcc_all_pairs", emb_all, "all"),
                          ("clip_pcc_aligned", emb_aligned, "adjacent")):
        v = clip_pcc(e, pairs)
        scores[key] = {"mean": float(v.mean()), "std": float(v.std())}
    per_clip["clip_pcc"] = clip_pcc(emb_all, "adjacent")
    if truth_embeddings is None:
        truth_embeddings = clip_video_embeddings(clip, truth)
    # how alike the video's frames are to the truth's, frame for frame (CLIP space): a semantic SSIM
    cos = (_unit(emb_aligned) * _unit(truth_embeddings)).sum(-1)
    scores["clip_similarity_to_truth"] = {"mean": float(cos.mean()), "std": float(cos.mean(1).std())}
    scores.update(n_clips=int(len(videos)), alignment=ALIGNMENT,
                  per_clip={k: [float(x) for x in np.asarray(v)] for k, v in per_clip.items()})
    return json_clean(scores)


class _Judges(NamedTuple):
    frame_classifier: object
    video_classifier: object
    clip: object

    @classmethod
    def of(cls, cfg: RunConfig, device) -> "_Judges":
        return cls(*(profile_role(cfg, role, device) for role in ("frame_classifier", "video_classifier", "clip")))

    def fingerprints(self) -> dict:
        return {"frame_classifier": module_fingerprint(self.frame_classifier.model),
                "video_classifier": module_fingerprint(self.video_classifier.model),
                "clip": module_fingerprint(self.clip.model)}


def score_references(cfg: RunConfig, subject: int | None = None, *, store: Store | None = None,
                     n_clips: int | None = None, progress: bool = True) -> dict:
    """The scores of what the videos are read against, cached in ``inference/references.json``:

    - ``blurry``: the PR's blurry video, 6 frames interpolated to 16 as the pipeline takes it, scored like a video
      (:func:`score_videos`): what alpha guidance alone gives;
    - ``ground_truth``: the truth's own CLIP-pcc on its 6 frames (``clip_pcc_aligned``'s counterpart: how smooth
      a video of this clip is at 3 FPS).

    On the first ``n_clips`` test clips (:func:`n_test_clips`), the ones :func:`reconstruct_videos` makes.
    """
    subject = int(subject or cfg.subject)
    device = cfg.torch_device()
    store = store_with_frames(cfg, subject, store, "the references are scored against the test clips' frames",
                              progress)
    perception = load_perception_result(cfg, subject)
    judges = _Judges.of(cfg, device)
    n = n_test_clips(cfg, store.n_test, n_clips)
    params = {"subject": subject, "perception": perception.summary["params"], "seed": cfg.seed,
              "weights": judges.fingerprints(), "alignment": ALIGNMENT, "n_clips": n}
    path = step_dir(cfg, subject, "inference") / REFERENCES_FILE
    if path.is_file():
        done = json.loads(path.read_text())
        if done.get("params") == json.loads(json.dumps(params)):
            return done
    truth = np.array(store.frames_test[:n])
    truth_emb = clip_video_embeddings(judges.clip, truth)
    blurry = interpolate_frames(np.asarray(perception.blurry()[:n]), 16)
    refs = {"params": params,
            "blurry": score_videos(blurry, truth, **judges._asdict(), seed=cfg.seed, truth_embeddings=truth_emb),
            "ground_truth": {"clip_pcc_aligned": {"mean": float(clip_pcc(truth_emb).mean()),
                                                  "std": float(clip_pcc(truth_emb).std())}}}
    write_json_atomic(path, json_clean(refs))
    return refs


# ================================================================================================ the run
@dataclass
class VideoResult:
    """What :func:`reconstruct_videos` made: ``folder``, ``summary`` (metrics.json) and whether it was ``reused``."""

    folder: Path
    summary: dict
    reused: bool

    @property
    def metrics(self) -> dict:
        return self.summary["scores"]

    @property
    def n_clips(self) -> int:
        """How many test clips (the first ones) were generated and scored (runs before ``n_clips``: all)."""
        return int(self.summary.get("n_clips", self.summary["n_test"]))

    @property
    def videos(self) -> np.ndarray:
        """uint8 (n_clips, 16, H, W, 3), memory-mapped."""
        return np.load(self.folder / VIDEOS_FILE, mmap_mode="r")

    def gifs(self) -> list[Path]:
        return sorted((self.folder / "gifs").glob("clip_*.gif"))


def prompts_for(cfg: RunConfig, subject: int, variant: Variant, captioner_loader) -> list[str]:
    """The captions a variant prompts with: chapter 03's keyframe captions, :data:`GENERIC_PROMPT` for every clip
    (``generic``), or (``fmri``) captions decoded from the prior's tokens, made once and kept in
    ``semantics/fmri_captions_test.json``."""
    folder = semantics_dir(cfg, subject)
    if variant.captions == "generic":
        return [GENERIC_PROMPT] * load_semantics_result(cfg, subject).retrieval["n_test"]
    if variant.captions == "keyframe":
        path = folder / CAPTIONS_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no keyframe captions for subject {subject}; run chapter 03 "
                                    f"(book/03_semantics.ipynb, or keyframes_run.reconstruct_semantics) first")
        return json.loads(path.read_text())
    semantics = load_semantics_result(cfg, subject)
    tokens = np.asarray(semantics.prior_tokens(), np.float32)
    path = folder / FMRI_CAPTIONS_FILE
    params_path = folder / f"{path.stem}_params.json"                  # what write_captions writes beside it
    params = json.loads(json.dumps({"tokens": sha1_array(tokens), "semantics": semantics.summary["params"]}))
    if path.is_file() and params_path.is_file():
        saved = json.loads(params_path.read_text())
        if {k: v for k, v in saved.items() if k != "n"} == params:
            return json.loads(path.read_text())
    captions = caption_tokens(captioner_loader(), tokens)
    write_captions(folder, captions, params, name=FMRI_CAPTIONS_FILE)
    return captions


def reconstruct_videos(cfg: RunConfig, subject: int | None = None, variant: str = "full", *,
                       config: VideoGenerationConfig | None = None, store: Store | None = None, batch_size: int = 16,
                       n_clips: int | None = None, n_gifs: int = 6, retrain: bool = False,
                       progress: bool = True) -> VideoResult:
    """Generate (or reuse) one subject's test videos for ``variant`` and score them (module docstring).

    Args:
        cfg: the run config (profile, seed, paths, device, quick).
        subject: default ``cfg.subject``.
        variant: a key of :data:`VARIANTS`.
        config: the generation settings (default :func:`generation_config`).
        batch_size: clips denoised together (memory; never the output).
        n_clips: generate the first ``n_clips`` test clips only (default :func:`n_test_clips`: all of them, the
            first :data:`QUICK_TEST_CLIPS` in quick mode); the videos and scores cover those clips.
        n_gifs: side-by-side GIFs written for the first clips.
        retrain: generate again even when a finished run with the same parameters is there.

    Raises:
        FileNotFoundError: chapter 02 or 03 has not run for this subject (the message names what to run).
        ValueError: an unknown variant, or the PR's, SR's and store's test sets disagree.
    """
    spec = check_variant(variant)
    subject = int(subject or cfg.subject)
    config = config or generation_config(cfg)
    out = inference_dir(cfg, subject, variant)
    device = cfg.torch_device()
    perception, semantics = load_perception_result(cfg, subject), load_semantics_result(cfg, subject)
    keyframes_path = semantics_dir(cfg, subject) / KEYFRAMES_FILE
    if not keyframes_path.is_file():
        raise FileNotFoundError(f"{keyframes_path}: no keyframes for subject {subject}; run chapter 03 "
                                f"(book/03_semantics.ipynb) first")
    store = store_with_frames(cfg, subject, store, "videos are scored against the test clips' frames", progress)
    captions = prompts_for(cfg, subject, spec, lambda: profile_role(cfg, "captioner", device))
    keyframes, blurry6 = np.load(keyframes_path, mmap_mode="r"), perception.blurry()
    if not (len(keyframes) == len(blurry6) == len(captions) == store.n_test):
        raise ValueError(f"subject {subject}: keyframes ({len(keyframes)}), blurry videos ({len(blurry6)}), captions "
                         f"({len(captions)}) and the store's test set ({store.n_test}) must be the same clips; rerun "
                         f"chapters 02 and 03 on this store")
    n = n_test_clips(cfg, store.n_test, n_clips)
    captions = captions[:n]
    pipe = video_pipeline(cfg, device)
    judges = _Judges.of(cfg, device)
    params = json.loads(json.dumps({
        "variant": variant, "subject": subject, "seed": cfg.seed, "config": dataclasses.asdict(config),
        "perception": perception.summary["params"], "semantics": semantics.summary["params"],
        "keyframes": sha1_array(np.asarray(keyframes)), "captions": captions,
        "weights": {"unet": module_fingerprint(pipe.unet), "text_encoder": module_fingerprint(pipe.text_encoder),
                    "sparsectrl": module_fingerprint(pipe.controlnet), "vae": module_fingerprint(pipe.vae),
                    **judges.fingerprints()}}))
    summary_path = out / METRICS_FILE
    about = dict(subject=subject, variant=variant, what=spec.what, n_test=store.n_test)
    if not retrain and summary_path.is_file() and (out / VIDEOS_FILE).is_file():
        summary = json.loads(summary_path.read_text())
        if summary.get("params") == params:
            return VideoResult(out, summary, True)
        if _same_generation(summary.get("params"), params):
            # only a judge changed (a retrained classifier or CLIP): the videos stand, only their scores are new
            # (the same captions, one per clip, mean the same n clips)
            timings = {k: v for k, v in summary.get("timings", {}).items()
                       if k in ("generation_s", "seconds_per_clip")}
            return _score_and_write(out, np.load(out / VIDEOS_FILE), np.array(store.frames_test[:n]), judges,
                                    params, timings | {"rescored": True}, about, cfg.seed)

    out.mkdir(parents=True, exist_ok=True)
    timings = {}
    seeds = clip_seeds(cfg.seed, n)

    def generate(idx: np.ndarray) -> np.ndarray:
        return pipe(interpolate_frames(np.asarray(blurry6[idx]), config.num_frames), np.asarray(keyframes[idx]),
                    [captions[i] for i in idx], seeds=[seeds[i] for i in idx], use_blurry=spec.use_blurry,
                    use_keyframe=spec.use_keyframe, config=config, batch_size=batch_size, progress=progress)

    t0 = time.monotonic()
    videos = generate_across_processes(generate, n, out / ".parts")
    if videos is None:                   # another process of a multi-GPU launch: the main one scores and writes
        return VideoResult(out, {}, False)
    timings["generation_s"] = round(time.monotonic() - t0, 1)
    timings["seconds_per_clip"] = round(timings["generation_s"] / n, 3)
    save_npy_atomic(out / VIDEOS_FILE, videos)
    truth = np.array(store.frames_test[:n])
    write_gifs(out / "gifs", truth, interpolate_frames(np.asarray(blurry6[:n_gifs]), config.num_frames),
               np.asarray(keyframes[:n_gifs]), videos[:n_gifs])
    return _score_and_write(out, videos, truth, judges, params, timings, about, cfg.seed)


def _same_generation(saved: dict | None, params: dict) -> bool:
    """Whether two runs' parameters differ at most in the judges' weights (what scores the videos, not what makes
    them)."""
    def without_judges(p: dict) -> dict:
        return {**p, "weights": {k: v for k, v in p.get("weights", {}).items() if k not in _Judges._fields}}

    return isinstance(saved, dict) and without_judges(saved) == without_judges(params)


def _score_and_write(out: Path, videos: np.ndarray, truth: np.ndarray, judges: _Judges, params: dict,
                     timings: dict, about: dict, seed: int) -> VideoResult:
    """Score ``videos`` (N, F, H, W, 3) against ``truth`` (N, 6, H, W, 3) and write ``metrics.json`` (last: its
    presence means the run finished)."""
    t0 = time.monotonic()
    scores = score_videos(videos, truth, **judges._asdict(), seed=seed)
    timings = {**timings, "score_s": round(time.monotonic() - t0, 1)}
    summary = {**about, "params": params, "n_clips": len(videos),
               "scores": {k: v for k, v in scores.items() if k != "per_clip"}, "per_clip": scores["per_clip"],
               "timings": timings}
    write_json_atomic(out / METRICS_FILE, summary)
    return VideoResult(out, summary, False)


def write_gifs(folder: Path, truth: np.ndarray, blurry: np.ndarray, keyframes: np.ndarray, videos: np.ndarray,
               scale: int = 2) -> list[Path]:
    """``folder/clip_NNNN.gif`` for each of the first ``len(videos)`` clips: ground truth (3 FPS frames held to 8
    FPS) | blurry video | keyframe (held) | generated video, 16 frames at 8 FPS."""
    from .viz.frames import side_by_side_gif

    held = np.repeat(truth[:len(videos)], 3, axis=1)[:, :videos.shape[1]]       # 6 frames at 3 FPS -> ~8 FPS
    paths = []
    for i in range(len(videos)):
        size = videos.shape[2:4]
        rows = [_sized_like(held[i:i + 1], size)[0], _sized_like(blurry[i:i + 1], size)[0],
                _sized_like(keyframes[i:i + 1, None], size)[0], videos[i]]
        paths.append(side_by_side_gif(rows, folder / f"clip_{i:04d}.gif", fps=8, scale=scale,
                                      labels=["truth", "blurry", "keyframe", "video"]))
    return paths
