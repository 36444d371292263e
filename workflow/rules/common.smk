# Config validation, each dataset's effective settings (unet.settings.workflow: the sample sheet
# and per-dataset overrides) and the few input functions the rules share.
import os
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate
from snakemake_interface_executor_plugins.settings import ExecMode

from unet.settings import workflow as workflow_config
from unet.errors import InputError

validate(config, schema="../schemas/config.schema.yaml")

# The schemas beside this file, not beside the main Snakefile (workflow.basedir): a workflow
# that embeds this one as a module has its own basedir.
SCHEMAS = {
    name: Path(workflow.source_path(f"../schemas/{name}.schema.yaml"))
    for name in ("config", "datasets")
}
RESULTS = config["results"]
WORK = config["work"]

# `--sdm conda`: envs/unet.post-deploy.sh installs the package from this checkout (Snakemake
# runs a copy of the script, which cannot find the checkout itself). A site that deploys a
# built wheel sets UNET_EM_SOURCE to it; a workflow embedded from a remote source has no
# checkout and must set it too.
_CHECKOUT = Path(workflow.basedir).parent  # workflow/ -> the checkout
if (_CHECKOUT / "pyproject.toml").is_file():
    os.environ.setdefault("UNET_EM_SOURCE", str(_CHECKOUT))


def _resolve():
    """Every dataset (config and sheet) with its overrides merged over the global sections."""
    try:
        return workflow_config.resolve(
            config,
            workflow_config.load_schema(SCHEMAS["config"]),
            workflow_config.load_schema(SCHEMAS["datasets"]),
        )
    except InputError as err:
        raise WorkflowError(str(err)) from None


RUN = _resolve()
DATASETS = {name: ds.dataset for name, ds in RUN.items()}


def trained():
    return [n for n, ds in DATASETS.items() if ds["train_slices"] is not None]


def evaluated():
    return [n for n, ds in DATASETS.items() if ds["eval_slices"] is not None]


def model_of(name):
    return workflow_config.model_of(RUN, name)


def val_slices(name):
    """The validation slices whose pixel error training records for dataset `name`: its
    val_slices, else (not kept apart from the test) its eval_slices."""
    ds = DATASETS[name]
    return ds["val_slices"] if ds["val_slices"] is not None else ds["eval_slices"]


def setting(path):
    """Input function: the dataset's effective setting at `path` ("train", "ingest/chunks")."""
    section, *keys = path.split("/")

    def get(wildcards):
        value = RUN[wildcards.dataset].sections[section]
        for key in keys:
            value = value[key]
        return value

    return get


def res(rule_name):
    """Portable resources of a rule, from the global config['resources']."""
    return config["resources"][rule_name]


def dataset_res(rule_name, **fixed):
    """Per-dataset resources of a rule (overrides.resources), `fixed` ones replacing them."""
    keys = res(rule_name)
    return {
        key: (lambda w, key=key: RUN[w.dataset].sections["resources"][rule_name][key])
        for key in keys
    } | fixed


def dataset_threads(rule_name):
    return lambda w: RUN[w.dataset].sections["resources"][rule_name]["cpus_per_task"]


def predict_gpus(w):
    """With predict.cluster: slurm the predict job only hosts the Dask scheduler: no GPU."""
    predict = RUN[w.dataset].sections["predict"]
    gpus = RUN[w.dataset].sections["resources"]["predict"]["gpu"]
    return 0 if predict["cluster"] == "slurm" else gpus


def predict_inputs(w):
    return {
        # a shipped model (model: isbi2012) or a model file / bioimage.io package, else trained
        "model": workflow_config.external_model(RUN, w.dataset)
        or f"{RESULTS}/{model_of(w.dataset)}/model/model.pt",
        "raw": f"{WORK}/{w.dataset}/raw.zarr",
    }


def segment_tuned(name):
    """Whether segment_tune chooses the dataset's segmentation settings (segment.tune, and
    labels with val_slices)."""
    ds = DATASETS[name]
    tune = RUN[name].sections["segment"]["tune"]
    return bool(tune) and ds["labels"] is not None and ds["val_slices"] is not None


def segment_inputs(w):
    out = {"prediction": f"{RESULTS}/{w.dataset}/prediction.zarr"}
    if segment_tuned(w.dataset):
        out["tuned"] = f"{RESULTS}/{w.dataset}/segment_settings.json"
    return out


def dataset_outputs(name):
    """The final outputs of one dataset: its model, prediction, segmentation and evaluation
    report."""
    out = [f"{RESULTS}/{name}/prediction.zarr", f"{RESULTS}/{name}/segmentation.zarr"]
    if name in trained():
        out.append(f"{RESULTS}/{name}/model/model.pt")
    if name in evaluated():
        out.append(f"{RESULTS}/{name}/report.html")
    return out


def final_outputs():
    out = [f"{RESULTS}/{n}/prediction.zarr" for n in DATASETS]
    out += [f"{RESULTS}/{n}/segmentation.zarr" for n in DATASETS]
    out += [f"{RESULTS}/{n}/report.html" for n in evaluated()]
    if evaluated():
        out.append(f"{RESULTS}/scores.md")
    return out


# What follows from the config and the input shapes is checked before the first job, in the
# main process only (jobs parse this file again).
if workflow.exec_mode == ExecMode.DEFAULT:
    from unet.settings.preflight import check_run

    try:
        check_run(RUN, val_slices)
    except InputError as err:
        raise WorkflowError(f"{err}\nNothing was run.") from None


wildcard_constraints:
    dataset="|".join(DATASETS),
