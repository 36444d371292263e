# Stage 4b: instance labels from the prediction, blockwise with globally consistent ids
# (unet.segmentation.run): an OME-Zarr label image beside the prediction, resumable per block.


rule segment:
    input:
        prediction=f"{RESULTS}/{{dataset}}/prediction.zarr",
    output:
        directory(f"{RESULTS}/{{dataset}}/segmentation.zarr"),
    log:
        "logs/segment/{dataset}.log",
    conda:
        "../../environment.yml"
    threads: dataset_threads("segment")
    resources:
        **dataset_res("segment"),
    params:
        segment=setting("segment"),
    script:
        "../../scripts/segment.py"
