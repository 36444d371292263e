"""The border weight map of the paper (eq. 2): exact per-slice kernel (border) and its blockwise
Dask computation over a whole volume (volume).

May import: unet.errors, unet.geometry, unet.io, unet.cluster.
"""
