"""Accuracy rows on the ISBI 2012 stack in the challenge's own terms (issue 16).

Every row but ``oracle`` (a diagnostic that also trains on the test slices) trains on slices 0-19
with the same budget (steps; the MONAI row: the same wall time,
from seconds/step measured side by side in this process), is scored on the validation slices
21-22 (threshold choices) and on the test slices 25-29 with the challenge's scorer
(:func:`unet.isbi2012.challenge_scores`: best threshold of each metric, as the challenge did;
``rand@val_t`` is the test Rand error at the threshold that was best on validation).  Class
weights are counted on the training slices only.  The base recipe is config/config.yaml's
model / train / weights sections; each row changes one thing.

    OMP_NUM_THREADS=1 .venv/bin/python bench/accuracy.py --rows project,w0_0,monai,tta8
    .venv/bin/python bench/accuracy.py --table --out bench/out/accuracy    # table of saved rows
    .venv/bin/python bench/accuracy.py --table --rows project,w0_0,monai --medians 0,1,2
        # rows run with --seed 0, 1, 2: each row's medians and per-seed values (medians.json)
    .venv/bin/python bench/accuracy.py --smoke --out /tmp/acc-smoke        # < 1 min

Each row is written to ``<out>/<row>.json`` (so rows can run in separate processes); trained
models are cached in ``<out>/models/`` by what trained them (the TTA row reuses ``project``'s).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import accuracy_levers as levers  # noqa: E402

from unet.evaluation.isbi2012 import challenge_scores  # noqa: E402
from unet.model import UNet  # noqa: E402
from unet.prediction.tiles import Predictor, predict_array  # noqa: E402
from unet.training.config import TrainConfig  # noqa: E402
from unet.training.sampler import PatchDataset  # noqa: E402
from unet.training.step import Trainer  # noqa: E402
from unet.weights.border import instances_from_mask, resolve_class_weights, weight_map  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CLDICE_ITERATIONS = 10  # soft-skeleton erosions: membranes up to ~20 px thick (nnU-Net's value)
TRAIN, VAL, TEST = list(range(20)), [21, 22], [25, 26, 27, 28, 29]
ORACLE = [z for z in range(30) if z not in VAL]  # a diagnostic: trains on the test slices too

ROWS: dict[str, dict[str, Any]] = {
    "project": {},
    "bn_project": {"train": {"norm": "batch"}},  # the recipe before norm: instance
    "w0_0": {"weights": {"w0": 0.0}},
    "monai": {"model": "monai"},
    "tta8": {"tta": True},
    "dropout2": {"dropout2": True},
    "grown_box": {"grown": True},
    "tile_228": {"train": {"output_tile": [228, 228]}},
    "steps_4000": {"train": {"steps": 4000}},
    "sigma_10": {"weights": {"sigma": 10.0}},
    "w0_30": {"weights": {"w0": 30.0}},
    "cw_none": {"weights": {"class_weights": "none"}},
    "cw_sqrt": {"weights": {"class_weights": "sqrt"}},
    "cosine": {"train": {"schedule": "cosine"}},
    "lr_0.003": {"train": {"lr": 0.003}},
    "base32": {"train": {"base_channels": 32}},
    "base24": {"train": {"base_channels": 24}},
    "norm_none": {"train": {"norm": "none"}},
    "norm_instance": {"train": {"norm": "instance"}},
    "norm_group": {"train": {"norm": "group"}},
    "bn_trainmode": {"bn_train_mode": True},
    "none_lr_0.003": {"train": {"norm": "none", "lr": 0.003}},
    "none_lr_0.03": {"train": {"norm": "none", "lr": 0.03}},
    "none_tile_244": {"train": {"norm": "none", "output_tile": [244, 244]}, "equal_time": True},
    "none_tile_324": {"train": {"norm": "none", "output_tile": [324, 324]}, "equal_time": True},
    "tile_244": {"train": {"output_tile": [244, 244]}, "equal_time": True},
    "base32_eq": {"train": {"base_channels": 32}, "equal_time": True},
    "adam": {"train": {"optimizer": "adam", "lr": 1e-3}},  # MONAI's optimiser and lr on our net
    "cldice": {"cldice": 0.5},  # + 0.5 x soft-clDice on the membrane class (topology)
    "cldice_1": {"cldice": 1.0},
    "bf16": {"train": {"precision": "bf16"}},  # bf16 autocast on the CPU (avx512_bf16: 1.5x)
    "bf16_eq": {"train": {"precision": "bf16"}, "equal_time": True},  # ... and its extra steps
    "ema": {"ema": 0.1},  # score the weights' moving average, time constant 10 % of the steps
    # not a recipe: the test slices are in its training set, so its test scores say how far this
    # net and budget can fit slices 25-29 at all (a floor for every lever that generalises)
    "oracle": {"train": {"train_slices": ORACLE}},
}
for _name in ("project", "tta8", "w0_0", "w0_30", "sigma_10", "cosine", "grown_box", "dropout2"):
    # at batch 1 a BatchNorm net trains exactly as an InstanceNorm one: these rows re-score the
    # BatchNorm rows' models with each tile's own statistics (what norm: instance does)
    ROWS[f"in_{_name}"] = {**ROWS[_name], "bn_train_mode": True}
"""Each row's change to the base recipe (``tta``, ``bn_train_mode`` do not change training)."""


