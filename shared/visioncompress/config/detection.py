"""Detection-only parameters: the spec's structured-pruning table for object detection."""

from __future__ import annotations

from dataclasses import dataclass

from visioncompress.config._fields import check_choice, check_float, check_int, param
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
