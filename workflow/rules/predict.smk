# Stage 4: exact overlap-tile prediction with Dask, resumable per block; optionally sharded into
# separate (SLURM array) jobs that fill one output volume.


rule predict:
    input:
        unpack(predict_inputs),
    output:
        directory(f"{RESULTS}/{{dataset}}/prediction.zarr"),
    log:
        "logs/predict/{dataset}.log",
    params:
        predict=lookup(dpath="predict", within=config),
        slices=lambda w: DATASETS[w.dataset]["predict_slices"],
    threads: res("predict")["cpus_per_task"]
    resources:
        **res("predict"),
    conda:
        "../../environment.yml"
    script:
        "../../scripts/predict.py"
