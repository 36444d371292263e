"""A workflow run's settings: the effective per-dataset config, the sample sheet, the preflight
checks of a whole run, and the generated settings reference (doc).

May import: unet.errors, unet.io, unet.model, unet.checkpoint, unet.training.config,
unet.prediction.config, unet.prediction.tiles.  (Preflight checks a model's tile plan before a run.)
"""
