"""Overlap-tile prediction: its config, tile plans and the forward pass (tiles, the one inference
path), the block worker (blocks) and the blockwise run (run).

May import: unet.errors, unet.geometry, unet.model, unet.checkpoint, unet.io, unet.cluster,
unet.interop (bioimage.io packages as models).
"""
