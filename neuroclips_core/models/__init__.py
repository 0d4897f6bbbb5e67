"""The trainable NeuroClips models: :mod:`.perception` (the Perception Reconstructor), :mod:`.semantics` (the
Semantics Reconstructor and the Reftm projector), :mod:`.losses` (their training losses),
:mod:`.semantics_objective` (the SR's stage-by-stage training objective) and :mod:`.ridge`
(closed-form ridge regression, a baseline and the SR's Eq. 3); :mod:`.blocks` and :mod:`.checkpoint` hold what
the reconstructors share (the residual MLP block, voxel weights, checkpoints with the voxel-count check)."""
