# Stage 2: labels -> instances -> border weight maps (Dask over Zarr chunks, with halo).


rule weights:
    input:
        f"{WORK}/{{dataset}}/labels.zarr",
    output:
        directory(f"{WORK}/{{dataset}}/weights.zarr"),
    log:
        "logs/weights/{dataset}.log",
    conda:
        "../../environment.yml"
    threads: res("weights")["cpus_per_task"]
    resources:
        **res("weights"),
    params:
        weights=lookup(dpath="weights", within=config),
        from_mask=lambda w: DATASETS[w.dataset]["labels_format"] == "binary",
    script:
        "../../scripts/weights.py"
