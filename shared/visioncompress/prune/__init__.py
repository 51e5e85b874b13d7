"""Structured pruning of classifiers (torch-pruning).

    prune(model_dir, dataset_dir, output_dir, PruneConfig(...), TrainConfig(...)) -> pruned torch-module artifact
"""

from visioncompress.prune.classification import prune

__all__ = ["prune"]
