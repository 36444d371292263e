# Stage 5: score held-out slices as in the paper (ISBI 2012 metrics, IoU) and report.


rule evaluate:
    input:
        prediction=f"{RESULTS}/{{dataset}}/prediction.zarr",
        segmentation=f"{RESULTS}/{{dataset}}/segmentation.zarr",
        labels=f"{WORK}/{{dataset}}/labels.zarr",
        raw=f"{WORK}/{{dataset}}/raw.zarr",
        curve=lambda w: f"{RESULTS}/{model_of(w.dataset)}/model/curve.png",
    output:
        scores=f"{RESULTS}/{{dataset}}/evaluation.json",
        overlay=report(
            f"{RESULTS}/{{dataset}}/overlay.png",
            caption="../report/overlay.rst",
            category="Evaluation",
        ),
        report=f"{RESULTS}/{{dataset}}/report.html",
    log:
        "logs/evaluate/{dataset}.log",
    conda:
        "../envs/unet.yaml"
    threads: dataset_threads("evaluate")
    resources:
        **dataset_res("evaluate"),
    params:
        evaluate=setting("evaluate"),
        slices=lambda w: DATASETS[w.dataset]["eval_slices"],
    script:
        "../../scripts/evaluate.py"


rule scores:
    input:
        expand(f"{RESULTS}/{{dataset}}/evaluation.json", dataset=evaluated()),
    output:
        report(
            f"{RESULTS}/scores.md",
            caption="../report/scores.rst",
            category="Evaluation",
        ),
    log:
        "logs/scores.log",
    localrule: True
    conda:
        "../envs/unet.yaml"
    script:
        "../../scripts/scores.py"
