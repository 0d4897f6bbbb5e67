"""Training of the stand-in models (the ``sim`` profile's foundation models), one recipe per role.

:mod:`.loop` holds the seeded, logged, resumable loop every recipe runs in; :mod:`.classifiers` and
:mod:`.vae` the recipes.  The public entry points are in :mod:`neuroclips_core.zoo.standins`
(``train_standins``, ``load_standin``) and the command ``python -m neuroclips_core train-standins``.

A new role's recipe subclasses :class:`~.loop.Recipe` (``full_config``/``quick_config``, ``build``, ``loss``,
``export``, ``evaluate``) and is added to :data:`RECIPES`, in training order: a recipe may use the results of
the roles before it (the video classifier starts from the frame classifier, the VAE is judged by it).
"""
from __future__ import annotations

from .captioner import CaptionerRecipe
from .classifiers import FrameClassifierRecipe, VideoClassifierRecipe
from .clip import ClipRecipe
from .loop import TRAINING_LOG, Recipe, RunOptions, TrainConfig, TrainError, TrainResult, read_log, train_role
from .unclip import UnclipRecipe
from .vae import VaeRecipe
from .video import SparseCtrlRecipe, T2vRecipe

# training order: a recipe may start from, or be judged by, the roles listed before it
_ORDER: list[type[Recipe]] = [
    FrameClassifierRecipe,
    VideoClassifierRecipe,
    VaeRecipe,
    ClipRecipe,
    CaptionerRecipe,
    UnclipRecipe,
    T2vRecipe,
    SparseCtrlRecipe,
]
RECIPES: dict[str, type[Recipe]] = {r.role: r for r in _ORDER}

__all__ = ["RECIPES", "TRAINING_LOG", "Recipe", "RunOptions", "TrainConfig", "TrainError", "TrainResult", "read_log", "train_role"]
