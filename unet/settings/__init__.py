"""A workflow run's settings: the effective per-dataset config, the sample sheet, the preflight
checks of a whole run, and the generated settings reference (doc).

May import: unet.errors, unet.io, and the config dataclasses of the stage packages.
"""
