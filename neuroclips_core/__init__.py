"""neuroclips_core: the thin, tested package under the NeuroClips Book (fMRI -> video reconstruction)."""
__version__ = "0.1.0"
