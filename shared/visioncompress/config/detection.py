"""Detection-only parameters: the spec's structured-pruning table for object detection."""

from __future__ import annotations

from dataclasses import dataclass

from visioncompress.config._fields import check_bool, check_choice, check_float, check_int, param
from visioncompress.errors import ConfigError

NORM_TYPES = ("act", "flops")


@dataclass
class GroupFisherConfig:
    interval: int = param('INTERVAL')
    norm_type: str = param('NORM_TYPE')
    lr_ratio: float = param('LR_RATIO')
    target_flop_ratio: float = param('TARGET_FLOP_RATIO')
    epochs: int = param('EPOCHS')

    def __post_init__(self) -> None:
        self.interval = check_int("INTERVAL", self.interval, minimum=1)
        self.norm_type = check_choice("NORM_TYPE", self.norm_type, NORM_TYPES)
        self.lr_ratio = check_float("LR_RATIO", self.lr_ratio, low=0.0, low_open=True)
        if isinstance(self.target_flop_ratio, bool) or not isinstance(self.target_flop_ratio, (int, float)) or \
                not 0 < self.target_flop_ratio < 1:
            raise ConfigError("TARGET_FLOP_RATIO", self.target_flop_ratio, "a number in (0, 1): the share of FLOPs "
                              "the pruned model keeps")
        self.target_flop_ratio = float(self.target_flop_ratio)
        self.epochs = check_int("EPOCHS", self.epochs, minimum=1)


@dataclass
class DetectionPostConfig:
    """Post-processing inside an exported detector (nyuntam_vision's names); see detection.export."""

    use_default: bool = param('USE_DEFAULT_POST_PROCESSING')
    score_threshold: float = param('SCORE_THRESHOLD')
    iou: float = param('IOU')
    nms_pre: int = param('NMS_PRE')
    max_per_image: int = param('MAX_BBOX_PER_IMG')
    max_per_class: int = param('MAX_BBOX_PER_CLS')
    min_size: float = param('MIN_BBOX_SIZE')

    def __post_init__(self) -> None:
        self.use_default = check_bool("USE_DEFAULT_POST_PROCESSING", self.use_default)
        self.score_threshold = check_float("SCORE_THRESHOLD", self.score_threshold, low=0.0, high=1.0, high_open=True)
        self.iou = check_float("IOU", self.iou, low=0.0, high=1.0, low_open=True)
        self.nms_pre = check_int("NMS_PRE", self.nms_pre, minimum=1)
        self.max_per_image = check_int("MAX_BBOX_PER_IMG", self.max_per_image, minimum=1)
        self.max_per_class = check_int("MAX_BBOX_PER_CLS", self.max_per_class, minimum=0)
        self.min_size = check_float("MIN_BBOX_SIZE", self.min_size, low=0.0)
