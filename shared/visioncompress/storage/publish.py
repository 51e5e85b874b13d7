"""Publish chosen compressed models, the report and a manifest to object storage.

Layout under the destination prefix ``P`` (one folder per run date, one pointer for consumers):

    P/<YYYY-MM-DD>/models/<name>/...   each model artifact as written by its stage (model file + model.json)
    P/<YYYY-MM-DD>/report.md            the comparison report
    P/<YYYY-MM-DD>/results.json         every benchmark row
    P/<YYYY-MM-DD>/manifest.json        metrics, parameters, source artifacts and SHA-256 of every file
    P/latest.json                       pointer to the newest publication that kept accuracy within budget

The pointer moves only when the primary model's top-1 is at most ``accuracy_budget`` points below
the top-1 recorded in the current pointer; the first publication always sets it. The manifest is
written after everything it lists, so a dated folder without one is an incomplete publication.
A second publication on the same date replaces the first.
"""

from __future__ import annotations

import json
import os
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from visioncompress.artifacts import read_model_metadata
from visioncompress.errors import ArtifactError, ConfigError
from visioncompress.log import get_logger
from visioncompress.storage.s3 import (
    Storage, get_json, make_client, parse_uri, put_json, upload_dir, upload_file,
)

log = get_logger("publish")

MANIFEST = "manifest.json"
LATEST = "latest.json"
_DATE_FORMATS = ("%Y-%m-%d", "%Y%m%d%H%M%S", "%Y%m%d", "%Y-%m-%d %H:%M:%S")


def resolve_run_date(value: str | date | datetime | None = None) -> date:
    """The publication date: given, or today (UTC).

    Accepts ISO dates/times and KFP's scheduled-time formats; an unsubstituted ``[[...]]`` placeholder
    (a one-off run of a pipeline meant for scheduling) means today.
    """
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value or "").strip()
    if not text or text.startswith("[["):
        return datetime.now(timezone.utc).date()
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            pass
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).date()
    except ValueError:
        raise ConfigError("RUN_DATE", value, "a date such as 2026-11-25, or KFP's [[ScheduledTime.2006-01-02]]") \
            from None


