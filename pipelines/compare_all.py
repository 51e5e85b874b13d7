"""Compare everything: fine-tune once, then every CPU compression side by side in one report.

PTQ for PyTorch, ONNX Runtime, OpenVINO and TensorRT (GPU node; skipped with a notice in local runs
without CUDA); QAT for PyTorch and OpenVINO; distillation of STUDENT_MODEL
from the fine-tuned model; structured pruning of the fine-tuned model.
"""

from kfp import dsl
from kfp.dsl import Markdown

from components.distill.component import distill
from components.prune.component import prune
from components.qat_openvino.component import qat_openvino
from components.qat_torch.component import qat_torch
from components.quantize_onnx.component import quantize_onnx
from components.quantize_openvino.component import quantize_openvino
from components.quantize_torch.component import quantize_torch
from pipelines._steps import measure, prepare_data_and_model, summarize
from pipelines._tensorrt_steps import tensorrt_steps
from pipelines.placement import on_cpu


@dsl.pipeline(name="visioncompress-compare-all",
              description="Fine-tune once; PTQ x3, QAT x2, distillation and pruning side by side in one report.")
def compare_all(
    insize: int = 32,
    BATCH_SIZE: int = 1,
    TRAINING: bool = True,
    VALIDATE: bool = True,
    VALIDATION_INTERVAL: int = 1,
    CRITERION: str = "CrossEntropyLoss",
    LEARNING_RATE: float = 0.001,
    FINETUNE_EPOCHS: int = 1,
    OPTIMIZER: str = "Adam",
    PRETRAINED: bool = False,
    choice: str = "static",
    quant_format: str = "QuantFormat.QDQ",
    per_channel: bool = False,
    activation_type: str = "QuantType.QInt8",
    weight_type: str = "QuantType.QInt8",
    TRANSFORMER: bool = True,
    QAT_EPOCHS: int = 1,
    QAT_LEARNING_RATE: float = 0.0001,
    STUDENT_MODEL: str = "mobilenet_v2",
    EPOCHS: int = 20,
    LR: float = 0.01,
    LAMBDA: float = 0.5,
    TEMPERATURE: float = 20,
    WEIGHT_DECAY: float = 0.0005,
    PRUNER_NAME: str = "GroupNormPruner",
    GROUP_IMPORTANCE: str = "GroupNormImportance",
    TARGET_PRUNE_RATE: float = 0.5,
    SEED: int = 43,
    FP16_FALLBACK: bool = True,
    DYNAMIC_BATCH: bool = False,
    MAX_BATCH_SIZE: int = 32,
    WORKSPACE_MB: int = 1024,
    CALIBRATION_BATCH_SIZE: int = 32,
    CALIBRATION_METHOD: str = "MinMax",
    TENSORRT_OPTIONAL: bool = False,
    MODEL: str = "resnet18",
    CUSTOM_MODEL_PATH: str = "",
    DATASET_SOURCE: str = "fashion-mnist",
    DATASET_NAME: str = "",
    DATASET_PATH: str = "",
    MAX_TRAIN_SAMPLES: int = 0,
    MAX_TEST_SAMPLES: int = 0,
    CALIBRATION_SAMPLES: int = 512,
    DESTINATION: str = "",
    ACCURACY_BUDGET: float = 1.0,
    RUN_DATE: str = "",
    PUBLISH_OVER_BUDGET: bool = False,
    KEEP_LAST: int = 0,
) -> Markdown:
    data, model = prepare_data_and_model(locals())
    fp32, dataset = model.outputs["model"], data.outputs["dataset"]
    torch_q = on_cpu(quantize_torch(model=fp32, dataset=dataset, choice=choice, BATCH_SIZE=BATCH_SIZE))
    onnx_q = on_cpu(quantize_onnx(model=fp32, dataset=dataset, quant_format=quant_format, per_channel=per_channel,
                                  activation_type=activation_type, weight_type=weight_type, BATCH_SIZE=BATCH_SIZE))
    openvino_q = on_cpu(quantize_openvino(model=fp32, dataset=dataset, TRANSFORMER=TRANSFORMER))
    torch_q.set_display_name("PTQ torch")
    onnx_q.set_display_name("PTQ ONNX Runtime")
    openvino_q.set_display_name("PTQ OpenVINO (NNCF)")
    qat_t = on_cpu(qat_torch(model=fp32, dataset=dataset, QAT_EPOCHS=QAT_EPOCHS,
                             QAT_LEARNING_RATE=QAT_LEARNING_RATE, BATCH_SIZE=BATCH_SIZE, OPTIMIZER=OPTIMIZER,
                             SEED=SEED)).set_display_name("QAT torch")
    qat_ov = on_cpu(qat_openvino(model=fp32, dataset=dataset, QAT_EPOCHS=QAT_EPOCHS,
                                 QAT_LEARNING_RATE=QAT_LEARNING_RATE, BATCH_SIZE=BATCH_SIZE, TRANSFORMER=TRANSFORMER,
                                 OPTIMIZER=OPTIMIZER, SEED=SEED)).set_display_name("QAT OpenVINO (NNCF)")
    student = on_cpu(distill(dataset=dataset, teacher=fp32, MODEL=STUDENT_MODEL, EPOCHS=EPOCHS, LR=LR,
                             LAMBDA=LAMBDA, TEMPERATURE=TEMPERATURE, WEIGHT_DECAY=WEIGHT_DECAY, BATCH_SIZE=BATCH_SIZE,
                             OPTIMIZER=OPTIMIZER, SEED=SEED)).set_display_name("distill")
    pruned = on_cpu(prune(model=fp32, dataset=dataset, PRUNER_NAME=PRUNER_NAME, GROUP_IMPORTANCE=GROUP_IMPORTANCE,
                          TARGET_PRUNE_RATE=TARGET_PRUNE_RATE, TRAINING=TRAINING,
                          FINETUNE_EPOCHS=FINETUNE_EPOCHS, LEARNING_RATE=LEARNING_RATE, OPTIMIZER=OPTIMIZER,
                          BATCH_SIZE=BATCH_SIZE, SEED=SEED)).set_display_name("prune")
    _, trt_engine, trt_results = tensorrt_steps(
        fp32, data, BATCH_SIZE=BATCH_SIZE, FP16_FALLBACK=FP16_FALLBACK, DYNAMIC_BATCH=DYNAMIC_BATCH,
        MAX_BATCH_SIZE=MAX_BATCH_SIZE, WORKSPACE_MB=WORKSPACE_MB, CALIBRATION_BATCH_SIZE=CALIBRATION_BATCH_SIZE,
        CALIBRATION_METHOD=CALIBRATION_METHOD, TENSORRT_OPTIONAL=TENSORRT_OPTIONAL)
    outputs = {
        "torch_ptq": torch_q.outputs["quantized_model"], "onnx_ptq": onnx_q.outputs["quantized_model"],
        "openvino_ptq": openvino_q.outputs["quantized_model"], "torch_qat": qat_t.outputs["quantized_model"],
        "openvino_qat": qat_ov.outputs["quantized_model"], "distilled": student.outputs["distilled_model"],
        "pruned": pruned.outputs["pruned_model"],
    }
    variants = {"torch_qat": "qat-int8", "openvino_qat": "qat-int8", "distilled": "distilled", "pruned": "pruned"}
    results = {name: measure(output, data, BATCH_SIZE=BATCH_SIZE, name=name.replace("_", " "),
                             variant=variants.get(name, "")) for name, output in outputs.items()}
    results["tensorrt_ptq"] = trt_results
    outputs["tensorrt_ptq"] = trt_engine.outputs["engine"]
    results["fp32"] = measure(fp32, data, BATCH_SIZE=BATCH_SIZE, name="FP32",
                              fp32_runtimes=["torch", "onnxruntime", "openvino"])
    return summarize(locals(), results, outputs, title="Every CPU compression compared")
