"""Formats other tools read: bioimage.io model packages (read and export) and TIFF export for Fiji.

May import: unet.errors, unet.geometry, unet.model, unet.checkpoint, unet.io.
"""