def check_budget(value: Any) -> float:
    """ACCURACY_BUDGET: top-1 points (>= 0) a new model may lose against the current latest."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError("ACCURACY_BUDGET", value, "a number of top-1 points >= 0")
    return float(value)


def _load_results(results_path: str | os.PathLike) -> list[dict]:
    path = Path(results_path)
    if not path.is_file():
        raise ArtifactError(f"results file {path} is missing")
    try:
        rows = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"results file {path} is not valid JSON: {exc}") from None
    if not isinstance(rows, list):
        raise ArtifactError(f"results file {path} must hold a list of benchmark rows")
    return rows


def _metrics_for(metadata, rows: list[dict]) -> dict:
    """The benchmark rows measured on this model (same format, precision, stage and architecture)."""
    mine = [r for r in rows if r.get("format") == metadata.format and r.get("precision") == metadata.precision
            and r.get("stage") == metadata.stage and r.get("architecture", metadata.architecture)
            == metadata.architecture]
    keep = ("variant", "backend", "batch_size", "p50_ms", "p90_ms", "throughput_ips", "top1", "top1_delta",
            "mAP", "mAP50", "mAP_delta", "speedup", "size_mb", "test_images")
    metric = "mAP" if any("mAP" in r for r in mine) else "top1"  # detection models carry mAP
    best = max((r[metric] for r in mine if isinstance(r.get(metric), (int, float))), default=None)
    return {metric: best, "benchmarks": [{k: r[k] for k in keep if k in r} for r in mine]}


def accuracy_of(metrics: Mapping[str, Any]) -> tuple[str, float | None]:
    """The accuracy figure the ``latest`` pointer follows: top-1, or mAP for detection models."""
    metric = "mAP" if "mAP" in metrics else "top1"
    return metric, metrics.get(metric)


def pointer_decision(previous: Mapping[str, Any] | None, accuracy: float | None, budget: float,
                     metric: str = "top1") -> dict:
    """Whether ``latest`` moves: always for the first publication, else only within the accuracy budget.

    ``accuracy`` is the primary model's figure, named by ``metric`` (``top1``, or ``mAP`` for detection).
    """
    label = "top-1" if metric == "top1" else metric
    before = None if previous is None else {"date": previous.get("date"), metric: previous.get(metric)}
    if previous is None:
        return {"moved": True, "reason": "first publication", "previous": None, "budget": budget}
    old = previous.get(metric)
    if accuracy is None:
        return {"moved": False, "reason": f"no {label} measured for the primary model", "previous": before,
                "budget": budget}
    if not isinstance(old, (int, float)):
        return {"moved": True, "reason": f"previous pointer records no {label}", "previous": before,
                "budget": budget}
    drop = round(old - accuracy, 6)
    if drop <= budget + 1e-9:
        return {"moved": True, "reason": f"{label} {accuracy:.3f} is within {budget} points of {old:.3f}",
                "previous": before, "budget": budget}
    return {"moved": False, "reason": f"{label} {accuracy:.3f} is {drop:.3f} points below {old:.3f} "
            f"(budget {budget})", "previous": before, "budget": budget}


def publish(model_dirs: Mapping[str, str | os.PathLike], report_path: str | os.PathLike,
            results_path: str | os.PathLike, destination_uri: str, *, accuracy_budget: float = 1.0,
            run_date: str | date | datetime | None = None, primary: str | None = None,
            sources: Mapping[str, str] | None = None, storage: Storage | None = None) -> dict:
    """Upload models, report and results under ``<destination>/<YYYY-MM-DD>/``; returns the manifest.

    ``primary`` names the model whose top-1 gates the ``latest`` pointer (default: the first one);
    ``sources`` maps model names (and "report"/"results") to the artifact URIs they came from.
    """
    destination = parse_uri(destination_uri, "DESTINATION")
    budget = check_budget(accuracy_budget)
    day = resolve_run_date(run_date)
    if not model_dirs:
        raise ConfigError("models", {}, "at least one model artifact to publish")
    primary = primary or next(iter(model_dirs))
    if primary not in model_dirs:
        raise ConfigError("PRIMARY", primary, sorted(model_dirs))
    # Read every input before the first upload, so a broken artifact publishes nothing.
    metadata = {name: read_model_metadata(path) for name, path in model_dirs.items()}
    rows = _load_results(results_path)
    if not Path(report_path).is_file():
        raise ArtifactError(f"report file {report_path} is missing")
    sources = dict(sources or {})
    storage = storage or make_client(destination.scheme)
    dated = destination.child(day.isoformat())
    log.info("publishing %s to %s", sorted(model_dirs), dated)

    checksums: dict[str, dict] = {}
    models, metrics, parameters, lineage = {}, {}, {}, {}
    for name, path in model_dirs.items():
        md = metadata[name]
        for relative, info in upload_dir(path, str(dated.child("models", name)), storage=storage).items():
            checksums[f"models/{name}/{relative}"] = {"sha256": info["sha256"], "size": info["size"]}
        models[name] = {"path": f"models/{name}/{md.file_name}", "architecture": md.architecture,
                        "task": md.task, "format": md.format, "backend": md.backend, "precision": md.precision,
                        "stage": md.stage, "input_size": md.input_size, "classes": md.classes,
                        "load_with": md.load_call}
        metrics[name] = _metrics_for(md, rows)
        parameters[name] = md.params
        lineage[name] = {"artifact": sources.get(name, str(path)), "parent": md.parent}
    for key, local in (("report", report_path), ("results", results_path)):
        info = upload_file(local, str(dated.child(f"{key}{'.md' if key == 'report' else '.json'}")), storage=storage)
        relative = info["uri"].rsplit("/", 1)[-1]
        checksums[relative] = {"sha256": info["sha256"], "size": info["size"]}
        lineage[key] = {"artifact": sources.get(key, str(local))}

    metric, accuracy = accuracy_of(metrics[primary])
    latest_uri = str(destination.child(LATEST))
    previous = get_json(latest_uri, storage=storage, missing_ok=True)
    decision = pointer_decision(previous, accuracy, budget, metric)
    manifest = {
        "kind": "visioncompress.publication", "version": 1, "date": day.isoformat(),
        "published_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "destination": str(dated) + "/", "primary": primary, metric: accuracy,
        "models": models, "metrics": metrics, "parameters": parameters, "sources": lineage,
        "checksums": checksums, "latest": decision,
    }
    written = put_json(manifest, str(dated.child(MANIFEST)), storage=storage)
    if decision["moved"]:
        put_json({"kind": "visioncompress.latest", "date": day.isoformat(), "prefix": str(dated) + "/",
                  "manifest": written["uri"], "manifest_sha256": written["sha256"], "primary": primary,
                  metric: accuracy, "updated_at": manifest["published_at"]}, latest_uri, storage=storage)
    log.info("published to %s; latest %s (%s)", dated, "moved" if decision["moved"] else "kept",
             decision["reason"])
    return manifest
