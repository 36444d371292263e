# Stage 4b: instance labels from the prediction, blockwise with globally consistent ids
# (unet.segmentation.run): an OME-Zarr label image beside the prediction, resumable per block.
# The job's time and memory go to logs/benchmarks/<dataset>/segment.tsv (as predict's).


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
        segment=setting("segment"),
    script:
        "../../scripts/segment.py"
