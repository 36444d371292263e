# Named targets, so nobody types paths: `snakemake --cores 8 train_all` (every model),
# `predict_all`, `segment_all` (when the segment stage is part of the workflow), and per dataset
# `all_<ds>`, `train_<ds>`, `predict_<ds>`, `segment_<ds>`. Included last: it looks up the stages.

STAGE_TARGETS = {
    "train": lambda name: (
        [f"{RESULTS}/{name}/model/model.pt"] if name in trained() else []
    ),
    "predict": lambda name: [f"{RESULTS}/{name}/prediction.zarr"],
}
if workflow.is_rule("segment") or workflow.is_rule("segment_finalize"):
    STAGE_TARGETS["segment"] = lambda name: [f"{RESULTS}/{name}/segmentation.zarr"]


def _target_names(name):
    return [f"all_{name}"] + [f"{stage}_{name}" for stage in STAGE_TARGETS]


for _name in DATASETS:
    for _target in _target_names(_name):
        if workflow.is_rule(_target):
            raise WorkflowError(
                f"dataset {_name!r}: its target {_target!r} would clash with the rule of that "
                "name; rename the dataset"
            )

for _stage, _outputs in STAGE_TARGETS.items():

    rule:
        name:
            f"{_stage}_all"
        input:
            [path for name in DATASETS for path in _outputs(name)],
        localrule: True


for _name in DATASETS:

    rule:
        name:
            f"all_{_name}"
        input:
            dataset_outputs(_name),
        localrule: True

    for _stage, _outputs in STAGE_TARGETS.items():
        if _outputs(_name):

            rule:
                name:
                    f"{_stage}_{_name}"
                input:
                    _outputs(_name),
                localrule: True
