"""The pure parts of bench/accuracy.py and bench/rare_class.py (the rows themselves are timed
runs: ``bench/accuracy.py --smoke`` runs every kind of row in well under a minute)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import accuracy  # noqa: E402
import accuracy_levers as levers  # noqa: E402
import rare_class  # noqa: E402


def test_dihedral_round_trip() -> None:
    a = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    seen = set()
    for k, flip in levers.DIHEDRAL:
        moved = levers.dihedral(a, k, flip)
        np.testing.assert_array_equal(levers.undo_dihedral(moved, k, flip), a)
        seen.add(moved.tobytes() + bytes(moved.shape))
    assert len(seen) == 8  # eight different symmetries


def test_dihedral_average_of_an_equivariant_map_is_the_map() -> None:
    a = np.random.default_rng(0).random((1, 6, 6)).astype(np.float32)
    np.testing.assert_allclose(levers.dihedral_average(lambda v: 2 * v, a), 2 * a, rtol=1e-6)


def test_grown_margin_covers_rotation_and_elastic() -> None:
    # a 300 px box rotated by 45 degrees reaches 150 * sqrt(2) = 212.1 from its centre
    assert levers.grown_margin((300, 300), 180, 10.0) == 63 + 40
    assert levers.grown_margin((300, 300), 0, 0.0) == 0


def test_class_weight_choices() -> None:
    counts = (10, 90)  # background rare: w_bg = 9
    assert accuracy.bench_class_weights("balanced", counts) == (9.0, 1.0)
    assert accuracy.bench_class_weights("none", counts) == (1.0, 1.0)
    assert accuracy.bench_class_weights("sqrt", counts) == (3.0, 1.0)
    assert accuracy.bench_class_weights("cap5", counts) == (5.0, 1.0)


def test_rows_change_one_thing() -> None:
    base = accuracy.base_recipe(accuracy.ROOT / "config/config.yaml")
    project = accuracy.row_recipe("project", base, smoke=False)
    tta = accuracy.row_recipe("tta8", base, smoke=False)
    w0 = accuracy.row_recipe("w0_0", base, smoke=False)
    assert tta["key"] == project["key"] and tta["tta"]  # the TTA row reuses the trained model
    assert w0["key"] != project["key"] and w0["weights"]["w0"] == 0
    assert project["train"]["train_slices"] == accuracy.TRAIN
    assert not set(accuracy.TRAIN) & set(accuracy.VAL + accuracy.TEST)
    assert set(accuracy.VAL).isdisjoint(accuracy.TEST)
    rescored = accuracy.row_recipe("in_w0_0", base, smoke=False)  # the same model, tile statistics
    assert rescored["key"] == w0["key"] and rescored["bn_train_mode"]
    seeded = accuracy.row_recipe("project", base, False, {"seed": 1})
    assert seeded["key"] != project["key"] and seeded["train"]["seed"] == 1


def test_only_the_oracle_row_trains_on_test_slices() -> None:
    base = accuracy.base_recipe(accuracy.ROOT / "config/config.yaml")
    for name in accuracy.ROWS:
        train = set(accuracy.row_recipe(name, base, smoke=False)["train"]["train_slices"])
        assert train.isdisjoint(accuracy.VAL), name  # thresholds are never chosen on training
        assert train.isdisjoint(accuracy.TEST) == (name != "oracle"), name
    oracle = accuracy.row_recipe("oracle", base, smoke=False)
    assert set(oracle["train"]["train_slices"]) == set(range(30)) - set(accuracy.VAL)


def test_table_formats_a_row() -> None:
    scores = {
        "rand_error": 0.1, "rand_threshold": 0.9, "pixel_error": 0.05, "warping_error": 0.001,
        "v_rand_thinned": 0.9, "v_info_thinned": 0.95, "rand_error_at_val_threshold": 0.11,
    }  # fmt: skip
    row = {"row": "x", "steps": 10, "seconds": 60, "test": scores, "val": scores}
    assert accuracy.table([row]).splitlines()[-1] == (
        "| x | 10 steps, 1.0 min | 0.1000 (t=0.9) | 0.0500 | 0.001000 | 0.9000 | 0.9500 | "
        "0.1100 | 0.1000 | 0.001000 |"
    )


def test_medians_over_seeds(tmp_path: Path) -> None:
    def scores(rand: float) -> dict:
        return {"rand_error": rand, "pixel_error": rand / 2, "warping_error": rand / 100}

    for seed, rand in ((0, 0.3), (1, 0.1), (2, 0.2)):
        row = {
            "row": f"project_seed{seed}", "recipe": {"train": {"seed": seed}}, "steps": 10 + seed,
            "seconds": 60.0 * (seed + 1), "test": scores(rand), "val": scores(2 * rand),
        }  # fmt: skip
        (tmp_path / f"project_seed{seed}.json").write_text(json.dumps(row))
    args = argparse.Namespace(out=tmp_path, steps=0)
    (summary,) = accuracy.medians(["project", "monai"], [0, 1, 2, 3], args)  # no monai runs
    assert summary["seeds"] == [0, 1, 2] and summary["steps"] == [10, 11, 12]
    assert summary["minutes"] == 2.0
    assert summary["test_rand_error"] == {"median": 0.2, "runs": [0.3, 0.1, 0.2]}
    assert summary["val_warping_error"]["median"] == pytest.approx(0.004)
    line = accuracy.medians_table([summary]).splitlines()[-1]
    assert line.startswith(
        "| project | 0,1,2 | 10/11/12 | 2.0 | **0.2000** (0.3000, 0.1000, 0.2000) |"
    )


def test_small_cells_target() -> None:
    cells = np.ones((1, 5, 7), np.uint8)
    cells[0, :, 2] = 0  # a 5 x 2 cell (10 px) and a 5 x 4 cell (20 px)
    np.testing.assert_array_equal(rare_class.small_cells(cells, 15)[0, 0], [1, 1, 0, 0, 0, 0, 0])


def test_iou_and_best_f1() -> None:
    truth = np.array([0, 1, 1, 0])
    prob = np.array([0.2, 0.7, 0.4, 0.1])
    assert rare_class.iou(prob, truth) == pytest.approx(0.5)
    assert rare_class.best_f1(prob, truth) == (pytest.approx(1.0), 0.3)


def test_adam_row_trains_with_adam_on_the_schedule() -> None:
    from unet.training.config import TrainConfig
    from unet.training.step import Trainer

    train = accuracy.row_recipe(
        "adam", accuracy.base_recipe(accuracy.ROOT / "config/config.yaml"), False
    )["train"]
    assert (train["optimizer"], train["lr"]) == ("adam", 1e-3)
    config = TrainConfig(
        base_channels=2, depth=1, output_tile=[4, 4], steps=4, schedule="poly", poly_power=1.0,
        optimizer=train["optimizer"], lr=train["lr"],
    )  # fmt: skip
    trainer = Trainer(config, torch.device("cpu"))
    assert isinstance(trainer.optimizer, torch.optim.Adam)
    assert trainer.lr == pytest.approx(1e-3)
    n = config.input_tile[0]
    batch = (torch.rand(1, 1, n, n), torch.randint(0, 2, (1, n, n)), torch.ones(1, n, n))
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.step(batch)
    assert trainer.lr == pytest.approx(1e-3 * 0.75)  # poly power 1: (1 - 1/4)
    assert any(
        not torch.equal(a, p) for a, p in zip(before, trainer.model.parameters(), strict=True)
    )


def test_cldice_row_adds_the_topology_term_to_the_paper_loss() -> None:
    pytest.importorskip("monai")
    from unet.training.loss import weighted_cross_entropy

    base = accuracy.base_recipe(accuracy.ROOT / "config/config.yaml")
    project = accuracy.row_recipe("project", base, smoke=False)
    row = accuracy.row_recipe("cldice", base, smoke=False)
    assert row["cldice"] == 0.5 and "cldice" not in project and row["key"] != project["key"]
    classes = torch.ones(1, 12, 12, dtype=torch.int64)
    classes[:, 5:7, :] = 0  # a membrane (class 0) across the tile
    weights = torch.ones(1, 12, 12)
    right = torch.where(classes == 0, -8.0, 8.0)[:, None] * torch.tensor([-1.0, 1.0])[:, None, None]
    broken = right.clone()
    broken[:, :, 5:7, 4:8] = torch.tensor([-8.0, 8.0])[:, None, None]  # a gap: cells merge
    loss = levers.with_cldice(1.0, 3)
    extra_right = loss(right, classes, weights) - weighted_cross_entropy(right, classes, weights)
    extra_broken = loss(broken, classes, weights) - weighted_cross_entropy(broken, classes, weights)
    assert float(extra_right) < 0.01 < 0.1 < float(extra_broken)  # the gap costs, the truth not


def test_weight_average_tracks_and_replaces_the_weights() -> None:
    model = torch.nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.fill_(0.0)
    average = levers.WeightAverage(model, tau=4.0)  # decay 0.75
    with torch.no_grad():
        model.weight.fill_(1.0)
    average.update(model)
    average.update(model)
    average.copy_to(model)
    torch.testing.assert_close(model.weight, torch.full((1, 2), 1 - 0.75**2))
