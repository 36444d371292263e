"""Instance segmentation of probability volumes: its config, in-memory kernels, the block worker,
the run's layout and partial output, the merge graph and the blockwise run with globally
consistent ids, and the choice of its kernel settings on labelled slices (tune).

May import: unet.errors, unet.geometry, unet.io, unet.cluster, unet.evaluation.instances (the
score of tune's search).
"""
