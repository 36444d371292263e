# Stage 4: exact overlap-tile prediction with Dask, resumable per block. With predict.shards > 1
# the volume is split into separate jobs (SLURM: one GPU job each, `--slurm-array-jobs`-ready)
# that fill one output: `predict_prepare` prepares it, `predict_shard` runs block ranges,
# `predict_finalize` checks every block, builds the pyramid and moves it into place.
# Each job's time and memory go to logs/benchmarks/<dataset>/ (Snakemake's benchmark TSV).

# With predict.cluster: slurm the predict job only runs the Dask scheduler; dask-jobqueue submits
# the GPU workers (predict.slurm options), so that job asks for no GPU itself.

if config["predict"]["shards"] == 1:

    rule predict:
        input:
            unpack(predict_inputs),
        output:
            directory(f"{RESULTS}/{{dataset}}/prediction.zarr"),
        log:
            "logs/predict/{dataset}.log",
        benchmark:
            "logs/benchmarks/{dataset}/predict.tsv"
        conda:
            "../envs/unet.yaml"
        threads: dataset_threads("predict")
        resources:
            **dataset_res("predict", gpu=predict_gpus),
        params:
            step="all",
            predict=setting("predict"),
            slices=lambda w: DATASETS[w.dataset]["predict_slices"],
        script:
            "../../scripts/predict.py"

else:

    rule predict_prepare:
        input:
            unpack(predict_inputs),
        output:
            f"{WORK}/{{dataset}}/predict/layout.json",
        log:
            "logs/predict/{dataset}.log",
        benchmark:
            "logs/benchmarks/{dataset}/predict_prepare.tsv"
        conda:
            "../envs/unet.yaml"
        resources:
            **dataset_res("predict", gpu=0),
        params:
            step="prepare",
            out=lambda w: f"{RESULTS}/{w.dataset}/prediction.zarr",
            predict=setting("predict"),
            slices=lambda w: DATASETS[w.dataset]["predict_slices"],
        script:
            "../../scripts/predict.py"

    rule predict_shard:
        input:
            unpack(predict_inputs),
            layout=f"{WORK}/{{dataset}}/predict/layout.json",
        output:
            f"{WORK}/{{dataset}}/predict/shard-{{shard}}.json",
        log:
            "logs/predict/{dataset}-shard-{shard}.log",
        benchmark:
            "logs/benchmarks/{dataset}/predict_shard-{shard}.tsv"
        conda:
            "../envs/unet.yaml"
        threads: dataset_threads("predict")
        resources:
            **dataset_res("predict"),
        params:
            step="shard",
            out=lambda w: f"{RESULTS}/{w.dataset}/prediction.zarr",
            predict=setting("predict"),
            slices=lambda w: DATASETS[w.dataset]["predict_slices"],
        script:
            "../../scripts/predict.py"

    rule predict_finalize:
        input:
            unpack(predict_inputs),
            shards=expand(
                f"{WORK}/{{{{dataset}}}}/predict/shard-{{shard}}.json",
                shard=range(config["predict"]["shards"]),
            ),
        output:
            directory(f"{RESULTS}/{{dataset}}/prediction.zarr"),
        log:
            "logs/predict/{dataset}-finalize.log",
        benchmark:
            "logs/benchmarks/{dataset}/predict_finalize.tsv"
        conda:
            "../envs/unet.yaml"
        resources:
            **dataset_res("predict", gpu=0),
        params:
            step="finalize",
            predict=setting("predict"),
            slices=lambda w: DATASETS[w.dataset]["predict_slices"],
        script:
            "../../scripts/predict.py"
