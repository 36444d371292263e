"""Where blocks run and how a blockwise run is tracked: Dask executors (local, SLURM, existing
scheduler), TLS credentials, block layout and done markers.

May import: unet.errors, unet.geometry, unet.io.
"""
