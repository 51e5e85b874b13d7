"""Step groups that several pipelines share: data + model preparation, and benchmarking."""

from __future__ import annotations

from components.benchmark.component import benchmark
from components.data_prep.component import data_prep
from components.finetune.component import finetune
from components.report.component import report
from pipelines.placement import on_cpu
from pipelines.publish_step import add_publish, with_storage_access


DATA_PARAMS = ("insize", "DATASET_SOURCE", "DATASET_NAME", "DATASET_PATH", "MAX_TRAIN_SAMPLES", "MAX_TEST_SAMPLES",
               "CALIBRATION_SAMPLES")
MODEL_PARAMS = ("MODEL", "PRETRAINED", "CUSTOM_MODEL_PATH", "TRAINING", "VALIDATE", "VALIDATION_INTERVAL",
                "CRITERION", "LEARNING_RATE", "FINETUNE_EPOCHS", "OPTIMIZER", "BATCH_SIZE")


def pick(params: dict, names) -> dict:
    return {k: params[k] for k in names if k in params}


def prepare_data_and_model(params: dict):
    """Data preparation and the FP32 model, from a pipeline's parameters (pass ``locals()``)."""
    data = data_prep(**pick(params, DATA_PARAMS))
    data.set_display_name("prepare data").set_caching_options(True)
    on_cpu(data)
    with_storage_access(data, optional=True)  # DATASET_PATH may be s3:// or minio://
    model = finetune(dataset=data.outputs["dataset"], **pick(params, MODEL_PARAMS))
    model.set_display_name("fine-tune (FP32)")
    on_cpu(model)
    with_storage_access(model, optional=True)  # CUSTOM_MODEL_PATH may be s3:// or minio://
    return data, model


def measure(model_artifact, data_task, *, BATCH_SIZE, name: str, fp32_runtimes=(), variant: str = ""):
    task = benchmark(model=model_artifact, dataset=data_task.outputs["dataset"], BATCH_SIZE=BATCH_SIZE,
                     FP32_RUNTIMES=list(fp32_runtimes), VARIANT=variant)
    task.set_display_name(f"benchmark {name}")
    on_cpu(task)
    return task.outputs["results"]


def summarize(params: dict, results: dict, models: dict, *, title: str):
    """The comparison report over ``results`` and, when DESTINATION is set, publishing ``models``."""
    task = report(**results, TITLE=title).set_display_name("report")
    on_cpu(task, cpu="500m", memory="1G")
    add_publish(task, models, destination=params["DESTINATION"], accuracy_budget=params["ACCURACY_BUDGET"],
                run_date=params["RUN_DATE"], publish_over_budget=params.get("PUBLISH_OVER_BUDGET", False),
                keep_last=params.get("KEEP_LAST", 0))
    return task.outputs["report"]
