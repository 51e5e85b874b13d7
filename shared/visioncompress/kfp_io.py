"""The one adapter between KFP components and the library.

Components hand over artifact objects; this module only reads ``.path`` / ``.metadata`` and calls
``.log_metric`` on them (duck typing: nothing here imports KFP), and turns our own errors into
one clear line on stderr with a non-zero exit instead of a traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Iterator

from visioncompress.errors import VisionCompressError


FAILURE_FILE_ENV = "VC_FAILURE_FILE"  # set by the local runner: where a failed stage records its one line


def failure_line(name: str, message: str) -> str:
    """``visioncompress: <stage>: <message>`` on one line (what the KFP UI shows for a failed step)."""
    return f"visioncompress: {name}: " + " ".join(str(message).split())


def _record_failure(name: str, message: str, exit_code: int) -> None:
    target = os.environ.get(FAILURE_FILE_ENV)
    if not target:
        return
    with contextlib.suppress(OSError):
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"stage": name, "message": " ".join(str(message).split()),
                                     "exit_code": exit_code}) + "\n")


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Run a component body; every failure ends the step with one line naming the stage.

    Our own errors (bad parameter, input, artifact) print only that line and exit 2. Anything else
    keeps its traceback in the log, then ends with the same kind of line and exits 1.
    """
    try:
        yield
    except VisionCompressError as exc:
        print(failure_line(name, str(exc)), file=sys.stderr, flush=True)
        _record_failure(name, str(exc), 2)
        raise SystemExit(2) from None
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - a bug or a library failure: keep the stack in the log
        traceback.print_exc(file=sys.stderr)
        message = f"unexpected {type(exc).__name__}: {exc}".rstrip(": ")
        print(failure_line(name, message), file=sys.stderr, flush=True)
        _record_failure(name, message, 1)
        raise SystemExit(1) from None


def describe_model(artifact: Any, metadata) -> None:
    """Copy the model's contract fields into the KFP artifact's metadata (shown in the UI)."""
    artifact.metadata.update({
        "task": metadata.task, "architecture": metadata.architecture, "format": metadata.format,
        "backend": metadata.backend, "precision": metadata.precision, "stage": metadata.stage,
        "input_size": metadata.input_size, "num_classes": metadata.num_classes, "load_with": metadata.load_call,
    })


def describe_dataset(artifact: Any, manifest) -> None:
    artifact.metadata.update({
        "task": manifest.task, "num_classes": manifest.num_classes, "input_size": manifest.input_size,
        "splits": manifest.splits, "source": manifest.source.get("name", ""),
    })


def log_metrics(artifact: Any, scalars: dict[str, float]) -> None:
    for name, value in scalars.items():
        if isinstance(value, (int, float)) and value is not None:
            artifact.log_metric(name, float(value))


def write_json(artifact: Any, data: Any) -> None:
    Path(artifact.path).parent.mkdir(parents=True, exist_ok=True)
    Path(artifact.path).write_text(json.dumps(data, indent=2) + "\n")


def log_training(artifact: Any, metrics: dict) -> None:
    """Per-epoch rows and the best validation top-1 of a training stage, as KFP metrics."""
    for row in metrics.get("history", []):
        log_metrics(artifact, {f"epoch{row['epoch']}-{k}": v for k, v in row.items() if k != "epoch"})
    log_metrics(artifact, {k: v for k, v in metrics.items() if k != "history"})
