"""Path-level entry points of the stages that need more than one module: open the inputs, write
the outputs atomically (:mod:`unet.io.outputs`), call the computation.  Scripts and the CLI call
these; tests call them directly.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from unet.errors import InputError
from unet.evaluation.evaluate import PAPER_ISBI2012, EvaluateConfig, evaluate
from unet.evaluation.instances import segmentation_scores
from unet.evaluation.report import write_overlay_png, write_report
from unet.geometry import Box, Window
from unet.io import ngff, outputs, provenance
from unet.io.label_stats import check_counts
from unet.io.slices import parse_slices
from unet.settings.schema import default
from unet.weights.volume import weight_volume

log = logging.getLogger("unet.stages.pipeline")

SCORE_KEYS = (
    "rand_error",
    "pixel_error",
    "warping_error",
    "v_rand_thinned",
    "v_info_thinned",
    "pixel_disagreement",
    "iou",
)
"""Columns of :func:`scores_table`: the ISBI 2012 challenge's scores
(:mod:`unet.evaluation.isbi2012`),
then the project's segmentation's pixel disagreement (1 - accuracy) and cell IoU."""


@dataclass(frozen=True)
class WeightsConfig:
    """Border weight maps: see :func:`unet.weights.border.weight_map` for w0, sigma,
    class_weights."""

    w0: float = default("weights", "w0")
    sigma: float = default("weights", "sigma")
    class_weights: Literal["balanced", "none"] = default("weights", "class_weights")
    class_weight_cap: float | None = default("weights", "class_weight_cap")
    ndim: int = default("weights", "ndim")
    block: tuple[int, int, int] = default("weights", "block")
    separation: int = default("train", "separation")  # the training target's, see TrainConfig

    def __post_init__(self) -> None:
        if isinstance(self.w0, bool) or not isinstance(self.w0, int | float) or self.w0 < 0:
            raise InputError(f"weights.w0 must be a number >= 0, got {self.w0!r}")
        if (
            isinstance(self.sigma, bool)
            or not isinstance(self.sigma, int | float)
            or self.sigma <= 0
        ):
            raise InputError(f"weights.sigma must be a number > 0, got {self.sigma!r}")
        if self.class_weights not in ("balanced", "none"):
            raise InputError(
                f"weights.class_weights must be 'balanced' or 'none', got {self.class_weights!r}"
            )
        cap = self.class_weight_cap
        if cap is not None and (
            isinstance(cap, bool) or not isinstance(cap, int | float) or cap < 1
        ):
            raise InputError(f"weights.class_weight_cap must be a number >= 1 or null, got {cap!r}")
        if self.ndim not in (2, 3):
            raise InputError(f"weights.ndim must be 2 or 3, got {self.ndim!r}")
        block = tuple(self.block)
        if len(block) != 3 or not all(isinstance(b, int) and b >= 1 for b in block):
            raise InputError(f"weights.block must be 3 integers >= 1 (z, y, x), got {self.block!r}")
        object.__setattr__(self, "block", block)
        if not isinstance(self.separation, int) or self.separation < 0:
            raise InputError(f"train.separation must be an integer >= 0, got {self.separation!r}")


def weights_stage(
    labels_path: str | Path,
    out_path: str | Path,
    config: WeightsConfig,
    from_mask: bool = True,
    count_slices: str | None = None,
) -> dict[str, Any]:
    """Labels volume -> float32 weight-map volume of the same shape and chunks; the balanced
    class weights count the pixels of the slices ``count_slices`` only (the training slices,
    e.g. ``"0-19"``; ``None``: all)."""
    labels = ngff.open_array(labels_path)
    ngff.check_role(labels_path, "labels")
    record = ngff.attributes(labels_path)
    kind = record.get("kind")
    if kind is not None and (kind == "binary") != from_mask:
        raise InputError(
            f"{labels_path}: labels were ingested as {kind}, but the weights were asked for "
            + ("a binary mask" if from_mask else "instance ids (--instances)")
        )
    mode = "binary" if from_mask else "instances"
    if "label_counts" in record:  # counted at ingest: stop before any work
        counted = record["label_counts"]
        check_counts(str(labels_path), counted["background"], counted["foreground"], mode)
    # a block reaching past the volume covers it whole, rounded up to a multiple of the chunks
    # (which ngff.create clipped to the shape), so that the default suits small volumes too
    block = tuple(
        b if b < s else -(-s // c) * c
        for b, c, s in zip(config.block, labels.chunks, labels.shape, strict=True)
    )
    with outputs.staging(out_path, inputs=(labels_path,)) as tmp:
        out = ngff.create(
            tmp,
            labels.shape,
            np.float32,
            labels.chunks,
            ngff.voxel_size(labels_path),
            attrs={"stage": "weights", "labels": str(labels_path), **asdict(config)},
            translation=ngff.translation(labels_path),  # overlays the labels in a viewer
        )
        info = weight_volume(
            labels,
            out,
            w0=config.w0,
            sigma=config.sigma,
            class_weights=None if config.class_weights == "none" else "balanced",
            class_weight_cap=config.class_weight_cap,
            ndim=config.ndim,
            from_mask=from_mask,
            separation=config.separation,
            block_shape=block,
            count_slices=None
            if count_slices is None
            else parse_slices(count_slices, labels.shape[0], name="weights count_slices"),
        )
        background, foreground = info["counts"]
        check_counts(str(labels_path), background, foreground, mode)  # labels of another tool
        log.info("weights %s: %s", out_path, info)
    return dict(info)


def evaluate_stage(
    prediction_path: str | Path,
    labels_path: str | Path,
    raw_path: str | Path | None,
    out_json: str | Path,
    overlay_png: str | Path,
    report_html: str | Path,
    config: EvaluateConfig,
    slices: str | None,
    dataset: str,
    curve_png: str | Path | None = None,
    segmentation_path: str | Path | None = None,
) -> dict[str, Any]:
    """Score the held-out ``slices`` of a prediction; write JSON, an overlay PNG and a report.

    ``segmentation_path``: the label image ``unet segment`` wrote from this prediction; its
    instance scores (:mod:`unet.evaluation.instances`) join the others as ``segment_<score>``.

    ``raw_path``: the raw volume drawn under the overlay (None: the prediction itself)."""
    for path in (out_json, overlay_png, report_html):
        outputs.check_writable(path, inputs=(prediction_path, labels_path, raw_path))
    ngff.check_role(prediction_path, "prediction")
    ngff.check_role(labels_path, "labels")
    prob = ngff.open_array(prediction_path)
    truth: Any = ngff.open_array(labels_path)
    raw: Any = ngff.open_array(raw_path) if raw_path is not None else None
    z, (z0, z1) = _eval_slices(prediction_path, labels_path, prob, truth, slices, dataset)
    if (z0, z1) != (0, truth.shape[0]):  # score the predicted sub-stack against its labels
        window = Box((z0, 0, 0), tuple(prob.shape))
        truth = Window(truth, window)
        raw = Window(raw, window) if raw is not None else None
        z = [i - z0 for i in z]
    if raw is None:  # the prediction's own z range
        raw = prob
    scores = evaluate(prob, truth, replace(config, slices=tuple(z)))
    if segmentation_path is not None:
        scores.update(_segment_scores(segmentation_path, prediction_path, prob, truth, z))
    scores["dataset"] = dataset
    scores["slices"] = slices or "all"
    scores["provenance"] = provenance.report(  # model checksum, settings, versions
        ngff.attributes(prediction_path), prediction_path, evaluate_config=asdict(config)
    )
    for path in (out_json, overlay_png, report_html):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    mid = z[len(z) // 2]
    write_overlay_png(overlay_png, raw[mid], prob[mid], truth[mid], threshold=config.threshold)
    images = {f"held-out slice {mid + z0}": overlay_png}
    if curve_png is not None:
        images["training curve"] = curve_png
    write_report(report_html, dataset, scores, images, PAPER_ISBI2012)
    tmp = Path(str(out_json) + ".partial")
    tmp.write_text(json.dumps(scores, indent=2, default=float))
    tmp.replace(out_json)  # the JSON is the rule's completion mark: written last, atomically
    return scores


def _eval_slices(
    prediction_path: str | Path,
    labels_path: str | Path,
    prob: Any,
    truth: Any,
    slices: str | None,
    dataset: str,
) -> tuple[list[int], tuple[int, int]]:
    """The slices to score and the predicted z range, checked against the labels."""
    z = parse_slices(slices or "all", truth.shape[0], name=f"{dataset} eval_slices")
    z0, z1 = ngff.attributes(prediction_path).get("z_range") or (0, truth.shape[0])
    if tuple(prob.shape) != (z1 - z0, *truth.shape[1:]):
        raise InputError(
            f"{prediction_path}: prediction of shape {tuple(prob.shape)} (slices {z0}..{z1 - 1}) "
            f"does not match the labels {labels_path} of shape {tuple(truth.shape)}"
        )
    if not all(z0 <= i < z1 for i in z):
        raise InputError(
            f"{prediction_path}: eval slices {slices or 'all'} are not all predicted "
            f"(predicted z range {z0}..{z1 - 1})"
        )
    return z, (z0, z1)


def _segment_scores(
    segmentation_path: str | Path, prediction_path: str | Path, prob: Any, truth: Any, z: list[int]
) -> dict[str, Any]:
    """The instance scores (``segment_<score>``) of the label image made from the prediction."""
    ngff.check_role(segmentation_path, "segmentation")
    seg = ngff.open_array(segmentation_path)
    if tuple(seg.shape) != tuple(prob.shape):
        raise InputError(
            f"{segmentation_path}: shape {tuple(seg.shape)} differs from the prediction "
            f"{prediction_path} ({tuple(prob.shape)})"
        )
    return segmentation_scores(seg, truth, z)


def scores_table(json_paths: Sequence[str | Path]) -> str:
    """A Markdown table of the scores of several datasets, with the paper's figures and a note
    that says what they are: the challenge's scores show their best threshold (``@ t``)."""
    rows = [json.loads(Path(p).read_text()) for p in json_paths]
    head = "| dataset | slices | " + " | ".join(SCORE_KEYS) + " |"
    lines = [head, "|" + "---|" * (len(SCORE_KEYS) + 2)]
    for r in rows:
        cells = [_fmt(r.get(k), r.get(_THRESHOLD_OF.get(k, ""))) for k in SCORE_KEYS]
        lines.append(f"| {r['dataset']} | {r.get('slices')} | " + " | ".join(cells) + " |")
    paper = [_fmt(PAPER_ISBI2012.get(k)) for k in SCORE_KEYS]
    lines.append("| paper (ISBI 2012 test set) | 0-29 | " + " | ".join(paper) + " |")
    note = (
        "\nISBI 2012 challenge definitions (unet.evaluation.isbi2012: Fiji's PixelError, "
        "RandError, "
        "WarpingError; V_rand / V_info after border thinning), best threshold after @. The paper's "
        "figures are on the challenge's test slices, whose labels are private; ours are on "
        "held-out training slices. pixel_disagreement (1 - accuracy) and iou are of this "
        "project's segmentation at its threshold."
    )
    made = [
        f"- {r['dataset']}: {provenance.summary(r['provenance'])}"
        for r in rows
        if "provenance" in r
    ]
    made_by = "\nProvenance:\n" + "\n".join(made) + "\n" if made else ""
    return "\n".join(lines) + "\n" + note + "\n" + made_by


_THRESHOLD_OF = {
    "rand_error": "rand_threshold",
    "pixel_error": "pixel_threshold",
    "warping_error": "warping_threshold",
    "v_rand_thinned": "v_rand_thinned_threshold",
    "v_info_thinned": "v_info_thinned_threshold",
}


def _fmt(value: Any, threshold: Any = None) -> str:
    if value is None:
        return "-"
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    return text if threshold is None else f"{text} @{threshold:.1f}"
