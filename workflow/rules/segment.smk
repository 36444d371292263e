# Stage 4b: instance labels from the prediction, blockwise with globally consistent ids
# (unet.segmentation.run): an OME-Zarr label image beside the prediction, resumable per block.
# A dataset with labelled val_slices first chooses its kernel settings there (segment_tune:
# unet.segmentation.tune, a grid search on the model's own predictions) unless segment.tune
# is false.
# With segment.shards > 1 the watershed pass is split into separate jobs (SLURM: one each):
# `segment_prepare` prepares the output, `segment_shard` computes the fragments of a block
# range, `segment_finalize` checks every block, merges across faces, relabels and moves it into
# place. Each job's time and memory go to logs/benchmarks/<dataset>/ (as predict's).


rule segment_tune:
    input:
        unpack(predict_inputs),
        labels=f"{WORK}/{{dataset}}/labels.zarr",
    output:
        f"{RESULTS}/{{dataset}}/segment_settings.json",
    log:
        "logs/segment/{dataset}-tune.log",
    benchmark:
        "logs/benchmarks/{dataset}/segment_tune.tsv"
    conda:
        "../envs/unet.yaml"
    threads: dataset_threads("predict")
    resources:
        **dataset_res("predict"),  # it predicts the validation slices in its own process
    params:
        work=lambda w: f"{WORK}/{w.dataset}/segment_tune",
        predict=setting("predict"),
        mode=setting("segment/mode"),
        slices=lambda w: DATASETS[w.dataset]["val_slices"],
    script:
        "../../scripts/segment_tune.py"


if config["segment"]["shards"] == 1:

    rule segment:
        input:
            unpack(segment_inputs),
        output:
            directory(f"{RESULTS}/{{dataset}}/segmentation.zarr"),
        log:
            "logs/segment/{dataset}.log",
        benchmark:
            "logs/benchmarks/{dataset}/segment.tsv"
        conda:
            "../envs/unet.yaml"
        threads: dataset_threads("segment")
        resources:
            **dataset_res("segment"),
        params:
            step="all",
            segment=setting("segment"),
        script:
            "../../scripts/segment.py"

else:

    rule segment_prepare:
        input:
            unpack(segment_inputs),
        output:
            f"{WORK}/{{dataset}}/segment/layout.json",
        log:
            "logs/segment/{dataset}.log",
        benchmark:
            "logs/benchmarks/{dataset}/segment_prepare.tsv"
        conda:
            "../envs/unet.yaml"
        resources:
            **dataset_res("segment"),
        params:
            step="prepare",
            out=lambda w: f"{RESULTS}/{w.dataset}/segmentation.zarr",
            segment=setting("segment"),
        script:
            "../../scripts/segment.py"

    rule segment_shard:
        input:
            unpack(segment_inputs),
            layout=f"{WORK}/{{dataset}}/segment/layout.json",
        output:
            f"{WORK}/{{dataset}}/segment/shard-{{shard}}.json",
        log:
            "logs/segment/{dataset}-shard-{shard}.log",
        benchmark:
            "logs/benchmarks/{dataset}/segment_shard-{shard}.tsv"
        conda:
            "../envs/unet.yaml"
        threads: dataset_threads("segment")
        resources:
            **dataset_res("segment"),
        params:
            step="shard",
            out=lambda w: f"{RESULTS}/{w.dataset}/segmentation.zarr",
            segment=setting("segment"),
        script:
            "../../scripts/segment.py"

    rule segment_finalize:
        input:
            unpack(segment_inputs),
            shards=expand(
                f"{WORK}/{{{{dataset}}}}/segment/shard-{{shard}}.json",
                shard=range(config["segment"]["shards"]),
            ),
        output:
            directory(f"{RESULTS}/{{dataset}}/segmentation.zarr"),
        log:
            "logs/segment/{dataset}-finalize.log",
        benchmark:
            "logs/benchmarks/{dataset}/segment_finalize.tsv"
        conda:
            "../envs/unet.yaml"
        threads: dataset_threads("segment")
        resources:
            **dataset_res("segment"),
        params:
            step="finalize",
            segment=setting("segment"),
        script:
            "../../scripts/segment.py"
