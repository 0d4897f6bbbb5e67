"""The cc2017 dataset layout (Wen et al. 2018) as released on Purdue PURR, as constants and path helpers.

Both the real download and cc2017-sim follow it exactly, so one reader serves both::

    video_fmri_dataset/
      stimuli/seg1.mp4 ... seg18.mp4, test1.mp4 ... test5.mp4          30 FPS, 8 min each
      subject{1,2,3}/fmri/{segK,testK}/cifti/{segK}_{r}_Atlas.dtseries.nii   CIFTI-2, 91282 grayordinates, TR 2 s

Training segments are shown twice (r in 1..2), test segments ten times (r in 1..10).  Training runs and
every ``test1`` run have 245 volumes, ``test2``..``test5`` runs 246; the official MATLAB preprocessing trims
both to the 240 volumes acquired while the movie played (drop the first 1 or 2 and the last 4).
"""
from __future__ import annotations

import re
from pathlib import Path

N_GRAYORDINATES = 91282          # HCP standard grayordinates (32k_fs_LR cortex + 2 mm subcortex)
N_CORTEX = 59412                 # the first 59412 grayordinates: left (29696) + right (29716) cortex
TR_SECONDS = 2.0
STIMULUS_FPS = 30
CLIP_SECONDS = 2                 # one clip per TR
RAW_FRAMES_PER_CLIP = STIMULUS_FPS * CLIP_SECONDS          # 60
CLIPS_PER_RUN = 240              # 8 min / 2 s
FRAMES_PER_CLIP = 6              # 3 FPS
# Which 6 of the 60 raw frames a clip keeps: the centre of each 1/3-s bin (frames 5, 15, ..., 55).  The
# official code does not say; centring keeps each sample representative of its bin and never lands on the
# first frame after a cut that falls on a bin boundary.
FRAME_OFFSETS = tuple(5 + 10 * j for j in range(FRAMES_PER_CLIP))
TRAIN_REPETITIONS = 2
TEST_REPETITIONS = 10
# volumes in a run -> (volumes dropped at the start, volumes dropped at the end)
TRIM_RULES = {245: (1, 4), 246: (2, 4)}
DATASET_DIR = "video_fmri_dataset"

_SEGMENT_RE = re.compile(r"^(seg|test)(\d+)$")


def expected_volumes(segment: str) -> int:
    """Number of volumes a raw run of ``segment`` has in cc2017: 246 for test2..test5, else 245."""
    kind, k = parse_segment(segment)
    return 246 if (kind == "test" and k >= 2) else 245


def parse_segment(segment: str) -> tuple[str, int]:
    """``'seg7'`` -> ``('seg', 7)``; ``'test2'`` -> ``('test', 2)``; anything else is a ValueError."""
    m = _SEGMENT_RE.match(segment)
    if not m:
        raise ValueError(f"not a cc2017 segment name: {segment!r} (expected 'segK' or 'testK')")
    return m.group(1), int(m.group(2))


def segment_sort_key(segment: str) -> tuple[int, int]:
    kind, k = parse_segment(segment)
    return (0 if kind == "seg" else 1, k)


def repetitions(segment: str) -> int:
    return TRAIN_REPETITIONS if parse_segment(segment)[0] == "seg" else TEST_REPETITIONS


def dataset_dir(data_root: str | Path) -> Path:
    return Path(data_root) / DATASET_DIR


def stimulus_path(data_root: str | Path, segment: str) -> Path:
    return dataset_dir(data_root) / "stimuli" / f"{segment}.mp4"


def subject_dir(data_root: str | Path, subject: int) -> Path:
    return dataset_dir(data_root) / f"subject{subject}"


def run_path(data_root: str | Path, subject: int, segment: str, repetition: int) -> Path:
    """Path of one CIFTI run; ``repetition`` counts from 1 as in the file names."""
    return subject_dir(data_root, subject) / "fmri" / segment / "cifti" / f"{segment}_{repetition}_Atlas.dtseries.nii"


def ground_truth_dir(data_root: str | Path) -> Path:
    """cc2017-sim only: the simulation's ground truth, beside (never inside) the dataset."""
    return Path(data_root) / "ground_truth"
