"""Volumes in and out: ingest (TIFF/Zarr -> OME-Zarr) and its settings, its sources (TIFF files,
section folders, Zarr), NGFF metadata, compression codecs, atomic outputs, grey-value
normalisation, rescaling, intensity records, label checks, pyramids, slice selections.

May import: unet.errors, unet.geometry, unet.cluster.streaming (bounded maps over Dask blocks)
and one another. Nothing else of the package.
"""
