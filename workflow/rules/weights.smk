# Stage 2: labels -> instances -> border weight maps (Dask over Zarr chunks, with halo).


rule weights:
    input:
        f"{WORK}/{{dataset}}/labels.zarr",
    output:
        directory(f"{WORK}/{{dataset}}/weights.zarr"),
    log:
        "logs/weights/{dataset}.log",
    benchmark:
        "logs/benchmarks/{dataset}/weights.tsv"
    conda:
        "../envs/unet.yaml"
    threads: dataset_threads("weights")
    resources:
        **dataset_res("weights"),
    params:
        weights=setting("weights"),
        from_mask=lambda w: DATASETS[w.dataset]["labels_format"] == "binary",
        # class balance counted on the training slices only (None: a dataset that does not train)
        count_slices=lambda w: DATASETS[w.dataset]["train_slices"],
        # the training target's separation border between touching instances (train section)
        separation=setting("train/separation"),
    script:
        "../../scripts/weights.py"
