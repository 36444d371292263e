"""The evaluate stage on 3 synthetic slices of 64 x 64 square cells."""

from __future__ import annotations

import base64
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import zarr

from unet.evaluation.evaluate import (
    PAPER_ISBI2012,
    EvaluateConfig,
    evaluate,
    probability,
    segment,
)
from unet.evaluation.report import write_overlay_png, write_report

CHALLENGE = ("pixel_error", "rand_error", "warping_error", "v_rand_thinned", "v_info_thinned")
KEYS = {
    *CHALLENGE,
    "pixel_threshold",
    "rand_threshold",
    "warping_threshold",
    "v_rand_thinned_threshold",
    "v_info_thinned_threshold",
    "by_threshold",
    "pixel_disagreement",
    "iou",
    "v_rand",
    "v_info",
    "n_slices",
    "threshold",
    "postprocess",
}


def cells(depth: int = 3, size: int = 64, period: int = 16) -> np.ndarray:
    """ISBI truth (255 = cell, 0 = 2-pixel membranes) of square cells, shifted per slice."""
    yy, xx = np.mgrid[:size, :size]
    return np.stack(
        [
            np.where(((yy + z) % period < 2) | ((xx + 2 * z) % period < 2), 0, 255)
            for z in range(depth)
        ]
    ).astype(np.uint8)


def leaky(truth: np.ndarray) -> np.ndarray:
    """Float probabilities: confident cells and membranes, but a weak (p = 0.6) gap in the
    membrane between two cells of every slice."""
    prob = np.where(truth > 0, 0.95, 0.05).astype(np.float32)
    column = int(np.flatnonzero(truth[0, 8] == 0)[2])  # an inner vertical membrane
    prob[0, 6:10, column : column + 2] = 0.6
    return prob


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_perfect_prediction_scores_perfectly(dtype: type) -> None:
    truth = cells()
    prob = truth if dtype is np.uint8 else (truth / 255).astype(dtype)
    scores = evaluate(prob, truth, EvaluateConfig())
    assert set(scores) == KEYS
    assert scores["pixel_error"] == scores["rand_error"] == scores["warping_error"] == 0.0
    assert scores["v_rand_thinned"] == pytest.approx(1.0)
    assert scores["v_info_thinned"] == pytest.approx(1.0)
    assert scores["pixel_disagreement"] == 0.0 and scores["iou"] == 1.0
    assert scores["v_rand"] == pytest.approx(1.0)
    assert scores["v_info"] == pytest.approx(1.0)
    assert (scores["n_slices"], scores["threshold"], scores["postprocess"]) == (3, 0.5, "threshold")


def test_watershed_closes_a_weak_gap_that_thresholding_merges() -> None:
    truth = cells()
    prob = leaky(truth)
    merged = evaluate(prob, truth, EvaluateConfig(slices=(0,)))
    split = evaluate(prob, truth, EvaluateConfig(postprocess="watershed", slices=(0,)))
    # the 4 x 2 gap pixels are cell in both segmentations: the same cell mask
    assert merged["pixel_disagreement"] == split["pixel_disagreement"] == 4 * 2 / 64**2
    assert merged["v_rand"] < 1.0
    assert split["v_rand"] == pytest.approx(1.0)
    # the challenge's scores sweep their own thresholds, whatever the post-processing: at
    # t = 0.7 (float32(0.6) > 0.6, so not yet at 0.6) the gap is membrane and all is exact
    for key in CHALLENGE:
        assert merged[key] == split[key]
    assert (merged["rand_error"], merged["rand_threshold"]) == (0.0, 0.7)
    assert (merged["warping_error"], merged["warping_threshold"]) == (0.0, 0.7)
    assert merged["by_threshold"]["warping_error"][6] > 0.0  # the merge at t = 0.6


def test_segment_labels_cells_uniquely_across_slices() -> None:
    truth = cells(depth=2)
    labels = segment(truth, EvaluateConfig())
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels > 0, truth > 0)
    assert len(np.unique(labels[0])) - 1 == 16  # 4 x 4 cells (edge cells included)
    assert not set(np.unique(labels[0])[1:]) & set(np.unique(labels[1])[1:])
    watershed = segment(leaky(truth), EvaluateConfig(postprocess="watershed"))
    assert len(np.unique(watershed[0])) - 1 == 16  # the gap did not merge two cells
    assert segment(leaky(truth)[0], EvaluateConfig()).shape == (64, 64)


