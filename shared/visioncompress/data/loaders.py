"""Reading a dataset artifact back: batches decoded, resized and augmented on the fly.

Two storages sit behind one interface (``manifest.storage``):

- ``"files"`` (image folders, COCO): ``<split>.npz`` holds the split's definition only (``files``: paths relative
  to the source root, ``labels``); the images are read from the source (``manifest.source["root"]``: a local
  folder, an archive or an ``s3://``/``minio://`` URI, fetched once into the pod's cache, see ``data.cache``).
- ``"arrays"`` (Fashion-MNIST, torchvision sets, the offline detection set): ``<split>.npz`` holds the images as
  uint8 arrays at the source's own resolution (``images`` N x H x W x C), resized to ``insize`` on the fly.

``loader()`` is what training uses (shuffling, sharding, augmentation, DataLoader workers); ``batches()`` /
``torch_batches()`` / ``arrays()`` / ``example_input()`` serve calibration, benchmarks and evaluation in file order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from visioncompress.artifacts import DatasetManifest, read_dataset_manifest
from visioncompress.errors import ArtifactError, ConfigError


def shard_order(n: int, *, shuffle: bool, seed: int = 0, epoch: int = 0, rank: int = 0, world_size: int = 1,
                limit: int = 0, pad: bool = False) -> np.ndarray:
    """The image indices one rank reads, in order.

    Shuffled orders are ``default_rng(seed + epoch).permutation(n)`` (the same on every rank, new each epoch);
    ``limit`` keeps the first ``limit`` of them. With ``world_size`` > 1 every rank takes every
    ``world_size``-th index from ``rank`` on: shards are disjoint and equally long; the last
    ``n % world_size`` indices are dropped, or with ``pad`` the order is padded from its start (evaluation
    then sees every image, a few twice), as torch's DistributedSampler does.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError("NUM_PROCESSES", world_size, f"at least 1, with 0 <= rank ({rank}) < world size")
    order = np.random.default_rng(seed + epoch).permutation(n) if shuffle else np.arange(n)
    if limit:
        order = order[:limit]
    if world_size > 1:
        if pad and len(order) % world_size:
            extra = world_size - len(order) % world_size
            order = np.concatenate([order, np.resize(order, extra)])
        else:
            order = order[: len(order) - len(order) % world_size]
        order = order[rank::world_size]
    return order


class _Items:
    """A map-style dataset over one rank's order: item ``k`` is ``fetch(order[k])``."""

    def __init__(self, fetch: Callable[[int], Any], order: np.ndarray):
        self.fetch, self.order = fetch, order

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, position: int):
        return self.fetch(int(self.order[position]))


def _init_worker(_worker_id: int) -> None:
    import torch

    torch.set_num_threads(1)  # decoding workers must not compete with the training process's threads


def _without_sigchld_handler() -> None:
    """Keep torch's DataLoader from installing its process-wide SIGCHLD handler.

    torch installs it with the first worker processes (to report a worker that died at once) and never
    removes it, so every later child of the stage (``uname`` behind ``platform.processor()``, NNCF's
    extension compiler, a runtime's helper) runs it on exit; with OpenVINO loaded that crashed the process
    with SIGSEGV (measured in this project's test runs). A dead worker is still reported: the DataLoader
    checks its workers' liveness whenever it waits for a batch."""
    from torch.utils.data._utils import signal_handling

    signal_handling._SIGCHLD_handler_set = True


def make_loader(fetch: Callable[[int], Any], collate: Callable, n: int, batch_size: int, *, shuffle: bool,
                seed: int = 0, epoch: int = 0, drop_last: bool = False, workers: int = 0, pin_memory: bool = False,
                rank: int = 0, world_size: int = 1, limit: int = 0):
    """A torch DataLoader over ``fetch(index)`` for this rank's share of ``n`` images (``len()`` = its batches)."""
    import torch
    from torch.utils.data import DataLoader

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ConfigError("WORKERS", workers, "a whole number >= 0 (0 reads in the training process)")
    if batch_size < 1:
        raise ConfigError("BATCH_SIZE", batch_size, "a whole number >= 1")
    order = shard_order(n, shuffle=shuffle, seed=seed, epoch=epoch, rank=rank, world_size=world_size, limit=limit,
                        pad=not shuffle)
    if workers:
        _without_sigchld_handler()
    generator = torch.Generator()
    generator.manual_seed(abs(int(seed)) * 1000003 + int(epoch))  # DataLoader's worker seeds, deterministic
    loader = DataLoader(_Items(fetch, order), batch_size=batch_size, shuffle=False, drop_last=drop_last,
                        num_workers=workers, collate_fn=collate, pin_memory=pin_memory,
                        worker_init_fn=_init_worker if workers else None, generator=generator,
                        persistent_workers=False)
    return loader


