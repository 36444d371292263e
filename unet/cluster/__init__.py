"""Where blocks run and how a blockwise run is tracked: Dask executors (local, SLURM, existing
scheduler), TLS credentials, block layout and done markers.

May import: unet.errors, unet.geometry. (Not the io package: its pyramid builds levels through
the executors here.  site.py imports snakemake.cli lazily, to name a profile file.)
"""
