"""Training checkpoints that restore the whole state of a run, shared by every training loop.

A checkpoint holds the model, the optimizer (and scheduler, if any), every extra module or object
the loss depends on (detection distillation's 1x1 connectors and its loss ramp, GroupFisher's
pruned structure and Fisher scores), the random number generators (torch, NumPy, Python) and the
loop's own counters; data order is a function of (seed, epoch), so it follows from the epoch. A
resumed run therefore ends with the same weights as an uninterrupted one.

Everything is stored as state dicts, tensors, numbers, strings and lists, so that a checkpoint
loads with ``torch.load(weights_only=True)`` (no pickled code). Writing is atomic: the file is
written beside its final name and renamed over it, so a run killed while saving keeps the
previous checkpoint.

Durable resume (CHECKPOINT_URI): ``durable_checkpoints(location)`` turns an s3:// / minio:// prefix
(or a mounted path) into a local folder holding what is already stored there; every checkpoint
saved into that folder is uploaded before the run goes on, so a retried or restarted step (another
pod) resumes from the last finished epoch.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator, Protocol

import numpy as np
import torch

from visioncompress.errors import ArtifactError, ConfigError
from visioncompress.log import get_logger

log = get_logger("train.checkpoint")

FORMAT = 3  # checkpoints of an older layout are ignored (the stage starts over), never half-restored


class Stateful(Protocol):
    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> object: ...


def rng_state() -> dict:
    """The state of every random number generator a training step may draw from, as tensors and ints."""
    version, keys, gauss = random.getstate()
    kind, np_keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached": float(cached), "kind": str(kind)},
        "python": {"version": int(version), "keys": torch.tensor(keys, dtype=torch.int64),
                   "gauss": None if gauss is None else float(gauss)},
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(k) for k in p["keys"].tolist()), p["gauss"]))


def save_atomic(path: str | os.PathLike, state: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(state, scratch)
        os.replace(scratch, path)
    finally:
        scratch.unlink(missing_ok=True)
    _push(path.parent)


class _Mirror:
    """A local folder that stands for an object-storage prefix: new or changed files are uploaded."""

    def __init__(self, uri: str, local: Path):
        self.uri, self.local, self.sent = uri, local, {}

    def push(self) -> None:
        from visioncompress.storage.s3 import parse_uri, upload_file

        target = parse_uri(self.uri, "CHECKPOINT_URI")
        for path in sorted(p for p in self.local.rglob("*") if p.is_file() and not p.name.startswith(".")):
            stat = path.stat()
            stamp = (stat.st_size, stat.st_mtime_ns)
            relative = path.relative_to(self.local).as_posix()
            if self.sent.get(relative) != stamp:
                upload_file(path, str(target.child(relative)))
                self.sent[relative] = stamp


_MIRRORS: dict[Path, _Mirror] = {}


def _push(directory: Path) -> None:
    mirror = _MIRRORS.get(Path(directory).resolve())
    if mirror is not None:
        mirror.push()


def _unreachable(location: str, reason: object) -> ConfigError:
    return ConfigError("CHECKPOINT_URI", location, f"an s3://, minio:// prefix or a mounted path this step can "
                       f"read and write ({' '.join(str(reason).split())})")


def check_checkpoint_location(location: str) -> None:
    """Fail before any work (ConfigError naming CHECKPOINT_URI) when ``location`` cannot be used."""
    from visioncompress.storage.s3 import StorageError, is_remote, list_keys

    if not location:
        return
    if is_remote(location):
        try:
            list_keys(location)
        except StorageError as exc:
            raise _unreachable(location, exc) from None
        return
    path = Path(location)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unreachable(location, exc) from None
    if not os.access(path, os.W_OK):
        raise _unreachable(location, "not writable")


@contextlib.contextmanager
def durable_checkpoints(location: str | os.PathLike | None) -> Iterator[Path | None]:
    """A local checkpoint folder for ``location`` (None/empty: no checkpoints). For an object-storage
    prefix: a scratch folder filled with what is stored there, whose checkpoints are uploaded as they
    are written; removed afterwards."""
    from visioncompress.storage.s3 import StorageError, is_remote, list_keys, parse_uri

    location = str(location or "")
    if not location:
        yield None
        return
    check_checkpoint_location(location)
    if not is_remote(location):
        yield Path(location)
        return
    from visioncompress.storage.s3 import download

    scratch = Path(tempfile.mkdtemp(prefix="vc-checkpoints-"))
    mirror = _Mirror(location, scratch)
    try:
        target = parse_uri(location, "CHECKPOINT_URI")
        try:
            for key in list_keys(location):
                relative = key[len(target.prefix):]
                dest = scratch / relative
                dest.parent.mkdir(parents=True, exist_ok=True)
                fetched = download(f"{target.scheme}://{target.bucket}/{key}", dest.parent)
                stat = fetched.stat()
                mirror.sent[relative] = (stat.st_size, stat.st_mtime_ns)
        except StorageError as exc:
            raise _unreachable(location, exc) from None
        if mirror.sent:
            log.info("checkpoints from %s: %s", location, ", ".join(sorted(mirror.sent)))
        _MIRRORS[scratch.resolve()] = mirror
        yield scratch
    finally:
        _MIRRORS.pop(scratch.resolve(), None)
        shutil.rmtree(scratch, ignore_errors=True)


_SAVED_CALLBACKS: list[Callable[[str, int, Path], None]] = []


@contextlib.contextmanager
def after_save(callback: Callable[[str, int, Path], None]) -> Iterator[None]:
    """Call ``callback(name, epoch, path)`` after each checkpoint written inside the block (progress
    reporting; tests use it to interrupt a stage right after an epoch, as a kill would)."""
    _SAVED_CALLBACKS.append(callback)
    try:
        yield
    finally:
        _SAVED_CALLBACKS.remove(callback)


class TrainingCheckpoint:
    """``{directory}/{name}-last.pt`` of one training loop: what to save, and how to restore it.

    ``extras`` are restored before the model (an extra may change the model's structure, as a
    pruning record does); the optimizer is built after that, over the restored parameters.
    """

    def __init__(self, directory: str | os.PathLike | None, name: str, model: torch.nn.Module,
                 extras: dict[str, Stateful] | None = None):
        self.path = Path(directory) / f"{name}-last.pt" if directory else None
        self.name, self.model, self.extras = name, model, dict(extras or {})

    def load(self) -> dict | None:
        """Restore extras, model and RNG states; returns the checkpoint (optimizer state, loop fields) or None."""
        if self.path is None or not self.path.is_file():
            return None
        state = torch.load(self.path, weights_only=True, map_location="cpu")
        if state.get("format") != FORMAT:
            log.warning("[%s] %s has an older layout; starting over", self.name, self.path)
            return None
        missing = sorted(set(self.extras) - set(state["extras"]))
        if missing:
            raise ArtifactError(f"checkpoint {self.path} lacks the state of {missing}; delete it to start over")
        for key, extra in self.extras.items():
            extra.load_state_dict(state["extras"][key])
        self.model.load_state_dict(state["model"])
        set_rng_state(state["rng"])
        log.info("[%s] resuming after epoch %d from %s", self.name, state["epoch"], self.path)
        return state

    @staticmethod
    def restore_optimizer(state: dict | None, optimizer, scheduler=None) -> None:
        if state is None:
            return
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])

    def save(self, epoch: int, optimizer, loop: dict, scheduler=None) -> None:
        """Write the state after ``epoch``; ``loop`` holds the loop's own fields (history, best state...)."""
        if self.path is None:
            return
        save_atomic(self.path, {
            "format": FORMAT, "epoch": int(epoch), "model": self.model.state_dict(),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict() if scheduler else None,
            "extras": {key: extra.state_dict() for key, extra in self.extras.items()},
            "rng": rng_state(), **loop,
        })
        for callback in list(_SAVED_CALLBACKS):
            callback(self.name, epoch, self.path)


def stop_after(epoch: int, name: str | None = None) -> Callable[[str, int, Path], None]:
    """An ``after_save`` callback that interrupts the run (KeyboardInterrupt, as Ctrl-C or a kill would)
    once the checkpoint of ``epoch`` (of loop ``name``, or any loop) is on disk."""

    def callback(loop_name: str, done: int, _path: Path) -> None:
        if done == epoch and (name is None or loop_name == name):
            raise KeyboardInterrupt(f"stopped after epoch {epoch} of {loop_name}")

    return callback
