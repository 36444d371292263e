"""Post-processing what-ifs on one prediction (issue 16): does anything after the net lower the
challenge's warping error?

A prediction OME-Zarr of ISBI 2012 slices (``unet predict`` output, p(cell)) is scored by the
challenge scorer (:mod:`unet.evaluation.isbi2012`) as it is and after each of: Gaussian smoothing
(sigma px, per slice), median filters, 3 x 3 grey opening and closing, and the project's 2d
segmentation (:func:`unet.segmentation.kernels.segment` with the settings that ``segment_tune``
chose) drawn as a map: 1 inside each object, 0 on its one-pixel boundary and on the background.
Each row also gives the split and merger pixels at its best warping threshold (the scorer's
``by_threshold`` counts).  ``--per-slice`` adds, for the map as predicted, each slice's split +
merger pixels at the stack's best threshold and at the slice's own best one (how far the
error is spread over the sections; the challenge picks one threshold for the stack).

    OMP_NUM_THREADS=1 .venv/bin/python bench/postprocess.py PREDICTION.zarr --slices 25-29 \\
        --segment results-cpu/isbi2012/segment_settings.json --out bench/out/postprocess.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import zarr
from scipy import ndimage

from unet.evaluation.isbi2012 import challenge_scores
from unet.io.slices import parse_slices
from unet.segmentation.kernels import segment

LABELS = Path(__file__).resolve().parents[1] / "data" / "isbi2012" / "train-labels.tif"


def per_slice(f: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """``f`` of each (y, x) slice of a (z, y, x) map."""
    return lambda p: np.stack([f(s) for s in p]).astype(np.float32)


FILTERS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "gauss_1": per_slice(lambda s: ndimage.gaussian_filter(s, 1.0)),
    "gauss_2": per_slice(lambda s: ndimage.gaussian_filter(s, 2.0)),
    "median_3": per_slice(lambda s: ndimage.median_filter(s, 3)),
    "median_5": per_slice(lambda s: ndimage.median_filter(s, 5)),
    "open_3": per_slice(lambda s: ndimage.grey_opening(s, (3, 3))),
    "close_3": per_slice(lambda s: ndimage.grey_closing(s, (3, 3))),
}
"""The map filters, by row name (all per slice: ISBI sections are scored one by one)."""


def boundary_map(labels: np.ndarray) -> np.ndarray:
    """A (z, y, x) label image as a cell map: 1 inside each object, 0 on the background and on
    each object's pixels whose right or lower neighbour belongs to another object, so that no two
    objects touch 4-connectedly (how the challenge cuts a map into cells).

    >>> boundary_map(np.array([[[1, 1, 2, 2]]]))[0, 0].tolist()
    [1.0, 0.0, 1.0, 1.0]
    """
    edge = np.zeros(labels.shape, bool)
    edge[..., :-1, :] |= labels[..., :-1, :] != labels[..., 1:, :]
    edge[..., :, :-1] |= labels[..., :, :-1] != labels[..., :, 1:]
    return ((labels > 0) & ~edge).astype(np.float32)


def row(name: str, cells: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """The challenge's scores of one map, with its split and merger pixels (the stack's at its
    best warping threshold, and each slice's at every threshold)."""
    t0 = time.perf_counter()
    s = challenge_scores(list(cells), list(truth))
    by = s["by_threshold"]
    best = by["legacy_thresholds"].index(round(s["warping_threshold"], 1))
    keys = ("rand_error", "rand_threshold", "pixel_error", "warping_error", "warping_threshold")
    out = {"row": name, **{k: s[k] for k in keys}, "splits": by["splits"][best]}
    out.update(mergers=by["mergers"][best], thresholds=by["legacy_thresholds"], warping_index=best)
    out["by_slice"] = by["split_merger_pixels_by_slice"]  # slice x threshold
    return {**out, "seconds": time.perf_counter() - t0}


def slice_errors(scored: dict[str, Any], zs: list[int]) -> list[dict]:
    """Each slice's split + merger pixels in a :func:`row` at the stack's best threshold and at
    the slice's own best threshold (of the challenge's 0.0, 0.1, ..., 0.9)."""
    out = []
    for z, counts in zip(zs, scored["by_slice"], strict=True):
        best = int(np.argmin(counts))
        out.append(
            {"z": z, "at_stack_threshold": counts[scored["warping_index"]], "fewest": counts[best],
             "fewest_threshold": scored["thresholds"][best], "counts": counts}
        )  # fmt: skip
    return out


def load(prediction: Path, slices: str) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(p(cell) float32, truth, z indices) of the prediction's slices in ``slices``."""
    group = zarr.open_group(str(prediction), mode="r")
    z0, z1 = group.attrs.asdict().get("unet", {}).get("z_range", [0, group["0"].shape[0]])
    labels = tifffile.imread(LABELS)
    wanted = list(parse_slices(slices, len(labels)))
    missing = [z for z in wanted if not z0 <= z < z1]
    if missing:
        raise SystemExit(f"{prediction}: holds slices {z0}-{z1 - 1}, not {missing}")
    p = np.asarray(group["0"][[z - z0 for z in wanted]])
    p = p.astype(np.float32) / 255.0 if p.dtype == np.uint8 else p.astype(np.float32)
    return p, labels[wanted], wanted


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| map | Rand error | pixel error | warping error | splits / mergers (px) |"]
    lines.append("|---|---|---|---|---|")
    for r in rows:
        lines.append(
            f"| {r['row']} | {r['rand_error']:.4f} @{r['rand_threshold']:.1f} | "
            f"{r['pixel_error']:.4f} | {r['warping_error']:.6f} @{r['warping_threshold']:.1f} | "
            f"{r['splits']} / {r['mergers']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("prediction", type=Path, help="prediction OME-Zarr of ISBI 2012 slices")
    p.add_argument("--slices", default="25-29", help="ISBI slices to score (default 25-29)")
    p.add_argument("--segment", type=Path, help="segment_settings.json: also the 2d segmentation")
    p.add_argument("--rows", default=",".join(FILTERS), help=f"of {', '.join(FILTERS)}")
    p.add_argument("--per-slice", action="store_true", help="each slice's split + merger px")
    p.add_argument("--out", type=Path, default=Path("bench/out/postprocess.json"))
    args = p.parse_args(argv)
    cells, truth, wanted = load(args.prediction, args.slices)
    rows = [row("as predicted", cells, truth)]
    slices = []
    if args.per_slice:
        slices = slice_errors(rows[0], wanted)
        print("| slice | split + merger px at the stack's threshold | fewest (threshold) |")
        print("|---|---|---|")
        for r in slices:
            print(
                f"| {r['z']} | {r['at_stack_threshold']} | {r['fewest']} @{r['fewest_threshold']} |"
            )
    for name in [n for n in args.rows.split(",") if n]:
        if name not in FILTERS:
            p.error(f"unknown row {name!r}; rows: {', '.join(FILTERS)}")
        rows.append(row(name, FILTERS[name](cells), truth))
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    if args.segment:
        chosen = json.loads(args.segment.read_text())["chosen"]
        labels = segment(cells, "2d", **chosen)
        rows.append(row(f"2d segmentation {chosen}", boundary_map(labels), truth))
    text = table(rows)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {"prediction": str(args.prediction), "slices": wanted, "rows": rows}
    if slices:
        record["per_slice"] = slices
    args.out.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
