"""Reading a dataset artifact back: normalised batches for torch, numpy runtimes and calibration."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from visioncompress.artifacts import DatasetManifest, read_dataset_manifest
from visioncompress.errors import ArtifactError


@dataclass
class PreparedDataset:
    directory: Path
    manifest: DatasetManifest

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        path = self.directory / f"{split}.npz"
        if not path.is_file():
            raise ArtifactError(f"dataset artifact {self.directory} has no split {split!r}")
        with np.load(path) as data:
            return data["images"], data["labels"]

    def normalise(self, images: np.ndarray) -> np.ndarray:
        """uint8 N x H x W x C -> float32 N x 3 x H x W, normalised as the manifest says."""
        x = images.astype(np.float32) / 255.0
        if x.shape[-1] == 1:
            x = np.repeat(x, 3, axis=-1)
        x = (x - np.asarray(self.manifest.mean, np.float32)) / np.asarray(self.manifest.std, np.float32)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))

    def batches(self, split: str, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                limit: int = 0, drop_last: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        images, labels = self.arrays(split)
        order = np.random.default_rng(seed).permutation(len(labels)) if shuffle else np.arange(len(labels))
        if limit:
            order = order[:limit]
        stop = len(order) - (len(order) % batch_size if drop_last else 0)
        for start in range(0, stop, batch_size):
            idx = order[start : start + batch_size]
            yield self.normalise(images[idx]), labels[idx]

    def torch_batches(self, split: str, batch_size: int, **kwargs):
        import torch

        for x, y in self.batches(split, batch_size, **kwargs):
            yield torch.from_numpy(x), torch.from_numpy(y)

    def example_input(self, batch_size: int = 1) -> np.ndarray:
        x, _ = next(self.batches("calibration", batch_size))
        return x


def load_dataset(directory: str | os.PathLike) -> PreparedDataset:
    return PreparedDataset(Path(directory), read_dataset_manifest(directory))
