# Stage 1: TIFF / Zarr -> chunked, compressed OME-Zarr (raw and labels).


rule ingest_raw:
    input:
        lambda w: DATASETS[w.dataset]["raw"],
    output:
        directory(f"{WORK}/{{dataset}}/raw.zarr"),
    log:
        "logs/ingest_raw/{dataset}.log",
    conda:
        "../envs/unet.yaml"
    threads: dataset_threads("ingest")
    resources:
        **dataset_res("ingest"),
    params:
        kind="raw",
        voxel_size=lambda w: DATASETS[w.dataset]["voxel_size"],
        chunks=setting("ingest/chunks"),
        shards=setting("ingest/shards"),
        pyramid_levels=setting("ingest/pyramid_levels"),
        rescale=setting("ingest/rescale"),
        percentiles=setting("ingest/percentiles"),
    script:
        "../../scripts/ingest.py"


rule ingest_labels:
    input:
        src=lambda w: DATASETS[w.dataset]["labels"],
        like=f"{WORK}/{{dataset}}/raw.zarr",
    output:
        directory(f"{WORK}/{{dataset}}/labels.zarr"),
    log:
        "logs/ingest_labels/{dataset}.log",
    conda:
        "../envs/unet.yaml"
    threads: dataset_threads("ingest")
    resources:
        **dataset_res("ingest"),
    params:
        kind=lambda w: DATASETS[w.dataset]["labels_format"],
        membrane_value=lambda w: DATASETS[w.dataset]["membrane_value"],
        voxel_size=lambda w: DATASETS[w.dataset]["voxel_size"],
        chunks=setting("ingest/chunks"),
        shards=setting("ingest/shards"),
        pyramid_levels=setting("ingest/pyramid_levels"),
    script:
        "../../scripts/ingest.py"
