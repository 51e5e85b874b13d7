"""Training: the one engine (both tasks), fine-tuning, losses, checkpoints, multi-process launch."""

from visioncompress.train.engine import ClassificationTask, DetectionTask, TrainResult, evaluate_top1, fit
from visioncompress.train.finetune import finetune, initial_model

__all__ = ["ClassificationTask", "DetectionTask", "TrainResult", "evaluate_top1", "finetune", "fit",
           "initial_model"]
