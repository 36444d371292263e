"""Training: its config, the walltime-safe loop, one optimisation step, training state and
preemption signals, the patch sampler, augmentation, the weighted loss, metrics curves.

May import: unet.errors, unet.settings.schema, unet.geometry, unet.model, unet.checkpoint, unet.io,
unet.weights, unet.evaluation, unet.prediction.tiles.  (Validation scores, and validation runs the
one inference path.)  Not the stages package: the exit statuses it needs are in unet.errors.
"""
