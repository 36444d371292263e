"""What the ``evaluate`` stage writes besides its scores: a PNG overlay of raw, prediction,
truth and errors, and a self-contained HTML report (scores, the paper's, images, provenance)."""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from unet.errors import InputError
from unet.evaluation.contingency import as_foreground
from unet.evaluation.evaluate import probability

PAPER_NOTE = (
    "paper: Ronneberger et al. 2015, Table 1, ISBI 2012 challenge definitions, on the "
    "challenge's test slices (private labels); this run: held-out training slices"
)

_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml"}


def write_overlay_png(
    path: str | Path,
    raw_slice: Any,
    probability_slice: Any,
    truth_slice: Any,
    *,
    threshold: float = 0.5,
) -> Path:
    """Write raw | prediction | truth | errors side by side as a PNG (no display needed).

    The error panel shows the raw image with false-positive cell pixels (predicted cell on a
    true membrane: merges) in red and false-negative ones (predicted membrane inside a true
    cell: splits) in blue.  All inputs are (Y, X).
    """
    raw, prob = np.asarray(raw_slice), probability(probability_slice)
    truth = as_foreground(truth_slice, name="truth")
    if raw.ndim != 2 or not raw.shape == prob.shape == truth.shape:
        raise InputError(
            f"need three 2D slices of one shape, got raw {raw.shape}, "
            f"probability {prob.shape}, truth {truth.shape}"
        )
    predicted = prob > threshold
    errors = np.zeros(raw.shape + (4,))
    errors[predicted & ~truth] = (1.0, 0.0, 0.0, 0.8)
    errors[~predicted & truth] = (0.0, 0.4, 1.0, 0.8)
    figure = Figure(figsize=(16, 4.4), layout="constrained")
    axes = figure.subplots(1, 4)
    panels = (
        ("raw", raw, None),
        ("prediction p(cell)", prob, (0.0, 1.0)),
        ("truth (cell = white)", truth, (0, 1)),
        ("errors: red = FP cell, blue = FN cell", raw, None),
    )
    for ax, (title, image, limits) in zip(axes, panels, strict=True):
        vmin, vmax = limits if limits else (None, None)
        ax.imshow(image, cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.set_title(title)
        ax.set_axis_off()
    axes[3].imshow(errors, interpolation="nearest")
    out = Path(path)
    figure.savefig(out, format="png", dpi=100)
    return out


def _format(value: Any) -> str:
    if value is None:
        return "&mdash;"
    if isinstance(value, float):
        return f"{value:.6g}"
    return html.escape(str(value))


def _provenance(record: Any) -> str:
    if not record:
        return ""
    text = html.escape(json.dumps(record, indent=2, default=str))
    return f"<h2>Provenance</h2><pre style='text-align:left'>{text}</pre>"


def write_report(
    path_html: str | Path,
    dataset: str,
    scores: Mapping[str, Any],
    images: Mapping[str, str | Path],
    paper: Mapping[str, float] | None = None,
) -> Path:
    """Write a self-contained HTML report: a table of the scalar ``scores`` (with a column of
    ``paper`` figures, e.g. :data:`unet.evaluation.evaluate.PAPER_ISBI2012`, where given, and
    :data:`PAPER_NOTE` under it) and ``images`` (titled PNG/JPEG/SVG files such as overlays or
    the training curve) embedded as base64; ``scores["provenance"]`` (model checksum, settings,
    versions: :func:`unet.io.provenance.report`) closes the page."""
    rows, figures = _score_rows(scores, paper), [_figure(t, Path(i)) for t, i in images.items()]
    name = html.escape(dataset)
    page = "\n".join(
        [
            "<!DOCTYPE html>",
            "<html lang='en'><head><meta charset='utf-8'>",
            f"<title>U-Net evaluation: {name}</title>",
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #999;padding:.3em .8em;text-align:right}"
            "img{max-width:100%}</style>",
            "</head><body>",
            f"<h1>U-Net evaluation: {name}</h1>",
            "<table>",
            *rows,
            "</table>",
            f"<p>{html.escape(PAPER_NOTE)}</p>" if paper else "",
            *figures,
            _provenance(scores.get("provenance")),
            "</body></html>",
        ]
    )
    out = Path(path_html)
    out.write_text(page + "\n", encoding="utf-8")
    return out


def _score_rows(scores: Mapping[str, Any], paper: Mapping[str, float] | None) -> list[str]:
    """The table's rows: a header, then one per scalar score (and its paper figure)."""
    header = "<tr><th>metric</th><th>this run</th>" + ("<th>paper</th>" if paper else "")
    rows = [header + "</tr>"]
    for key, value in scores.items():
        if isinstance(value, (dict, list, tuple)):
            continue
        row = f"<tr><td>{html.escape(key)}</td><td>{_format(value)}</td>"
        if paper:
            row += f"<td>{_format(paper.get(key))}</td>"
        rows.append(row + "</tr>")
    return rows


def _figure(title: str, image_path: Path) -> str:
    """An image file embedded as base64, with its title as caption."""
    mime = _MIME.get(image_path.suffix.lower())
    if mime is None:
        raise InputError(f"image {title!r}: unsupported file type {image_path.suffix!r}")
    if not image_path.is_file():
        raise FileNotFoundError(f"image {title!r} not found: {image_path}")
    data = base64.b64encode(image_path.read_bytes()).decode("ascii")
    return (
        f"<figure><img alt='{html.escape(title)}' src='data:{mime};base64,{data}'>"
        f"<figcaption>{html.escape(title)}</figcaption></figure>"
    )
