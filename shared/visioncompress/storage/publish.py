"""Publish chosen compressed models, the report and a manifest to object storage.

Layout under the destination prefix ``P``; every publication has its own prefix and is never rewritten:

    P/<YYYY-MM-DD>/<id>/models/<name>/...   each model artifact as written by its stage (model file + model.json)
    P/<YYYY-MM-DD>/<id>/report.md            the comparison report
    P/<YYYY-MM-DD>/<id>/results.json         every benchmark row
    P/<YYYY-MM-DD>/<id>/manifest.json        metric, parameters, source artifacts and SHA-256 of every file
    P/latest.json                            pointer to the newest publication that kept accuracy within budget

``<id>`` is the KFP run id when the step knows it, else a hash of the published files' checksums, so
two publications on the same date never share a prefix. The manifest is written after everything it
lists (a prefix without one is an incomplete publication), and ``latest.json`` is written last, in
one request, only when the primary model's metric (``top1`` for classification, ``mAP`` for detection)
is at most ``accuracy_budget`` points below the one ``latest.json`` records; the first publication
always sets it, unless a model is one the accuracy ladder marked over its budget against its own FP32 model
(``over_budget_models``), which is over budget whatever ``latest.json`` holds. A candidate over budget is not
uploaded at all unless ``publish_over_budget``; then it
gets its own prefix and a manifest marked ``rejected``, and ``latest.json`` stays where it was.

``keep_last`` > 0 deletes the oldest complete publications beyond that many, never the one
``latest.json`` points to (manifest first, so a half-deleted publication reads as incomplete).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from visioncompress.artifacts import read_model_metadata
from visioncompress.errors import ArtifactError, ConfigError
from visioncompress.log import get_logger
from visioncompress.storage.s3 import (
    Storage, delete_keys, get_json, list_keys, make_client, parse_uri, put_json, sha256_file, stored_sha256,
    upload_file,
)

log = get_logger("publish")

MANIFEST = "manifest.json"
LATEST = "latest.json"
METRICS = ("top1", "mAP")  # classification, detection
_DATE_FORMATS = ("%Y-%m-%d", "%Y%m%d%H%M%S", "%Y%m%d", "%Y-%m-%d %H:%M:%S")
_ID_RE = re.compile(r"[^A-Za-z0-9._-]+")
_PUBLICATION_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})/([A-Za-z0-9._-]+)/" + re.escape(MANIFEST) + "$")
_BENCHMARK_KEYS = ("variant", "backend", "batch_size", "p50_ms", "p90_ms", "throughput_ips", "top1", "top1_delta",
                   "mAP", "mAP50", "mAP_delta", "speedup", "size_mb", "test_images")


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
    """ACCURACY_BUDGET: points of top-1 (mAP for detection), >= 0, a new model may lose against the latest."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError("ACCURACY_BUDGET", value, "a number of top-1 (or mAP) points >= 0")
    return float(value)