def base_recipe(config_path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(TrainConfig keyword arguments, weights settings) of a workflow config file."""
    config = yaml.safe_load(config_path.read_text())
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    train = {k: v for k, v in {**config["model"], **config["train"]}.items() if k in fields}
    train.update(device="cpu", workers=0, val_slices=(), val_every=0, train_slices=TRAIN)
    weights = {k: config["weights"][k] for k in ("w0", "sigma", "class_weights")}
    return train, weights


def row_recipe(
    name: str,
    base: tuple[dict[str, Any], dict[str, Any]],
    smoke: bool,
    overrides: dict | None = None,
) -> dict:
    """The row's recipe; ``overrides`` (``--steps``, ``--seed``) change the base recipe."""
    spec = ROWS[name]
    train = {**base[0], **(overrides or {}), **spec.get("train", {})}
    if smoke:
        train.update(base_channels=2, depth=2, output_tile=[20, 20], steps=3)
    weights = {**base[1], **spec.get("weights", {})}
    recipe = {
        "train": train,
        "weights": weights,
        "model": spec.get("model", "unet"),
        "grown": spec.get("grown", False),
        "dropout2": spec.get("dropout2", False),
    }
    for lever in ("cldice", "ema"):  # only when set, so that the other rows keep their keys
        if spec.get(lever):
            recipe[lever] = spec[lever]
    if spec.get("equal_time"):
        recipe["equal_time"] = True
    key = hashlib.sha1(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:12]
    extra = {"tta": spec.get("tta", False), "bn_train_mode": spec.get("bn_train_mode", False)}
    return {**recipe, **extra, "key": key}


def row_file(name: str, args: argparse.Namespace) -> str:
    """``<row>[_s<steps>][_seed<seed>]``: the JSON name of a row run with ``--steps``/``--seed``."""
    return (
        name
        + (f"_s{args.steps}" if args.steps else "")
        + (f"_seed{args.seed}" if args.seed is not None else "")
    )


def load_stack(smoke: bool) -> tuple[np.ndarray, np.ndarray]:
    raw = tifffile.imread(ROOT / "data/isbi2012/train-volume.tif")
    mask = tifffile.imread(ROOT / "data/isbi2012/train-labels.tif")
    if smoke:
        raw, mask = raw[:, :64, :64], mask[:, :64, :64]
    return raw, (mask > 0).astype(np.uint8)  # 1 = cell, 0 = membrane


def weight_volume(
    cells: np.ndarray, w0: float, sigma: float, class_weights: str, train: list[int] = TRAIN
) -> np.ndarray:
    """Eq. 2 weights of the whole stack, w_c counted on the training slices only."""
    counts = (int((cells[train] == 0).sum()), int((cells[train] > 0).sum()))
    pair = bench_class_weights(class_weights, counts)
    instances = instances_from_mask(cells)
    return weight_map(instances, w0, sigma, pair, ndim=2)


def bench_class_weights(choice: str, counts: tuple[int, int]) -> tuple[float, float]:
    """``balanced`` (max_k N_k / N_c), ``none``, ``sqrt`` (its square root) or ``capN``
    (balanced, capped at N)."""
    if choice == "none":
        return 1.0, 1.0
    w_bg, w_fg = resolve_class_weights("balanced", counts=counts)
    if choice == "sqrt":
        return w_bg**0.5, w_fg**0.5
    if choice.startswith("cap"):
        cap = float(choice[3:])
        return min(w_bg, cap), min(w_fg, cap)
    return w_bg, w_fg


def unet_row(recipe: dict, raw: np.ndarray, cells: np.ndarray, steps: int) -> tuple[Any, dict]:
    """Train the project's net with its Trainer; returns (predict function, log)."""
    config = TrainConfig(**{**recipe["train"], "steps": steps})
    train = list(recipe["train"]["train_slices"])
    weights = weight_volume(cells, **recipe["weights"], train=train)
    trainer = Trainer(config, torch.device("cpu"))
    hook = levers.add_second_dropout(trainer.model, config.dropout) if recipe["dropout2"] else None
    if recipe.get("cldice"):
        trainer.loss = levers.with_cldice(recipe["cldice"], CLDICE_ITERATIONS)
    dataset_type = levers.GrownBoxDataset if recipe["grown"] else PatchDataset
    dataset = dataset_type(
        raw, cells, weights, config.input_tile, config.output_tile, train, config.seed,
        config.augment,
    )  # fmt: skip
    average = None
    if "ema" in recipe:
        average = levers.WeightAverage(trainer.model, recipe["ema"] * steps)
    t0, losses = time.perf_counter(), []
    for i in range(steps):
        image, classes, w = dataset[i]
        losses.append(float(trainer.step((image[None], classes[None], w[None]))))
        if average is not None:
            average.update(trainer.model)
    seconds = time.perf_counter() - t0
    if average is not None:
        average.copy_to(trainer.model)
    if hook is not None:
        hook.remove()  # training-only dropout: nothing to do at inference, but keep it clean
    model = trainer.model.eval()
    return model, {"seconds": seconds, "loss_last100": float(np.mean(losses[-100:]))}


def predictor_fn(model: Any) -> Any:
    """(z, y, x) grey values -> cell probability, one exact overlap-tile pass per call."""
    if isinstance(model, UNet):
        predictor = Predictor(model, "cpu")
        return lambda volume: predict_array(predictor, volume)
    return model.predict


def score(predict: Any, raw: np.ndarray, cells: np.ndarray, tta: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for split, zs in (("val", VAL), ("test", TEST)):
        volume = raw[zs]
        t0 = time.perf_counter()
        prob = levers.dihedral_average(predict, volume) if tta else predict(volume)
        seconds = time.perf_counter() - t0
        s = challenge_scores(list(prob), list(cells[zs] * 255), warping=True)
        out[split] = {**s, "predict_seconds": seconds}
    val_t = out["val"]["rand_threshold"]
    idx = out["test"]["by_threshold"]["legacy_thresholds"].index(round(val_t, 1))
    out["test"]["rand_error_at_val_threshold"] = out["test"]["by_threshold"]["rand_error"][idx]
    return out


def run_row(name: str, args: argparse.Namespace, raw: np.ndarray, cells: np.ndarray) -> dict:
    overrides = {"steps": args.steps} if args.steps else {}
    if args.seed is not None:
        overrides["seed"] = args.seed
    recipe = row_recipe(name, base_recipe(args.config), args.smoke, overrides)
    models = args.out / "models"
    models.mkdir(parents=True, exist_ok=True)
    cache = models / f"{recipe['key']}.pt"
    steps = recipe["train"]["steps"]
    if recipe["model"] == "monai":
        steps = monai_steps(recipe, raw, cells, args)
    elif recipe.get("equal_time") and not cache.exists() and not args.smoke:
        steps = equal_time_steps(recipe, raw, cells, args)
    info: dict[str, Any] = {}
    if recipe["model"] == "monai":
        trainer = monai_trainer(raw, cells, args.smoke, recipe["train"]["seed"])
        t0 = time.perf_counter()
        losses = [trainer.step() for _ in range(steps)]
        info = {"seconds": time.perf_counter() - t0, "loss_last100": float(np.mean(losses[-100:]))}
        model: Any = trainer
    elif cache.exists():
        saved = torch.load(cache, weights_only=True)
        model = UNet(**saved["arch"])
        model.load_state_dict(saved["state"])
        model.eval()
        info = saved["info"]
    else:
        model, info = unet_row(recipe, raw, cells, steps)
        info["steps"] = steps
        torch.save({"arch": model.arch, "state": model.state_dict(), "info": info}, cache)
    if recipe["bn_train_mode"]:  # batch statistics of each tile at inference, too
        levers.batch_norm_train_mode(model)
    scores = score(predictor_fn(model), raw, cells, recipe["tta"])
    steps = info.get("steps", steps)
    result = {"row": row_file(name, args), "recipe": recipe, "steps": steps, **info, **scores}
    (args.out / f"{row_file(name, args)}.json").write_text(
        json.dumps(result, indent=1, default=str)
    )
    return result


def project_dataset(config: TrainConfig, cells: np.ndarray, raw: np.ndarray, weights: dict) -> Any:
    w = weight_volume(cells, **weights)
    return PatchDataset(
        raw, cells, w, config.input_tile, config.output_tile, TRAIN, 0, config.augment
    )


def measure_step(config: TrainConfig, dataset: Any, n: int) -> float:
    """Seconds per training step of ``config`` (after 2 warm-up steps)."""
    trainer = Trainer(config, torch.device("cpu"))
    counter = iter(range(10**9))

    def one() -> None:
        image, classes, w = dataset[next(counter)]
        trainer.step((image[None], classes[None], w[None]))

    return levers.seconds_per_step(one, n)


def equal_time_steps(recipe: dict, raw: np.ndarray, cells: np.ndarray, args: Any) -> int:
    """Steps of this row that take the wall time of the base recipe's steps (both timed here)."""
    n = 20
    base, _ = base_recipe(args.config)
    base_cfg = TrainConfig(**{**base, "steps": recipe["train"]["steps"]})
    cfg = TrainConfig(**recipe["train"])
    t_base = measure_step(base_cfg, project_dataset(base_cfg, cells, raw, recipe["weights"]), n)
    t_row = measure_step(cfg, project_dataset(cfg, cells, raw, recipe["weights"]), n)
    steps = max(1, round(base_cfg.steps * t_base / t_row))
    print(f"seconds/step: base {t_base:.4f}, row {t_row:.4f} -> {steps} steps", flush=True)
    return steps


def monai_trainer(
    raw: np.ndarray, cells: np.ndarray, smoke: bool, seed: int = 0
) -> levers.MonaiTrainer:
    patch = 32 if smoke else 256
    features = (2, 2, 2, 2, 2, 2) if smoke else None
    return levers.MonaiTrainer(raw, cells, TRAIN, patch, seed=seed, features=features)


def monai_steps(recipe: dict, raw: np.ndarray, cells: np.ndarray, args: Any) -> int:
    """MONAI steps that take the wall time of the project recipe's steps: seconds/step of both
    measured side by side here (same process, same threads)."""
    n = 2 if args.smoke else 30
    config = TrainConfig(**recipe["train"])
    weights = weight_volume(cells, **recipe["weights"])
    trainer = Trainer(config, torch.device("cpu"))
    dataset = PatchDataset(
        raw, cells, weights, config.input_tile, config.output_tile, TRAIN, 0, config.augment
    )
    counter = iter(range(10**9))

    def ours() -> None:
        image, classes, w = dataset[next(counter)]
        trainer.step((image[None], classes[None], w[None]))

    t_ours = levers.seconds_per_step(ours, n)
    t_monai = levers.seconds_per_step(monai_trainer(raw, cells, args.smoke).step, n)
    steps = max(1, round(config.steps * t_ours / t_monai))
    print(f"seconds/step: project {t_ours:.4f}, MONAI {t_monai:.4f} -> MONAI {steps} steps")
    (args.out / "monai_timing.json").write_text(
        json.dumps({"project_s_per_step": t_ours, "monai_s_per_step": t_monai, "steps": steps})
    )
    return steps


def table(results: list[dict]) -> str:
    head = (
        "| run | budget | Rand error | pixel error | warping error | V_rand thinned | "
        "V_info thinned | rand@val_t | val Rand | val warping |\n"
        "|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in results:
        t, v = r["test"], r["val"]
        budget = f"{r['steps']} steps, {r['seconds'] / 60:.1f} min"
        warp, vwarp = (
            "n/a" if s.get("warping_error") is None else f"{s['warping_error']:.6f}" for s in (t, v)
        )
        lines.append(
            f"| {r['row']} | {budget} | {t['rand_error']:.4f} (t={t['rand_threshold']:.1f}) | "
            f"{t['pixel_error']:.4f} | {warp} | {t['v_rand_thinned']:.4f} | "
            f"{t['v_info_thinned']:.4f} | {t['rand_error_at_val_threshold']:.4f} | "
            f"{v['rand_error']:.4f} | {vwarp} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", default="project,w0_0,monai,tta8", help=f"of {', '.join(ROWS)}")
    p.add_argument("--config", type=Path, default=ROOT / "config/config.yaml")
    p.add_argument("--out", type=Path, default=ROOT / "bench/out/accuracy")
    p.add_argument("--smoke", action="store_true", help="tiny nets and crops (< 1 min)")
    p.add_argument("--table", action="store_true", help="only print the table of saved rows")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=0, help="base recipe's steps (0: the config's)")
    p.add_argument("--seed", type=int, default=None, help="base recipe's seed (the config's)")
    p.add_argument(
        "--medians", default="", help="seeds, e.g. 0,1,2: also a table of each row's medians"
    )
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    names = [n for n in args.rows.split(",") if n]
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        p.error(f"unknown rows {unknown}; rows: {', '.join(ROWS)}")
    if not args.table:
        raw, cells = load_stack(args.smoke)
        for name in names:
            r = run_row(name, args, raw, cells)
            print(table([r]).splitlines()[-1], flush=True)
    files = [args.out / f"{row_file(n, args)}.json" for n in names]
    results = [json.loads(f.read_text()) for f in files if f.exists()]
    text = table(results)
    (args.out / "table.md").write_text(text + "\n")
    (args.out / "accuracy.json").write_text(json.dumps(results, indent=1, default=str))
    print(text)
    if args.medians:
        seeds = [int(x) for x in args.medians.split(",")]
        summary = medians(names, seeds, args)
        (args.out / "medians.json").write_text(json.dumps(summary, indent=1))
        print(medians_table(summary))


MEDIAN_COLUMNS = (
    ("test", "rand_error", ".4f"),
    ("test", "pixel_error", ".4f"),
    ("test", "warping_error", ".6f"),
    ("val", "rand_error", ".4f"),
    ("val", "warping_error", ".6f"),
)
"""(split, score, format) of each column of :func:`medians_table`, as :func:`medians` keys them."""


def medians(names: list[str], seeds: list[int], args: argparse.Namespace) -> list[dict]:
    """Each row's saved runs over ``seeds``: per-seed values and medians of the test scores and
    the validation Rand and warping errors (rows with no saved run are left out)."""
    out = []
    for name in names:
        runs = []
        for seed in seeds:
            f = args.out / f"{row_file(name, argparse.Namespace(steps=args.steps, seed=seed))}.json"
            if f.exists():
                runs.append(json.loads(f.read_text()))
        if not runs:
            continue
        row: dict[str, Any] = {"row": name, "seeds": [r["recipe"]["train"]["seed"] for r in runs]}
        row["steps"] = [r["steps"] for r in runs]
        row["minutes"] = float(np.median([r["seconds"] for r in runs])) / 60
        for split, key, _ in MEDIAN_COLUMNS:
            values = [r[split][key] for r in runs]
            row[f"{split}_{key}"] = {"median": float(np.median(values)), "runs": values}
        out.append(row)
    return out


def medians_table(summary: list[dict]) -> str:
    head = (
        "| run | seeds | steps | min | Rand error | pixel error | warping error | val Rand | "
        "val warping |\n|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in summary:
        cells = []
        for split, key, fmt in MEDIAN_COLUMNS:
            m = r[f"{split}_{key}"]
            runs = ", ".join(format(v, fmt) for v in m["runs"])
            cells.append(f"**{format(m['median'], fmt)}** ({runs})")
        steps = "/".join(str(s) for s in r["steps"])
        seeds = ",".join(str(s) for s in r["seeds"])
        lines.append(
            f"| {r['row']} | {seeds} | {steps} | {r['minutes']:.1f} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
