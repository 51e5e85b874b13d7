"""Knowledge distillation (classification: logit KD with the spec's LAMBDA and TEMPERATURE).

    distill(dataset_dir, output_dir, ModelConfig(...student...), TrainConfig(...), DistillConfig(...),
            teacher_dir=None) -> the student's torch-module artifact
"""

from visioncompress.distill.classification import distill, kd_loss

__all__ = ["distill", "kd_loss"]
