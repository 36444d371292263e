# `snakemake doctor`: a short GPU job that reports versions, the GPU, the measured throughput of
# the configured model and the resulting runtime estimates for the configured volumes.


rule doctor:
    input:
        expand(f"{WORK}/{{dataset}}/raw.zarr", dataset=DATASETS),
    output:
        f"{RESULTS}/doctor.txt",
    log:
        "logs/doctor.log",
    conda:
        "../envs/unet.yaml"
    threads: res("train")["cpus_per_task"]
    resources:
        **{**res("train"), "runtime": 15},
    params:
        model=lookup(dpath="model", within=config),
        train=lookup(dpath="train", within=config),
    script:
        "../../scripts/doctor.py"
