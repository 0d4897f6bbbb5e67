"""The trainable NeuroClips models: :mod:`.perception` (the Perception Reconstructor), :mod:`.losses` (their
training losses) and :mod:`.ridge` (closed-form ridge regression, a baseline and the SR's Eq. 3)."""