def test_zarr_slices_and_no_warping(tmp_path: Path) -> None:
    truth = cells()
    prob = np.where(truth > 0, 230, 20).astype(np.uint8)
    prob[1, 20:22, :] = 20  # a false membrane across slice 1 splits a row of cells
    stored = {}
    for name, data in (("prob", prob), ("truth", truth)):
        stored[name] = zarr.create_array(
            tmp_path / name, shape=data.shape, chunks=(1, 32, 64), dtype="u1"
        )
        stored[name][:] = data
    config = EvaluateConfig(slices=(1, 2), warping=False)
    scores = evaluate(stored["prob"], stored["truth"], config)
    assert scores == evaluate(prob, truth, config)
    assert scores["warping_error"] is None and scores["n_slices"] == 2
    # 2 rows of 64 pixels minus the 8 membrane columns they cross, over 2 slices
    assert scores["pixel_disagreement"] == pytest.approx(2 * 56 / (2 * 64**2))
    assert 0.0 < scores["rand_error"] < 0.5  # the split stays at every threshold
    with_warping = EvaluateConfig(slices=(1,), postprocess="watershed")
    assert evaluate(stored["prob"], stored["truth"], with_warping) == evaluate(
        prob, truth, with_warping
    )
    assert evaluate(prob[2], truth[2], EvaluateConfig(warping=False))["n_slices"] == 1  # 2D


def test_config_errors() -> None:
    with pytest.raises(ValueError, match=r"threshold must be in \(0, 1\), got 1.0"):
        EvaluateConfig(threshold=1.0)
    with pytest.raises(ValueError, match="postprocess must be 'threshold' or 'watershed', got 'x'"):
        EvaluateConfig(postprocess="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"seed_threshold must be in \[threshold, 1\) = \[0.5"):
        EvaluateConfig(seed_threshold=0.4)
    with pytest.raises(ValueError, match=r"slices must be non-negative indices, got \(\)"):
        EvaluateConfig(slices=())
    assert EvaluateConfig(slices=[2, 0]).slices == (2, 0)  # type: ignore[arg-type]


def test_evaluate_errors() -> None:
    truth = cells(depth=2)
    prob = truth / 255
    with pytest.raises(ValueError, match=r"probability shape \(2, 64, 64\) != truth shape \(1,"):
        evaluate(prob, truth[:1], EvaluateConfig())
    with pytest.raises(ValueError, match=r"arrays must be \(Y, X\) or \(Z, Y, X\), got shape"):
        evaluate(prob[None], truth[None], EvaluateConfig())
    with pytest.raises(
        TypeError, match="truth must be a binary or instance image, got dtype float"
    ):
        evaluate(prob, prob, EvaluateConfig())
    with pytest.raises(TypeError, match="probabilities must be uint8 or float, got dtype int16"):
        evaluate(truth.astype(np.int16), truth, EvaluateConfig())
    with pytest.raises(
        ValueError, match=r"float probabilities must lie in \[0, 1\], got \[0.0, 255"
    ):
        evaluate(truth.astype(np.float32), truth, EvaluateConfig())
    with pytest.raises(ValueError, match=r"slices must be a non-empty subset of range\(2\)"):
        evaluate(prob, truth, EvaluateConfig(slices=(5,)))
    with pytest.raises(ValueError, match=r"probability map must be \(Y, X\) or \(Z, Y, X\)"):
        segment(np.zeros(4, np.float32), EvaluateConfig())
    assert probability(np.array([0, 255], np.uint8)).tolist() == [0.0, 1.0]


def test_overlay_png(tmp_path: Path) -> None:
    truth = cells(depth=1)[0]
    raw = np.random.default_rng(0).integers(0, 255, truth.shape).astype(np.uint8)
    path = write_overlay_png(tmp_path / "overlay.png", raw, leaky(cells())[0], truth)
    image = matplotlib.image.imread(path)
    assert image.shape[:2] == (440, 1600)
    with pytest.raises(ValueError, match=r"need three 2D slices of one shape, got raw \(64, 64\)"):
        write_overlay_png(tmp_path / "bad.png", raw, truth[:32] / 255, truth)


def test_report_embeds_scores_paper_and_images(tmp_path: Path) -> None:
    png = tmp_path / "overlay.png"
    png.write_bytes(b"\x89PNG fake")
    scores = {
        "pixel_error": 0.0123456789,
        "warping_error": None,
        "postprocess": "threshold",
        "by_threshold": {"pixel_error": [0.1, 0.2]},
    }
    path = write_report(
        tmp_path / "report.html", "isbi<2012>", scores, {"slice 0": png}, paper=PAPER_ISBI2012
    )
    text = path.read_text(encoding="utf-8")
    assert "isbi&lt;2012&gt;" in text
    assert "<td>pixel_error</td><td>0.0123457</td><td>0.0611</td>" in text
    assert "<td>warping_error</td><td>&mdash;</td><td>0.000353</td>" in text
    assert "by_threshold" not in text  # curves are in the JSON, not the table
    assert "the challenge&#x27;s test slices (private labels)" in text
    assert "data:image/png;base64," + base64.b64encode(b"\x89PNG fake").decode() in text
    plain = write_report(tmp_path / "plain.html", "d", scores, {}).read_text(encoding="utf-8")
    assert "<th>paper</th>" not in plain
    with pytest.raises(FileNotFoundError, match="image 'curve' not found: .*curve.png"):
        write_report(tmp_path / "r.html", "d", scores, {"curve": tmp_path / "curve.png"})
    with pytest.raises(ValueError, match="image 'x': unsupported file type '.tif'"):
        write_report(tmp_path / "r.html", "d", scores, {"x": tmp_path / "x.tif"})
