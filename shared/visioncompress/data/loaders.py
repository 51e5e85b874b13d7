"""Reading a dataset artifact back: normalised batches for torch, numpy runtimes and calibration."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from visioncompress.artifacts import DatasetManifest, read_dataset_manifest
from visioncompress.errors import ArtifactError


class ShardedBatches:
    """Batches of one rank's disjoint, equal-length shard of a split of ``size`` items; ``len()`` without
    reading anything. ``load(list of index arrays)`` yields the batches."""

    def __init__(self, size: int, batch_size: int, load, *, train: bool = False, seed: int = 0, epoch: int = 0,
                 drop_last: bool = False, rank: int = 0, world_size: int = 1, limit: int = 0):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.size, self.batch_size, self._load = min(size, limit) if limit else size, batch_size, load
        self.train, self.seed, self.epoch, self.drop_last = train, seed, epoch, drop_last
        self.rank, self.world_size, self.full = rank, world_size, size

    def _shard(self) -> int:
        return self.size // self.world_size if self.world_size > 1 else self.size

    def __len__(self) -> int:
        n = self._shard()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def indices(self) -> list[np.ndarray]:
        order = (np.random.default_rng(self.seed + self.epoch).permutation(self.full) if self.train
                 else np.arange(self.full))[: self.size]
        if self.world_size > 1:
            order = order[: self._shard() * self.world_size][self.rank :: self.world_size]
        return [order[i : i + self.batch_size] for i in range(0, len(self) * self.batch_size, self.batch_size)]

    def __iter__(self):
        return iter(self._load(self.indices()))


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

    def loader(self, split: str, batch_size: int, *, train: bool = False, seed: int = 0, epoch: int = 0,
               drop_last: bool = False, workers: int = 0, pin_memory: bool = False, rank: int = 0,
               world_size: int = 1, limit: int = 0) -> "ShardedBatches":
        """The training engine's batches: (x float32 N x 3 x H x W normalised, y int64 N) torch tensors of this
        rank's shard; ``train`` shuffles (order a function of seed and epoch). Workers and pinning are not used
        by this in-memory form."""
        import torch

        def load(index: np.ndarray):
            images, labels = self.arrays(split)
            for idx in index:
                yield torch.from_numpy(self.normalise(images[idx])), torch.from_numpy(labels[idx].astype(np.int64))

        return ShardedBatches(int(self.manifest.splits.get(split, 0)), batch_size, load, train=train, seed=seed,
                              epoch=epoch, drop_last=drop_last, rank=rank, world_size=world_size, limit=limit)

    def example_input(self, batch_size: int = 1) -> np.ndarray:
        x, _ = next(self.batches("calibration", batch_size))
        return x


def load_dataset(directory: str | os.PathLike) -> PreparedDataset:
    return PreparedDataset(Path(directory), read_dataset_manifest(directory))
