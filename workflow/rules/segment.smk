# Stage 4b: instance labels from the prediction, blockwise with globally consistent ids
# (unet.segmentation.run): an OME-Zarr label image beside the prediction, resumable per block.
# With segment.shards > 1 the watershed pass is split into separate jobs (SLURM: one each):
# `segment_prepare` prepares the output, `segment_shard` computes the fragments of a block
# range, `segment_finalize` checks every block, merges across faces, relabels and moves it into
# place. Each job's time and memory go to logs/benchmarks/<dataset>/ (as predict's).

if config["segment"]["shards"] == 1:

    rule segment:
        input:
            prediction=f"{RESULTS}/{{dataset}}/prediction.zarr",
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
            prediction=f"{RESULTS}/{{dataset}}/prediction.zarr",
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
            prediction=f"{RESULTS}/{{dataset}}/prediction.zarr",
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
            prediction=f"{RESULTS}/{{dataset}}/prediction.zarr",
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
