"""Boxes, tiles and mirror extrapolation: every piece of slicing in the project lives here.

Overlap-tile policy (one policy, used by training, prediction and the Snakefile)::

    volume axis:      |0 ..................................................... V)
    write blocks:     [ block 0 )[ block 1 )[ block 2 )[ block 3 )[ b4 )..(clipped at V)
    net output box:  [~ block 0 ~]                                     (block grown by e)
    read box:     [.... block 1 grown by m ....]                   (m = e + context / 2)
                  ^ outside [0, V): mirror-extrapolated (symmetric, repeated for thin axes)

* The volume is cut into a regular grid of *write blocks* starting at 0.  Write blocks are whole
  multiples of the storage chunks, so concurrent writers never touch the same chunk; only the last
  block per axis is clipped by the volume.
* A valid-convolution net maps an input of shape ``I`` to an output of shape ``O = I - context``.
  The network output box is the (unclipped) write block grown by ``e = (O - W) / 2`` on each side,
  the read box is the write block grown by ``m = (I - W) / 2``; ``e`` pixels of output on each side
  are discarded.  Because every read box starts at ``k * W - m`` and ``W`` is a multiple of the
  net's down-sampling factor, all tiles share the same max-pool phase: the stitched result equals
  one forward pass over the whole (mirrored) volume, with no blending and no seams.
* Mirror extrapolation happens only at the *global* border: interior tiles read real neighbours.

Modules: boxes (:class:`Box`, block grids, crops), tiles (the overlap-tile plan), mirror (mirror
extrapolation, windows onto sub-volumes); everything is importable from ``unet.geometry``.

May import: unet.errors.
"""

from unet.geometry.boxes import Box, Coord, as_coord, blocks, center_crop, check_multiple
from unet.geometry.mirror import Window, mirror_indices, read_mirrored
from unet.geometry.tiles import Tile, TilePlan

__all__ = [
    "Box",
    "Coord",
    "Tile",
    "TilePlan",
    "Window",
    "as_coord",
    "blocks",
    "center_crop",
    "check_multiple",
    "mirror_indices",
    "read_mirrored",
]
