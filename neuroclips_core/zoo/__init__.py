"""The model zoo: every pretrained model NeuroClips uses, by role, loaded from local folders.

The paper profile points each role at a folder of the real weights (``weights.yml``); the sim profile at a
stand-in of the same library class saved in the same layout.  One loader reads both::

    from neuroclips_core.zoo import load_weights_file, load_role
    weights = load_weights_file("weights.yml")
    vae = load_role("vae", weights.folder("vae"), device="cuda")       # or weights.load("vae", device="cuda")

Modules: :mod:`.roles` (the table of roles), :mod:`.weights` (weights.yml and folder checks),
:mod:`.loaders` (``load_role``/``save_role``), :mod:`.sgm_unclip` (MindEye2's sgm UNet checkpoint -> diffusers),
:mod:`.tiny` (tiny random models of every role), :mod:`.standins` (the sim profile's trained stand-ins:
``load_standin(role)``, ``train_standins``), :mod:`.corpus` (their pretraining corpus), :mod:`.train` (their
recipes), :mod:`.targets` (the quality each must reach, beside the measured numbers).

The sim profile's stand-in of a role, shipped inside the package::

    from neuroclips_core.zoo import load_standin
    vae = load_standin("vae")                                           # same object as load_role("vae", ...)
"""
from .loaders import Captioner, Classifier, OpenClip, UnClip, load_role, save_role
from .roles import ROLES, Role, roles_markdown_table
from .standins import STANDIN_DIR, StandinError, load_standin, train_standins
from .weights import WeightsError, WeightsFile, check_role_folder, load_weights_file

__all__ = ["ROLES", "Role", "roles_markdown_table", "WeightsError", "WeightsFile", "check_role_folder",
           "load_weights_file", "load_role", "save_role", "OpenClip", "UnClip", "Captioner", "Classifier", "STANDIN_DIR", "StandinError", "load_standin",
           "train_standins"]