@dataclass
class PreparedDataset:
    directory: Path
    manifest: DatasetManifest
    _splits: dict = field(default_factory=dict, repr=False)
    _root: Path | None = field(default=None, repr=False)

    # ---- storage -------------------------------------------------------------------------------------
    def _split(self, split: str) -> dict[str, np.ndarray]:
        if split not in self._splits:
            path = self.directory / f"{split}.npz"
            if not path.is_file():
                raise ArtifactError(f"dataset artifact {self.directory} has no split {split!r}")
            with np.load(path, allow_pickle=False) as data:
                self._splits[split] = {key: data[key] for key in data.files}
        return self._splits[split]

    def size(self, split: str) -> int:
        return len(self._split(split)["labels"])

    def source_root(self) -> Path:
        if self._root is None:
            from visioncompress.data.cache import local_root

            self._root = local_root(self.manifest.source["root"], self.manifest.source.get("fingerprint"))
        return self._root

    def image(self, split: str, index: int, *, train: bool = False, seed: int = 0, epoch: int = 0):
        """One image as a uint8 C x insize x insize tensor (C as stored), evaluation resize or augmented."""
        from visioncompress.data.transforms import classification_image, rng_for

        data, size = self._split(split), self.manifest.input_size
        rng = rng_for(seed, epoch, index) if train else None
        if self.manifest.storage == "files":
            from visioncompress.data.sources import open_rgb

            return classification_image(open_rgb(self.source_root(), str(data["files"][index])), size,
                                        train=train, rng=rng)
        import torch

        pixels = torch.from_numpy(np.ascontiguousarray(data["images"][index])).permute(2, 0, 1)
        return classification_image(pixels, size, train=train, rng=rng)

    def _fetch(self, split: str, train: bool, seed: int, epoch: int) -> Callable[[int], Any]:
        labels = self._split(split)["labels"]
        if self.manifest.storage == "files":
            self.source_root()  # resolved (fetched, checked) once here, not in every worker
        return _Fetch(self, split, train, seed, epoch, labels)

    def collate(self, items: list) -> tuple:
        """[(uint8 C x S x S, label)] -> (float32 N x 3 x S x S normalised, int64 N)."""
        import torch

        x = torch.stack([image for image, _ in items]).float().div_(255.0)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        mean = torch.tensor(self.manifest.mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(self.manifest.std, dtype=torch.float32).view(1, 3, 1, 1)
        return ((x - mean) / std).contiguous(), torch.tensor([label for _, label in items], dtype=torch.int64)

    # ---- the data contract ---------------------------------------------------------------------------
    def loader(self, split: str, batch_size: int, *, train: bool = False, seed: int = 0, epoch: int = 0,
               drop_last: bool = False, workers: int = 0, pin_memory: bool = False, rank: int = 0,
               world_size: int = 1, limit: int = 0):
        """Batches (x float32 N x 3 x S x S normalised, y int64 N) of this rank's shard of ``split``.

        ``train``: shuffled (a function of seed + epoch) with training augmentation; else file order, eval resize."""
        return make_loader(self._fetch(split, train, seed, epoch), self.collate, self.size(split), batch_size,
                           shuffle=train, seed=seed, epoch=epoch, drop_last=drop_last, workers=workers,
                           pin_memory=pin_memory, rank=rank, world_size=world_size, limit=limit)

    # ---- file-order access for calibration, benchmarks, evaluation ----------------------------------------
    def torch_batches(self, split: str, batch_size: int, *, shuffle: bool = False, seed: int = 0, limit: int = 0,
                      drop_last: bool = False, workers: int = 0):
        """Evaluation-transformed torch batches (``shuffle`` reorders them, without augmentation)."""
        return make_loader(self._fetch(split, False, seed, 0), self.collate, self.size(split), batch_size,
                           shuffle=shuffle, seed=seed, drop_last=drop_last, workers=workers, limit=limit)

    def batches(self, split: str, batch_size: int, **kwargs) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """numpy batches for the numpy runtimes (ONNX Runtime, OpenVINO, TensorRT)."""
        for x, y in self.torch_batches(split, batch_size, **kwargs):
            yield x.numpy(), y.numpy()

    def arrays(self, split: str, limit: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """uint8 N x H x W x C images and labels: the stored arrays (at the source's resolution, ``normalise``
        resizes them), or for file storage the images decoded at ``insize`` (use ``limit`` on large splits)."""
        data = self._split(split)
        n = min(limit, self.size(split)) if limit else self.size(split)
        if self.manifest.storage != "files":
            return data["images"][:n], data["labels"][:n]
        images = [self.image(split, i).permute(1, 2, 0).numpy() for i in range(n)]
        size = self.manifest.input_size
        return (np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8)), data["labels"][:n]

    def normalise(self, images: np.ndarray) -> np.ndarray:
        """uint8 N x H x W x C -> float32 N x 3 x S x S (resized to insize when needed), normalised."""
        import torch

        from visioncompress.data.transforms import resize_array

        batch = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
        if batch.shape[-1] != self.manifest.input_size or batch.shape[-2] != self.manifest.input_size:
            batch = resize_array(batch.reshape(-1, *batch.shape[2:]), self.manifest.input_size).reshape(
                batch.shape[0], batch.shape[1], self.manifest.input_size, self.manifest.input_size)
        x, _ = self.collate([(image, 0) for image in batch]) if len(batch) else (torch.zeros(0, 3, 1, 1), None)
        return x.numpy()

    def example_input(self, batch_size: int = 1) -> np.ndarray:
        x, _ = next(iter(self.batches("calibration", batch_size)))
        return x


@dataclass
class _Fetch:
    """Picklable ``index -> (image, label)`` for DataLoader workers."""

    dataset: PreparedDataset
    split: str
    train: bool
    seed: int
    epoch: int
    labels: np.ndarray

    def __call__(self, index: int):
        return (self.dataset.image(self.split, index, train=self.train, seed=self.seed, epoch=self.epoch),
                int(self.labels[index]))


def load_dataset(directory: str | os.PathLike) -> PreparedDataset:
    return PreparedDataset(Path(directory), read_dataset_manifest(directory))
