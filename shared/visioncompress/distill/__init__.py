"""Knowledge distillation: classification (logit KD with the spec's LAMBDA and TEMPERATURE) and
detection (feature KD, METHOD pkd or cwd, on FPN levels).

    distill(dataset_dir, output_dir, ModelConfig(...student...), TrainConfig(...), DistillConfig(...),
            teacher_dir=None) -> the student's torch-module artifact
"""

from visioncompress.artifacts import read_dataset_manifest
from visioncompress.distill.classification import distill as distill_classifier
from visioncompress.distill.classification import kd_loss


def distill(dataset_dir, output_dir, student_model_config, train_config, config, **kwargs):
    if read_dataset_manifest(dataset_dir).task == "detection":
        from visioncompress.detection.distill import distill_detector

        return distill_detector(dataset_dir, output_dir, student_model_config, train_config, config, **kwargs)
    return distill_classifier(dataset_dir, output_dir, student_model_config, train_config, config, **kwargs)


__all__ = ["distill", "kd_loss"]
