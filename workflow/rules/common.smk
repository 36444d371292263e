# Config validation and the few input functions the rules share.
from pathlib import Path

from snakemake.utils import validate

from unet.slices import parse_slices

validate(config, schema="../schemas/config.schema.yaml")

RESULTS = config["results"]
WORK = config["work"]
DATASETS = config["datasets"]


def _check_datasets():
    """Fail before any job starts if datasets reference missing labels or models."""
    for name, ds in DATASETS.items():
        for key in ("train_slices", "eval_slices"):
            if ds[key] is not None and ds["labels"] is None:
                raise ValueError(
                    f"config: datasets.{name}.{key} is set but the dataset has no labels"
                )
        if ds["model"] is not None and ds["model"] not in DATASETS:
            raise ValueError(
                f"config: datasets.{name}.model names unknown dataset {ds['model']!r}"
            )
        if model_of(name) not in trained():
            raise ValueError(
                f"config: dataset {model_of(name)!r} (model of {name!r}) has no train_slices"
            )
        if "," in (ds["predict_slices"] or "all"):
            raise ValueError(
                f"config: datasets.{name}.predict_slices must be 'all' or one range, "
                f"got {ds['predict_slices']!r}"
            )


def trained():
    return [n for n, ds in DATASETS.items() if ds["train_slices"] is not None]


def evaluated():
    return [n for n, ds in DATASETS.items() if ds["eval_slices"] is not None]


def model_of(name):
    return DATASETS[name]["model"] or name


def res(rule_name):
    """Portable resources of a rule, from config['resources']."""
    return config["resources"][rule_name]


def predict_inputs(w):
    return {
        "model": f"{RESULTS}/{model_of(w.dataset)}/model/model.pt",
        "raw": f"{WORK}/{w.dataset}/raw.zarr",
    }


def final_outputs():
    out = [f"{RESULTS}/{n}/prediction.zarr" for n in DATASETS]
    out += [f"{RESULTS}/{n}/report.html" for n in evaluated()]
    if evaluated():
        out.append(f"{RESULTS}/scores.md")
    return out


_check_datasets()


wildcard_constraints:
    dataset="|".join(DATASETS),
