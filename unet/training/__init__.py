"""Training: its config, the walltime-safe loop, one optimisation step, training state and
preemption signals, the patch sampler, augmentation, the weighted loss, metrics curves.

May import: unet.errors, unet.geometry, unet.model, unet.checkpoint, unet.io, unet.weights,
unet.evaluation (validation scores).
"""
