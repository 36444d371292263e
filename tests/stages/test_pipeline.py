"""Path-level stages: weight maps and evaluation from OME-Zarr volumes, and the scores table."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from unet.errors import InputError
from unet.evaluation.evaluate import PAPER_ISBI2012, EvaluateConfig
from unet.io import ngff
from unet.stages.pipeline import (
    SCORE_KEYS,
    WeightsConfig,
    evaluate_stage,
    scores_table,
    weights_stage,
)
from unet.weights.border import class_weights, instances_from_mask, weight_map

VOXEL = (50.0, 4.0, 4.0)
CHUNKS = (1, 32, 32)


def volume(path, data: np.ndarray, chunks=CHUNKS, **attrs) -> str:
    """Write ``data`` as an OME-Zarr volume at ``path``; its ``unet`` attributes are ``attrs``."""
    ngff.create(path, data.shape, data.dtype, chunks, VOXEL, attrs=attrs)[...] = data
    return str(path)


# ---------------------------------------------------------------- weights_stage


@pytest.mark.parametrize(("choice", "expected_weights"), [("balanced", "balanced"), ("none", None)])
def test_weights_stage(tmp_path, cells, choice, expected_weights):
    labels = volume(tmp_path / "labels.zarr", cells)
    out_path = tmp_path / "weights" / "isbi.zarr"
    config = WeightsConfig(
        w0=10.0, sigma=5.0, class_weights=choice, class_weight_cap=None, block=(1, 32, 64)
    )
    info = weights_stage(labels, out_path, config)

    out = ngff.open_array(out_path)
    assert out.shape == cells.shape and out.chunks == CHUNKS and out.dtype == np.float32
    assert ngff.voxel_size(out_path) == VOXEL
    weights = out[...]
    expected = weight_map(instances_from_mask(cells), 10.0, 5.0, expected_weights, ndim=2)
    np.testing.assert_allclose(weights, expected, rtol=0, atol=1e-5)
    assert weights.min() == pytest.approx(1.0) and np.ptp(weights) > 5  # >= 1, real borders
    n_bg = int(np.count_nonzero(cells == 0))
    assert info["counts"] == [n_bg, cells.size - n_bg]
    if choice == "balanced":  # the rarer membranes outweigh the cells
        assert info["class_weights"] == list(class_weights(cells)) and n_bg < cells.size / 2
        w_bg = cells.size / n_bg - 1  # max(N) / N_bg with N_fg = N - N_bg the larger count
        assert info["class_weights"] == pytest.approx([w_bg, 1.0])
        assert weights[cells == 0].min() >= w_bg - 1e-5
    else:
        assert info["class_weights"] == [1.0, 1.0]
    assert np.all(weights[cells > 0] == info["class_weights"][1])  # no border term on cells

    attrs = ngff.attributes(out_path)
    assert attrs["stage"] == "weights" and attrs["labels"] == labels
    assert attrs["class_weights"] == choice and attrs["block"] == [1, 32, 64]
    assert not (tmp_path / "weights" / "isbi.zarr.partial").exists()


def test_weights_stage_caps_the_balanced_weight_of_a_rare_class(tmp_path, cells):
    labels = volume(tmp_path / "labels.zarr", cells)
    full = class_weights(cells)
    assert full[0] > 2.0  # the synthetic membranes are rarer than a third of the pixels
    info = weights_stage(labels, tmp_path / "w.zarr", WeightsConfig(class_weight_cap=2.0))
    assert info["class_weights"] == [2.0, full[1]] and info["class_weight_cap"] == 2.0
    weights = ngff.open_array(tmp_path / "w.zarr")[...]
    expected = weight_map(instances_from_mask(cells), 10.0, 5.0, (2.0, full[1]), ndim=2)
    np.testing.assert_allclose(weights, expected, rtol=0, atol=1e-5)
    # the schema's default cap (5) is above ISBI 2012's membrane weight: the paper's recipe there
    assert WeightsConfig().class_weight_cap == 5.0
    with pytest.raises(
        InputError, match=r"weights\.class_weight_cap must be a number >= 1 or null, got 0\.5"
    ):
        WeightsConfig(class_weight_cap=0.5)


def test_weights_stage_counts_the_class_balance_on_the_given_slices(tmp_path, cells):
    labels = volume(tmp_path / "labels.zarr", cells)
    info = weights_stage(labels, tmp_path / "w.zarr", WeightsConfig(), count_slices="1")
    n_bg = int(np.count_nonzero(cells[1] == 0))
    assert info["count_slices"] == [1] and info["counts"] == [n_bg, cells[1].size - n_bg]
    with pytest.raises(ValueError, match="weights count_slices"):
        weights_stage(labels, tmp_path / "x.zarr", WeightsConfig(), count_slices="7")


def test_weights_stage_from_instance_labels(tmp_path):
    labels = np.zeros((2, 40, 40), np.int32)
    labels[:, 5:19, 5:35] = 1
    labels[:, 21:35, 5:35] = 2  # two cells 2 px apart
    path = volume(tmp_path / "instances.zarr", labels, chunks=(1, 40, 40))
    weights_stage(path, tmp_path / "w.zarr", WeightsConfig(block=(1, 40, 40)), from_mask=False)
    weights = ngff.open_array(tmp_path / "w.zarr")[...]
    np.testing.assert_allclose(weights, weight_map(labels, ndim=2), rtol=0, atol=1e-5)
    assert weights[0, 20, 20] > weights[0, 2, 20] >= 1  # the border between them peaks


def test_weights_stage_keeps_the_labels_placement(tmp_path, cells):
    """A labels volume with an origin (e.g. ingested from another tool's OME-Zarr) gives weights
    that overlay it: the same voxel size and translation."""
    mask = cells[:, :32, :32]
    path = tmp_path / "labels.zarr"
    ngff.create(path, mask.shape, mask.dtype, CHUNKS, VOXEL, translation=(100.0, 8.0, 12.0))[
        ...
    ] = mask
    weights_stage(str(path), tmp_path / "w.zarr", WeightsConfig(block=(1, 32, 32)))
    assert ngff.voxel_size(tmp_path / "w.zarr") == VOXEL
    assert ngff.translation(tmp_path / "w.zarr") == (100.0, 8.0, 12.0)


def test_weights_stage_default_block_on_a_small_volume(tmp_path, cells):
    mask = cells[:, :60, :60]  # 512 is no multiple of 60
    labels = volume(tmp_path / "labels.zarr", mask, chunks=(1, 512, 512))  # stored as (1, 60, 60)
    weights_stage(labels, tmp_path / "w.zarr", WeightsConfig(class_weight_cap=None))
    expected = weight_map(instances_from_mask(mask), ndim=2)
    np.testing.assert_allclose(ngff.open_array(tmp_path / "w.zarr")[...], expected, atol=1e-5)


def test_weights_stage_refuses_an_existing_output(tmp_path, cells):
    labels = volume(tmp_path / "labels.zarr", cells)
    out_path = tmp_path / "weights.zarr"
    volume(out_path, np.full((1, 4, 4), 7, np.uint8), chunks=(1, 4, 4))
    with pytest.raises(FileExistsError, match=r"weights\.zarr: output already exists"):
        weights_stage(labels, out_path, WeightsConfig())
    assert np.all(ngff.open_array(out_path)[...] == 7)  # untouched
    assert not (tmp_path / "weights.zarr.partial").exists()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("sigma", -1.0, r"weights\.sigma must be a number > 0, got -1\.0"),
        ("w0", -2, r"weights\.w0 must be a number >= 0, got -2"),
        ("class_weights", "median", r"weights\.class_weights must be 'balanced' or 'none'"),
        ("ndim", 4, r"weights\.ndim must be 2 or 3, got 4"),
        ("block", (1, 0, 8), r"weights\.block must be 3 integers >= 1"),
        ("separation", -1, r"train\.separation must be an integer >= 0, got -1"),
    ],
)
def test_weights_config_names_the_bad_setting(field, value, message):
    with pytest.raises(InputError, match=message):
        WeightsConfig(**{field: value})


def test_weights_stage_missing_labels(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothing\.zarr: no such Zarr volume"):
        weights_stage(tmp_path / "nothing.zarr", tmp_path / "w.zarr", WeightsConfig())
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("config", "from_mask", "error", "message"),
    [
        (WeightsConfig(), True, ValueError, r"labels must be a binary mask .* found \[0, 1, 255\]"),
        (WeightsConfig(block=(1, 48, 48)), True, ValueError, r"block_shape"),
        (WeightsConfig(), False, TypeError, r"labels must be integer instance labels"),
    ],
)
def test_weights_stage_leaves_nothing_when_it_fails(
    tmp_path, cells, config, from_mask, error, message
):
    data = cells.copy()
    data[0, 1, 1] = 1  # a third value: not a binary mask
    if not from_mask:
        data = data.astype(np.float32)
    labels = volume(tmp_path / "labels.zarr", data)
    out_path = tmp_path / "out" / "weights.zarr"
    with pytest.raises(error, match=message):
        weights_stage(labels, out_path, config, from_mask=from_mask)
    assert not out_path.exists()
    assert not (tmp_path / "out" / "weights.zarr.partial").exists()


# ---------------------------------------------------------------- evaluate_stage


def paths(tmp_path):
    out = tmp_path / "results" / "isbi"
    return {
        "out_json": out / "evaluation.json",
        "overlay_png": out / "overlay.png",
        "report_html": out / "report.html",
    }


@pytest.fixture
def inputs(tmp_path, cells, raw):
    """Labels, raw and a perfect uint8 prediction (predicted z range 0..2) of ``cells``."""
    return {
        "prediction_path": volume(tmp_path / "pred.zarr", cells, z_range=[0, 3]),
        "labels_path": volume(tmp_path / "labels.zarr", cells),
        "raw_path": volume(tmp_path / "raw.zarr", raw),
    }


def read_outputs(out_json, overlay_png, report_html):
    scores = json.loads(out_json.read_text())
    png = overlay_png.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000
    page = report_html.read_text()
    assert "<h1>U-Net evaluation: isbi</h1>" in page and "data:image/png;base64," in page
    return scores, page


@pytest.mark.parametrize("slices", ["1-2", None])
def test_evaluate_stage_perfect_prediction(tmp_path, inputs, slices):
    out = paths(tmp_path)
    scores = evaluate_stage(**inputs, **out, config=EvaluateConfig(), slices=slices, dataset="isbi")
    written, page = read_outputs(**out)
    assert written == scores
    assert set(SCORE_KEYS) <= set(written)
    assert written["pixel_error"] == written["rand_error"] == written["warping_error"] == 0.0
    assert written["iou"] == written["v_rand"] == pytest.approx(1.0)
    assert written["v_info"] == pytest.approx(1.0)
    assert written["n_slices"] == (2 if slices else 3)
    assert written["dataset"] == "isbi" and written["slices"] == (slices or "all")
    mid = 2 if slices else 1  # the middle of the evaluated slices
    assert f"held-out slice {mid}" in page
    assert not list(out["out_json"].parent.glob("*.partial"))


def test_evaluate_stage_scores_errors(tmp_path, cells, inputs):
    pred = cells.copy()
    pred[1, 2:6, 2:14] = 0  # 48 cell pixels predicted as membrane in slice 1
    pred[2, 16, :] = 255  # a membrane row of slice 2 (64 pixels) predicted as cells
    wrong = volume(tmp_path / "wrong.zarr", pred, z_range=[0, 3])
    out = paths(tmp_path)
    inputs["prediction_path"] = wrong
    scores = evaluate_stage(**inputs, **out, config=EvaluateConfig(), slices="1-2", dataset="isbi")
    assert scores["pixel_disagreement"] == pytest.approx((48 + 64) / (2 * 64 * 64))
    assert scores["rand_error"] > 0 and scores["v_rand"] < 1 and scores["iou"] < 1
    assert scores["warping_error"] > 0  # the merge is a topological error
    assert json.loads(out["out_json"].read_text())["pixel_error"] == scores["pixel_error"]


def test_evaluate_stage_shape_mismatch(tmp_path, cells, inputs):
    inputs["prediction_path"] = volume(tmp_path / "small.zarr", cells[:, :, :32])
    out = paths(tmp_path)
    message = (
        f"{inputs['prediction_path']}: prediction of shape (3, 64, 32) (slices 0..2) does not "
        "match the labels "
        f"{inputs['labels_path']} of shape (3, 64, 64)"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        evaluate_stage(**inputs, **out, config=EvaluateConfig(), slices=None, dataset="isbi")
    assert not out["out_json"].parent.exists()


@pytest.mark.parametrize("slices", ["0-1", "2", None])
def test_evaluate_stage_slices_outside_the_predicted_range(tmp_path, cells, inputs, slices):
    # a prediction of slices 1..1 holds only that slice (unet.prediction.run stores its z range)
    inputs["prediction_path"] = volume(tmp_path / "part.zarr", cells[1:2], z_range=[1, 2])
    out = paths(tmp_path)
    message = r"part\.zarr: eval slices .* are not all predicted \(predicted z range 1\.\.1\)"
    with pytest.raises(ValueError, match=message):
        evaluate_stage(**inputs, **out, config=EvaluateConfig(), slices=slices, dataset="isbi")
    assert not out["out_json"].exists()


def test_evaluate_stage_slices_inside_the_predicted_range(tmp_path, cells, inputs):
    pred = cells[1:3].copy()
    pred[1, 16, :] = 255  # a membrane row of slice 2 predicted as cells: 64 wrong pixels
    inputs["prediction_path"] = volume(tmp_path / "part.zarr", pred, z_range=[1, 3])
    out = paths(tmp_path)
    scores = evaluate_stage(**inputs, **out, config=EvaluateConfig(), slices="1", dataset="isbi")
    assert scores["n_slices"] == 1 and scores["pixel_disagreement"] == 0.0
    out = paths(tmp_path / "b")
    scores = evaluate_stage(**inputs, **out, config=EvaluateConfig(), slices="2", dataset="isbi")
    assert scores["pixel_disagreement"] == 64 / cells[2].size  # slice 2 of the labels, not 1
    assert "held-out slice 2" in out["report_html"].read_text()


def test_evaluate_stage_z_range_that_does_not_fit_the_prediction(tmp_path, cells, inputs):
    inputs["prediction_path"] = volume(tmp_path / "part.zarr", cells, z_range=[1, 2])
    with pytest.raises(
        ValueError, match=r"part\.zarr: prediction of shape \(3, 64, 64\) \(slices 1\.\.1\)"
    ):
        evaluate_stage(
            **inputs, **paths(tmp_path), config=EvaluateConfig(), slices="1", dataset="isbi"
        )


def test_evaluate_stage_without_z_range_scores_all(tmp_path, cells, inputs):
    inputs["prediction_path"] = volume(tmp_path / "plain.zarr", cells)  # no z_range attribute
    out = paths(tmp_path)
    scores = evaluate_stage(**inputs, **out, config=EvaluateConfig(), slices="0-2", dataset="isbi")
    assert scores["n_slices"] == 3


def test_evaluate_stage_bad_slices(tmp_path, inputs):
    out = paths(tmp_path)
    with pytest.raises(ValueError, match=r"^isbi eval_slices: slice 3 in '2-3' is outside"):
        evaluate_stage(**inputs, **out, config=EvaluateConfig(), slices="2-3", dataset="isbi")
    assert not out["out_json"].parent.exists()


def test_evaluate_stage_with_training_curve(tmp_path, inputs):
    out = paths(tmp_path)
    curve = tmp_path / "curve.png"
    curve.write_bytes(b"\x89PNG\r\n\x1a\nnot really an image")
    evaluate_stage(
        **inputs,
        **out,
        config=EvaluateConfig(warping=False),
        slices="0",
        dataset="isbi",
        curve_png=curve,
    )
    page = out["report_html"].read_text()
    assert "training curve" in page and page.count("data:image/png;base64,") == 2
    assert json.loads(out["out_json"].read_text())["warping_error"] is None


def test_evaluate_stage_missing_curve_writes_no_json(tmp_path, inputs):
    out = paths(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"image 'training curve' not found: .*none\.png"):
        evaluate_stage(
            **inputs,
            **out,
            config=EvaluateConfig(warping=False),
            slices="0",
            dataset="isbi",
            curve_png=tmp_path / "none.png",
        )
    assert not out["out_json"].exists()  # the JSON (the rule's completion mark) comes last


# ---------------------------------------------------------------- scores_table


def test_scores_table(tmp_path):
    rows = [
        {
            "dataset": "isbi",
            "slices": "20-29",
            "rand_error": 0.04,
            "rand_threshold": 0.8,
            "pixel_error": 0.0612345,
            "pixel_threshold": 0.1,
            "warping_error": None,
            "v_rand_thinned": 0.96,
            "v_rand_thinned_threshold": 0.30000000000000004,
            "v_info_thinned": 0.98,
            "v_info_thinned_threshold": 0.5,
            "pixel_disagreement": 0.1,
            "iou": 0.9,
        },
        {"dataset": "cremi", "slices": None, "rand_error": 0.2, "iou": 0.8, "n_slices": 5},
    ]
    files = []
    for row in rows:
        files.append(tmp_path / f"{row['dataset']}.json")
        files[-1].write_text(json.dumps(row))
    table = scores_table(files)
    lines = table.splitlines()
    assert table.endswith("\n") and len(lines) == 2 + len(rows) + 1 + 2
    assert lines[0] == (
        "| dataset | slices | rand_error | pixel_error | warping_error | v_rand_thinned "
        "| v_info_thinned | pixel_disagreement | iou |"
    )
    assert lines[1] == "|---|---|---|---|---|---|---|---|---|"
    assert lines[2] == (
        "| isbi | 20-29 | 0.04 @0.8 | 0.06123 @0.1 | - | 0.96 @0.3 | 0.98 @0.5 | 0.1 | 0.9 |"
    )
    assert lines[3] == "| cremi | None | 0.2 | - | - | - | - | - | 0.8 |"
    assert lines[4] == (
        "| paper (ISBI 2012 test set) | 0-29 | 0.0382 | 0.0611 | 0.000353 | - | - | - | - |"
    )
    assert PAPER_ISBI2012["pixel_error"] == 0.0611
    assert all(line.count("|") == len(SCORE_KEYS) + 3 for line in lines[:5])
    assert lines[5] == "" and "test slices, whose labels are private" in lines[6]


def test_scores_table_from_evaluate_stage(tmp_path, inputs):
    out = paths(tmp_path)
    evaluate_stage(**inputs, **out, config=EvaluateConfig(), slices="0-1", dataset="isbi")
    lines = scores_table([out["out_json"]]).splitlines()
    assert len(lines) == 9  # table, note, then the provenance block (one line per dataset)
    assert lines[-2] == "Provenance:" and lines[-1].startswith("- isbi")
    assert lines[2] == "| isbi | 0-1 | 0 @0.0 | 0 @0.0 | 0 @0.0 | 1 @0.0 | 1 @0.0 | 0 | 1 |"


def test_scores_table_without_datasets_has_the_paper_row():
    lines = scores_table([]).splitlines()
    assert len(lines) == 5 and lines[2].startswith("| paper (ISBI 2012 test set) | 0-29 |")