def check_keep_last(value: Any) -> int:
    """KEEP_LAST: how many publications to keep (0 = all)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError("KEEP_LAST", value, "a whole number >= 0 (0 keeps every publication)")
    return value


def publication_id(run_id: str | None, checksums: Mapping[str, Mapping[str, Any]]) -> str:
    """The run id (made path-safe) when known, else the first 12 hex digits of a hash over the checksums."""
    text = _ID_RE.sub("-", str(run_id or "").strip()).strip("-.")
    if text and "{{" not in str(run_id) and not str(run_id).startswith("[["):
        return text[:64]
    digest = hashlib.sha256()
    for relative in sorted(checksums):
        digest.update(f"{relative}\0{checksums[relative]['sha256']}\n".encode())
    return digest.hexdigest()[:12]


def _load_results(results_path: str | os.PathLike) -> list[dict]:
    path = Path(results_path)
    if not path.is_file():
        raise ArtifactError(f"results file {path} is missing")
    try:
        rows = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"results file {path} is not valid JSON: {exc}") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ArtifactError(f"results file {path} must hold a list of benchmark rows")
    return rows


def metrics_for(name: str, metadata, rows: list[dict]) -> dict:
    """The benchmark rows measured on model ``name`` and its accuracy figure.

    A row belongs to the model when its format, precision, stage and architecture are the model's
    (``model.json``); the figure is ``mAP`` for detection models, ``top1`` otherwise. No matching row,
    or matching rows without the figure, is an ArtifactError: a model cannot be published unmeasured.
    """
    key = {"format": metadata.format, "precision": metadata.precision, "stage": metadata.stage,
           "architecture": metadata.architecture}
    mine = [r for r in rows if all(r.get(k) == v for k, v in key.items())]
    if not mine:
        seen = sorted({tuple(str(r.get(k)) for k in key) for r in rows})
        wanted = ", ".join(f"{k}={v}" for k, v in key.items())
        raise ArtifactError(f"no benchmark row measures published model {name!r} ({wanted}); "
                            f"the results hold rows for (format, precision, stage, architecture): "
                            f"{', '.join('/'.join(s) for s in seen) or 'nothing'}")
    metric = "mAP" if metadata.task == "detection" else "top1"
    values = [r[metric] for r in mine if isinstance(r.get(metric), (int, float)) and not isinstance(r[metric], bool)]
    if not values:
        raise ArtifactError(f"the benchmark rows of published model {name!r} carry no {metric}")
    return {"metric_name": metric, "metric": max(values),
            "benchmarks": [{k: r[k] for k in _BENCHMARK_KEYS if k in r} for r in mine]}


def over_budget_models(metadata: Mapping[str, Any]) -> dict[str, str]:
    """{name: why} for models the accuracy ladder marked over budget (``metrics.ladder.within_budget`` False):
    they are never published unless PUBLISH_OVER_BUDGET, whatever ``latest.json`` holds."""
    over = {}
    for name, md in metadata.items():
        ladder = md.metrics.get("ladder") if isinstance(md.metrics, dict) else None
        if isinstance(ladder, dict) and ladder.get("within_budget") is False:
            over[name] = ladder.get("message") or (f"the accuracy ladder found no INT8 model within "
                                                   f"ACCURACY_BUDGET={ladder.get('budget')} of FP32")
    return over


def _label(metric: str) -> str:
    return "top-1" if metric == "top1" else metric


def pointer_decision(previous: Mapping[str, Any] | None, accuracy: float, budget: float,
                     metric: str = "top1") -> dict:
    """Whether ``latest`` moves: always for the first publication, else only within the accuracy budget.

    ``accuracy`` is the primary model's figure named by ``metric``; ``previous`` is the current
    ``latest.json`` (``metric_name``/``metric``, or the figure under its own name in older pointers).
    """
    label = _label(metric)
    if previous is None:
        return {"moved": True, "reason": "first publication", "previous": None, "budget": budget}
    old = previous.get("metric") if previous.get("metric_name") == metric else previous.get(metric)
    before = {"prefix": previous.get("prefix"), "metric_name": metric, "metric": old}
    if not isinstance(old, (int, float)):
        return {"moved": True, "reason": f"the previous pointer records no {label}", "previous": before,
                "budget": budget}
    drop = round(old - accuracy, 6)
    if drop <= budget + 1e-9:
        return {"moved": True, "reason": f"{label} {accuracy:.3f} is within {budget:g} points of {old:.3f}",
                "previous": before, "budget": budget}
    return {"moved": False, "reason": f"{label} {accuracy:.3f} is {drop:.3f} points below {old:.3f} "
            f"(budget {budget:g})", "previous": before, "budget": budget}


def _local_files(model_dirs: Mapping[str, Path], report_path: Path, results_path: Path) -> dict[str, Path]:
    """{path relative to the publication prefix: local file} for everything a publication holds."""
    files = {}
    for name, root in model_dirs.items():
        for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
            files[f"models/{name}/{path.relative_to(root).as_posix()}"] = path
    files["report.md"] = Path(report_path)
    files["results.json"] = Path(results_path)
    return files


def publications(destination_uri: str, *, storage: Storage | None = None) -> list[dict]:
    """Every complete publication under the destination, oldest first: {date, id, prefix, manifest}."""
    destination = parse_uri(destination_uri, "DESTINATION")
    storage = storage or make_client(destination.scheme)
    found = []
    for key in list_keys(str(destination), storage=storage):
        match = _PUBLICATION_RE.match(key[len(destination.prefix):])
        if match:
            prefix = str(destination.child(match.group(1), match.group(2))) + "/"
            found.append({"date": match.group(1), "id": match.group(2), "prefix": prefix,
                          "manifest": prefix + MANIFEST})
    for item in found:
        item["published_at"] = (get_json(item["manifest"], storage=storage) or {}).get("published_at", "")
    return sorted(found, key=lambda p: (p["date"], p["published_at"], p["id"]))


def prune_publications(destination_uri: str, keep_last: int, *, storage: Storage | None = None) -> list[str]:
    """Delete the oldest complete publications beyond ``keep_last`` (0 = none), never the latest one.

    Only what nothing points to goes: the publication ``latest.json`` names is always kept, and
    incomplete prefixes (no manifest: possibly still being written) are left alone. Returns the
    deleted prefixes.
    """
    keep_last = check_keep_last(keep_last)
    if keep_last == 0:
        return []
    destination = parse_uri(destination_uri, "DESTINATION")
    storage = storage or make_client(destination.scheme)
    latest = get_json(str(destination.child(LATEST)), storage=storage, missing_ok=True) or {}
    found = publications(destination_uri, storage=storage)
    kept = {p["prefix"] for p in found[-keep_last:]} | {latest.get("prefix")}
    deleted = []
    for item in found:
        if item["prefix"] in kept:
            continue
        prefix_key = parse_uri(item["prefix"]).key
        keys = list_keys(item["prefix"], storage=storage)
        manifest_key = prefix_key + MANIFEST
        delete_keys(str(destination), [manifest_key] + [k for k in keys if k != manifest_key], storage=storage)
        deleted.append(item["prefix"])
        log.info("KEEP_LAST=%d: deleted publication %s", keep_last, item["prefix"])
    return deleted


def publish(model_dirs: Mapping[str, str | os.PathLike], report_path: str | os.PathLike,
            results_path: str | os.PathLike, destination_uri: str, *, accuracy_budget: float = 1.0,
            run_date: str | date | datetime | None = None, primary: str | None = None,
            sources: Mapping[str, str] | None = None, run_id: str | None = None,
            publish_over_budget: bool = False, keep_last: int = 0, storage: Storage | None = None) -> dict:
    """Publish under ``<destination>/<YYYY-MM-DD>/<id>/``; returns the manifest (also when nothing is uploaded).

    ``primary`` names the model whose metric gates the ``latest`` pointer (default: the first one);
    ``sources`` maps model names (and "report"/"results") to the artifact URIs they came from;
    ``run_id`` (the KFP run id) names the publication, else a hash of its files does. The returned
    manifest's ``published`` says whether anything was uploaded and ``status`` is ``latest``
    (the pointer moved to it), ``rejected`` (over budget, uploaded with ``publish_over_budget``) or
    ``not-published`` (over budget, nothing uploaded).
    """
    destination = parse_uri(destination_uri, "DESTINATION")
    budget = check_budget(accuracy_budget)
    keep_last = check_keep_last(keep_last)
    if not isinstance(publish_over_budget, bool):
        raise ConfigError("PUBLISH_OVER_BUDGET", publish_over_budget, "True or False")
    day = resolve_run_date(run_date)
    if not model_dirs:
        raise ConfigError("models", {}, "at least one model artifact to publish")
    primary = primary or next(iter(model_dirs))
    if primary not in model_dirs:
        raise ConfigError("PRIMARY", primary, sorted(model_dirs))
    # Read and check every input before the first upload, so a broken artifact publishes nothing.
    metadata = {name: read_model_metadata(path) for name, path in model_dirs.items()}
    rows = _load_results(results_path)
    if not Path(report_path).is_file():
        raise ArtifactError(f"report file {report_path} is missing")
    metrics = {name: metrics_for(name, md, rows) for name, md in metadata.items()}
    metric, accuracy = metrics[primary]["metric_name"], metrics[primary]["metric"]
    files = _local_files({n: Path(p) for n, p in model_dirs.items()}, Path(report_path), Path(results_path))
    checksums = {rel: {"sha256": sha256_file(path), "size": path.stat().st_size} for rel, path in files.items()}
    ident = publication_id(run_id, checksums)
    prefix = destination.child(day.isoformat(), ident)
    storage = storage or make_client(destination.scheme)

    latest_uri = str(destination.child(LATEST))
    previous = get_json(latest_uri, storage=storage, missing_ok=True)
    if previous is not None and previous.get("metric_name") not in (None, metric):
        raise ConfigError("DESTINATION", destination_uri, f"a destination for {_label(metric)} models "
                          f"(its latest.json follows {previous.get('metric_name')})")
    decision = pointer_decision(previous, accuracy, budget, metric)
    over = over_budget_models(metadata)
    if over:  # the accuracy ladder found no INT8 model within budget against its own FP32 model
        decision = {**decision, "moved": False, "reason": "; ".join(
            f"model {name!r}: {message}" for name, message in over.items())}
    sources = dict(sources or {})
    manifest = {
        "kind": "visioncompress.publication", "version": 2, "date": day.isoformat(), "id": ident,
        "destination": str(prefix) + "/", "primary": primary, "metric_name": metric, "metric": accuracy,
        "status": "latest" if decision["moved"] else "rejected", "rejected": not decision["moved"],
        "published": True, "latest": decision,
        "models": {name: {"path": f"models/{name}/{md.file_name}", "architecture": md.architecture, "task": md.task,
                          "format": md.format, "backend": md.backend, "precision": md.precision, "stage": md.stage,
                          "input_size": md.input_size, "classes": md.classes, "load_with": md.load_call}
                   for name, md in metadata.items()},
        "metrics": metrics, "parameters": {name: md.params for name, md in metadata.items()},
        "sources": {**{name: {"artifact": sources.get(name, str(model_dirs[name])), "parent": md.parent}
                       for name, md in metadata.items()},
                    "report": {"artifact": sources.get("report", str(report_path))},
                    "results": {"artifact": sources.get("results", str(results_path))}},
        "checksums": checksums,
    }
    if not decision["moved"] and not publish_over_budget:
        manifest.update(status="not-published", published=False, destination=None)
        log.warning("NOTICE: not published: %s; latest.json stays on %s (set PUBLISH_OVER_BUDGET=True to upload "
                    "rejected candidates under their own prefix)", decision["reason"],
                    (previous or {}).get("prefix"))
        return manifest

    existing = {key[len(prefix.prefix):] for key in list_keys(str(prefix), storage=storage)}
    earlier = get_json(str(prefix.child(MANIFEST)), storage=storage, missing_ok=True) if MANIFEST in existing \
        else None
    if earlier is not None:
        if earlier.get("checksums") != checksums:
            raise ArtifactError(f"publication prefix {prefix}/ already holds a different publication; "
                                "publications are never overwritten")
        log.info("%s/ already holds this publication (same checksums); not uploading it again", prefix)
        manifest = earlier
    else:
        # No manifest: nothing or an interrupted attempt at this same publication (a retried step), which
        # may be completed only if every object already there is one of its files, byte for byte.
        foreign = sorted(rel for rel in existing if rel not in checksums
                         or stored_sha256(str(prefix.child(rel)), storage=storage) != checksums[rel]["sha256"])
        if foreign:
            raise ArtifactError(f"publication prefix {prefix}/ already holds {len(foreign)} object(s) that are not "
                                f"part of this publication (e.g. {foreign[0]}); publications are never overwritten")
        log.info("publishing %s to %s/ (%s %s, %s)%s", sorted(model_dirs), prefix, _label(metric), accuracy,
                 "within budget" if decision["moved"] else "over budget: rejected",
                 f"; completing an interrupted attempt ({len(existing)} file(s) already there)" if existing else "")
        for relative, path in files.items():
            if relative in existing:
                continue
            uploaded = upload_file(path, str(prefix.child(relative)), storage=storage)
            if uploaded["sha256"] != checksums[relative]["sha256"]:
                raise ArtifactError(f"{path} changed while it was being published")
        manifest["published_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        put_json(manifest, str(prefix.child(MANIFEST)), storage=storage)  # after every file it lists
    if decision["moved"]:  # the pointer last, in one request
        stored = json.dumps(manifest, indent=2, sort_keys=True) + "\n"  # what put_json wrote
        put_json({"kind": "visioncompress.latest", "date": day.isoformat(), "id": ident,
                  "prefix": str(prefix) + "/", "manifest": str(prefix.child(MANIFEST)),
                  "manifest_sha256": hashlib.sha256(stored.encode()).hexdigest(), "primary": primary,
                  "metric_name": metric, "metric": accuracy, "updated_at": manifest.get("published_at")},
                 latest_uri, storage=storage)
    log.info("published to %s/; latest %s (%s)", prefix, "moved" if decision["moved"] else "kept",
             decision["reason"])
    if keep_last:
        prune_publications(destination_uri, keep_last, storage=storage)
    return manifest
