"""Comparison tables: each variant against FP32 in the same runtime, and against the fastest float row.

Two speed-ups per row, at the same batch size: ``speedup`` against the ``fp32`` row of the same runtime
(PyTorch: TorchScript trace+freeze, the form its INT8 model runs in), and ``speedup_vs_float`` against the
fastest floating-point row of the starting model in any runtime (``fp32``, ``fp32-eager``, ``bf16``, ``fp16``
variants), named in ``fastest_float``.
"""

from __future__ import annotations

FLOAT_BASELINES = ("fp32", "fp32-eager", "bf16", "fp16")


def _key(row: dict) -> tuple:
    return row["backend"], row["batch_size"]


def quality(row: dict) -> str:
    """The accuracy figure a row carries: mAP for detection, top-1 for classification."""
    return "mAP" if "mAP" in row else "top1"


QUALITY_LABELS = {"mAP": "mAP %", "top1": "top-1 %"}


def compare(rows: list[dict]) -> list[dict]:
    """Rows enriched with speed-up and top-1 change against FP32 in the same backend and batch size."""
    baselines = {_key(r): r for r in rows if r.get("variant") == "fp32"}
    fastest: dict[int, dict] = {}
    for r in rows:
        if r.get("variant") in FLOAT_BASELINES and r.get("p50_ms"):
            best = fastest.get(r["batch_size"])
            if best is None or r["p50_ms"] < best["p50_ms"]:
                fastest[r["batch_size"]] = r
    out = []
    for row in rows:
        base = baselines.get(_key(row))
        enriched = dict(row)
        reference = fastest.get(row["batch_size"])
        if reference is not None and row["p50_ms"]:
            enriched["speedup_vs_float"] = round(reference["p50_ms"] / row["p50_ms"], 2)
            enriched["fastest_float"] = f"{reference['variant']}/{reference['backend']}"
        if base is not None:
            enriched["speedup"] = round(base["p50_ms"] / row["p50_ms"], 2) if row["p50_ms"] else None
            metric = quality(row)
            enriched[f"{metric}_delta"] = round(row[metric] - base[metric], 3)
            enriched["size_ratio"] = round(base["size_mb"] / row["size_mb"], 2) if row["size_mb"] else None
        out.append(enriched)
    return sorted(out, key=lambda r: (r["batch_size"], r["backend"], r["variant"] != "fp32", r["variant"]))


def _fmt(value, pattern: str) -> str:
    return "–" if value is None else pattern.format(value)


def markdown_table(rows: list[dict]) -> str:
    metric = quality(rows[0]) if rows else "top1"
    label = QUALITY_LABELS[metric]
    header = (f"| variant | backend | execution | batch | p50 ms | p90 ms | img/s | {label} | Δ {label[:-2]} | "
              "speed-up vs own FP32 | vs fastest float | size MB |\n"
              "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    lines = [header]
    for r in compare(rows):
        lines.append(
            f"| {r['variant']} | {r['backend']} | {r.get('execution', '')} | {r['batch_size']} | {r['p50_ms']:.2f} | "
            f"{r['p90_ms']:.2f} | {r['throughput_ips']:.0f} | {r[metric]:.2f} | "
            f"{_fmt(r.get(f'{metric}_delta'), '{:+.2f}')} | {_fmt(r.get('speedup'), '{:.2f}×')} | "
            f"{_fmt(r.get('speedup_vs_float'), '{:.2f}×')} | {r['size_mb']:.2f} |"
        )
    return "\n".join(lines)


def text_table(rows: list[dict]) -> str:
    metric = quality(rows[0]) if rows else "top1"
    cols = ["variant", "backend", "batch_size", "p50_ms", "p90_ms", metric, f"{metric}_delta", "speedup",
            "speedup_vs_float", "size_mb"]
    data = [[str(r.get(c, "")) if r.get(c) is not None else "-" for c in cols] for r in compare(rows)]
    widths = [max(len(c), *(len(d[i]) for d in data)) if data else len(c) for i, c in enumerate(cols)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*cols), fmt.format(*("-" * w for w in widths))] + [fmt.format(*d) for d in data])


def kfp_scalars(rows: list[dict]) -> dict[str, float]:
    """Flat name -> number pairs for KFP's Metrics artifact (shown in the run's UI)."""
    scalars: dict[str, float] = {}
    for r in compare(rows):
        prefix = f"{r['variant']}-{r['backend']}"
        scalars[f"{prefix}-{quality(r)}"] = r[quality(r)]
        scalars[f"{prefix}-size_mb"] = r["size_mb"]
        scalars[f"{prefix}-b{r['batch_size']}-p50_ms"] = r["p50_ms"]
        if r.get("speedup") is not None and r["variant"] != "fp32":
            scalars[f"{prefix}-b{r['batch_size']}-speedup"] = r["speedup"]
        if r.get("speedup_vs_float") is not None:
            scalars[f"{prefix}-b{r['batch_size']}-speedup_vs_float"] = r["speedup_vs_float"]
    return scalars
