# Stage 3: train the U-Net on patches of the training slices (GPU job; resumes from its state file).


rule train:
    input:
        raw=f"{WORK}/{{dataset}}/raw.zarr",
        labels=f"{WORK}/{{dataset}}/labels.zarr",
        weights=f"{WORK}/{{dataset}}/weights.zarr",
    output:
        model=f"{RESULTS}/{{dataset}}/model/model.pt",
        metrics=f"{RESULTS}/{{dataset}}/model/metrics.csv",
        curve=report(
            f"{RESULTS}/{{dataset}}/model/curve.png",
            caption="../report/curve.rst",
            category="Training",
        ),
    log:
        "logs/train/{dataset}.log",
    benchmark:
        "logs/benchmarks/{dataset}/train.tsv"
    conda:
        "../envs/unet.yaml"
    threads: dataset_threads("train")
    resources:
        **dataset_res("train"),
    params:
        model=setting("model"),
        train=setting("train"),
        train_slices=lambda w: DATASETS[w.dataset]["train_slices"],
        val_slices=lambda w: val_slices(w.dataset),
        # outside the declared outputs, so a retried job finds it and resumes
        state=f"{WORK}/{{dataset}}/train_state.pt",
    script:
        "../../scripts/train.py"
