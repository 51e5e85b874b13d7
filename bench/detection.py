"""Detection rows of `make bench`: the offline detection set at 96x96, fcos_resnet18_fpn fine-tuned by our own
stage; ONNX Runtime INT8 (the spec's S8S8 and the U8S8 per-channel form), OpenVINO INT8 after one QAT epoch,
GroupFisher pruning to half the FLOPs, and PKD distillation against the same student trained alone."""

from __future__ import annotations

from pathlib import Path

from visioncompress.benchmark import benchmark
from visioncompress.config import (
    BenchmarkConfig, DataConfig, DistillConfig, GroupFisherConfig, ModelConfig, OnnxPTQConfig, OpenVinoQATConfig,
    TrainConfig,
)
from visioncompress.data import prepare_dataset
from visioncompress.detection.prune import prune_detector
from visioncompress.distill import distill
from visioncompress.quantize import quantize, quantize_aware
from visioncompress.train import finetune

DATA = DataConfig(source="fashion-mnist-detection", insize=96, max_train_samples=1500, max_test_samples=300,
                  calibration_samples=128)
MODEL = ModelConfig(model="fcos_resnet18_fpn")
TRAIN = TrainConfig(batch_size=8, finetune_epochs=6, learning_rate=0.001)
MEASURE = BenchmarkConfig(batch_size=8, extra_batch_sizes=[], warmup=5, iterations=100, time_budget_s=15)
STUDENT_EPOCHS = 2
ONNX = [("onnx-int8-s8s8", "int8", OnnxPTQConfig(batch_size=8)),
        ("onnx-int8-u8s8", "int8-u8s8", OnnxPTQConfig(batch_size=8, activation_type="QuantType.QUInt8",
                                                       per_channel=True))]
QAT = OpenVinoQATConfig(qat_epochs=1, batch_size=8, transformer=False, subset_size=128)
PRUNE = GroupFisherConfig(interval=5, norm_type="flops", target_flop_ratio=0.5, epochs=2)
KD = DistillConfig(teacher_model="fcos_resnet18_fpn", method="pkd", epochs=STUDENT_EPOCHS, lr=0.001)


def run_detection(artifacts: Path, ensure) -> list[dict]:
    artifacts = artifacts / "detection"
    dataset = ensure(artifacts / "dataset", lambda p: prepare_dataset(DATA, p))
    fp32 = ensure(artifacts / "fp32", lambda p: finetune(dataset, p, MODEL, TRAIN))
    rows = benchmark(fp32, dataset, MEASURE, fp32_runtimes=("onnxruntime", "openvino"))
    for folder, label, config in ONNX:
        model = ensure(artifacts / folder, lambda p, c=config: quantize(fp32, dataset, p, c))
        rows += benchmark(model, dataset, MEASURE, variant=label)
    qat = ensure(artifacts / "openvino-qat-int8", lambda p: quantize_aware(fp32, dataset, p, QAT, TRAIN))
    rows += benchmark(qat, dataset, MEASURE, variant="qat-int8")
    pruned = ensure(artifacts / "pruned-flops-50", lambda p: prune_detector(fp32, dataset, p, PRUNE, TRAIN))
    rows += benchmark(pruned, dataset, MEASURE, variant="pruned-50")
    student_train = TrainConfig(batch_size=8, finetune_epochs=STUDENT_EPOCHS, learning_rate=0.001)
    alone = ensure(artifacts / "student-alone", lambda p: finetune(dataset, p, MODEL, student_train))
    rows += benchmark(alone, dataset, MEASURE, variant="student-alone")
    student = ensure(artifacts / "student-pkd", lambda p: distill(
        dataset, p, MODEL, TrainConfig(batch_size=8, training=False), KD, teacher_dir=fp32))
    rows += benchmark(student, dataset, MEASURE, variant="distilled-pkd")
    return rows
