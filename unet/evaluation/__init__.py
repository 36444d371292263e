"""Scores: the ISBI 2012 challenge's definitions (isbi2012, warping), contingency tables, one-
segmentation metrics, instance scores, and the evaluate stage.

May import: unet.errors, unet.settings.schema, unet.geometry, unet.io.
"""
