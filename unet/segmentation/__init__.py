"""Instance segmentation of probability volumes: its config, in-memory kernels, the block worker,
the run's layout and partial output, the merge graph and the blockwise run with globally
consistent ids.

May import: unet.errors, unet.geometry, unet.io, unet.cluster.
"""
