"""Overlap-tile prediction: its config, tile plans and the forward pass (tiles, the one inference
path), the block worker (blocks) and the blockwise run (run).

May import: unet.errors, unet.settings.schema, unet.geometry, unet.model, unet.checkpoint, unet.io,
unet.cluster.  (bioimage.io packages come in as models through the checkpoint module.)
"""
