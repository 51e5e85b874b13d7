"""Training: fine-tuning, the shared loop, losses."""

from visioncompress.train.finetune import finetune, initial_model
from visioncompress.train.loop import TrainResult, evaluate_top1, train

__all__ = ["TrainResult", "evaluate_top1", "finetune", "initial_model", "train"]
