"""Datasets: sources, preparation into the dataset artifact, and loaders."""

from visioncompress.data.loaders import PreparedDataset, load_dataset
from visioncompress.data.prepare import prepare_dataset

__all__ = ["PreparedDataset", "load_dataset", "prepare_dataset"]
