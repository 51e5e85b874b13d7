"""Structured pruning parameters (the spec's classification table, plus two of our own)."""

from __future__ import annotations

from dataclasses import dataclass

from visioncompress.config._fields import check_bool, check_choice, check_float, check_int, param
from visioncompress.errors import ConfigError

# The spec's pruner names -> torch-pruning 1.6 classes (tp.pruner.*). MetaPruner is an alias of BasePruner there.
PRUNERS = {"MetaPruner": "BasePruner", "GroupNormPruner": "GroupNormPruner", "BNSPruner": "BNScalePruner"}
# The spec's importance names -> (tp.importance class, keyword arguments). GroupNormImportance was renamed.
IMPORTANCES = {
    "GroupNormImportance": ("GroupMagnitudeImportance", {"p": 2}),
    "GroupTaylorImportance": ("GroupTaylorImportance", {}),
}
REGULARISING_PRUNERS = ("GroupNormPruner", "BNSPruner")
PRUNE_RECOVERIES = ("finetune", "distill")
PRUNE_TARGETS = ("params", "macs")
MAX_SPARSITY = 0.99  # a channel ratio of 1 would remove every channel
# Today's torch-pruning spellings are accepted too.
_ALIASES = {"basepruner": "MetaPruner", "bnscalepruner": "BNSPruner", "groupmagnitudeimportance": "GroupNormImportance"}


def _target_fraction(value) -> float:
    """TARGET_PRUNE_RATE as a fraction: 0 < x < 1 is a fraction, 1 <= x <= 99 a percentage."""
    allowed = "a fraction in (0, 1) or a percentage in [1, 99] of parameters (or MACs) to remove"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError("TARGET_PRUNE_RATE", value, allowed)
    if 0 < value < 1:
        return float(value)
    if 1 <= value <= 99:
        return float(value) / 100.0
    raise ConfigError("TARGET_PRUNE_RATE", value, allowed)


@dataclass
class PruneConfig:
    pruner_name: str = param('PRUNER_NAME')
    group_importance: str = param('GROUP_IMPORTANCE')
    target_prune_rate: float = param('TARGET_PRUNE_RATE')
    target: str = param('PRUNE_TARGET')
    bottleneck: bool = param('BOTTLENECK')
    prune_num_heads: bool = param('PRUNE_NUM_HEADS')
    iterative_steps: int = param('ITERATIVE_STEPS')
    round_to: int = param('ROUND_TO')
    sparsity_epochs: int = param('SPARSITY_EPOCHS')
    recovery: str = param('PRUNE_RECOVERY')
    sparsity: float = param('SPARSITY')
    iterative: bool = param('ITERATIVE')
    max_drop: float = param('MAX_DROP')

    def __post_init__(self) -> None:
        self.pruner_name = check_choice("PRUNER_NAME", _ALIASES.get(str(self.pruner_name).strip().lower(),
                                                                    self.pruner_name), PRUNERS)
        self.group_importance = check_choice("GROUP_IMPORTANCE", _ALIASES.get(
            str(self.group_importance).strip().lower(), self.group_importance), IMPORTANCES)
        self.target_prune_rate = _target_fraction(self.target_prune_rate)
        self.target = check_choice("PRUNE_TARGET", str(self.target).strip().lower(), PRUNE_TARGETS)
        self.bottleneck = check_bool("BOTTLENECK", self.bottleneck)
        self.prune_num_heads = check_bool("PRUNE_NUM_HEADS", self.prune_num_heads)
        self.iterative_steps = check_int("ITERATIVE_STEPS", self.iterative_steps, minimum=1, maximum=100)
        self.round_to = check_int("ROUND_TO", self.round_to, minimum=1, maximum=256)
        self.sparsity_epochs = check_int("SPARSITY_EPOCHS", self.sparsity_epochs, minimum=0)
        self.recovery = check_choice("PRUNE_RECOVERY", self.recovery, PRUNE_RECOVERIES)
        self.sparsity = check_float("SPARSITY", self.sparsity, low=0.0, high=MAX_SPARSITY)
        self.iterative = check_bool("ITERATIVE", self.iterative)
        self.max_drop = check_float("MAX_DROP", self.max_drop, low=0.0, high=1.0)
        if self.sparsity_epochs and self.pruner_name not in REGULARISING_PRUNERS:
            raise ConfigError("SPARSITY_EPOCHS", self.sparsity_epochs,
                              f"0 with PRUNER_NAME={self.pruner_name} (only {', '.join(REGULARISING_PRUNERS)} "
                              "have a sparsity regulariser)")
