"""Detection-only parameters: the spec's structured-pruning table for object detection."""

from __future__ import annotations

from dataclasses import dataclass

from visioncompress.config._fields import check_choice, check_float, check_int, spec_field
from visioncompress.errors import ConfigError

NORM_TYPES = ("act", "flops")


@dataclass
class GroupFisherConfig:
    interval: int = spec_field(10, "INTERVAL", help="training iterations between two pruning steps")
    norm_type: str = spec_field("act", "NORM_TYPE", help="act: Fisher importance per unit of activation memory; "
                                "flops: per unit of FLOPs")
    lr_ratio: float = spec_field(0.1, "LR_RATIO", help="learning-rate factor while pruning is under way")
    target_flop_ratio: float = spec_field(0.5, "TARGET_FLOP_RATIO", help="share of the FLOPs to keep, in (0, 1)")
    epochs: int = spec_field(20, "EPOCHS", help="training epochs (pruning in the first half, recovery after)")

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
