"""Formats other tools read: bioimage.io model packages (read and export) and TIFF export for Fiji.

May import: unet.errors, unet.geometry, unet.model, unet.checkpoint, unet.io.  (The checkpoint
module in turn reads packages as models with the reader here, bioimageio, which imports only the
errors: no import cycle.)
"""
