"""Report stage: a Markdown comparison (table + plot) and a JSON of every measured row."""

from __future__ import annotations

import base64
import io
import json
import os
import platform
from pathlib import Path

from visioncompress.log import get_logger
from visioncompress.report.tables import QUALITY_LABELS, _fmt, compare, markdown_table, quality

log = get_logger("report")


def pareto_front(rows: list[dict]) -> list[dict]:
    """The rows no other row beats on both latency (p50, lower) and accuracy (higher), fastest first.

    Rows are compared within one batch size; pass the rows of one batch size.
    """
    ordered = sorted(rows, key=lambda r: (r["p50_ms"], -r[quality(r)]))
    front: list[dict] = []
    for row in ordered:
        if not front or row[quality(row)] > front[-1][quality(front[-1])]:
            front.append(row)
    return front


def plot_png(rows: list[dict]) -> bytes:
    """Accuracy against latency (p50), one point per variant/backend, one panel per batch size; the Pareto
    front (no other variant both faster and more accurate) is joined by a line and its points are filled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batch_sizes = sorted({r["batch_size"] for r in rows})
    fig, axes = plt.subplots(1, len(batch_sizes), figsize=(6 * len(batch_sizes), 4.5), squeeze=False)
    backends = sorted({r["backend"] for r in rows})
    colours = {b: plt.cm.tab10(i) for i, b in enumerate(backends)}
    for ax, batch_size in zip(axes[0], batch_sizes):
        panel = [r for r in rows if r["batch_size"] == batch_size]
        front = pareto_front(panel)
        ax.step([r["p50_ms"] for r in front], [r[quality(r)] for r in front], where="post", color="grey",
                alpha=0.6, linewidth=1, label="Pareto front")
        for i, r in enumerate(panel):
            on_front = any(r is f for f in front)
            marker = "o" if r.get("precision") in ("fp32", "bf16", "fp16") else "s"
            ax.scatter(r["p50_ms"], r[quality(r)], marker=marker, color=colours[r["backend"]],
                       facecolors=colours[r["backend"]] if on_front else "none", s=36)
            ax.annotate(f"{r['variant']}/{r['backend']}", (r["p50_ms"], r[quality(r)]), fontsize=7,
                        xytext=(4, 4 + 7 * (i % 3)), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel(f"p50 latency (ms, log scale), batch {batch_size}")
        ax.set_ylabel(QUALITY_LABELS[quality(rows[0])])
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=7)
    fig.suptitle("accuracy against latency (filled: on the Pareto front; circles float, squares integer)",
                 fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


def choices_description(rows: list[dict]) -> str:
    """How each row ran (PyTorch eager or TorchScript, OpenVINO's precision hint) and the INT8 forms chosen."""
    lines = []
    seen = set()
    for r in rows:
        key = (r["variant"], r["backend"])
        if key in seen:
            continue
        seen.add(key)
        text = f"- {r['variant']}/{r['backend']}: {r.get('execution') or r.get('format', '')}"
        if r.get("int8_form"):
            text += f"; INT8 form {r['int8_form']}, chosen because {r['int8_form_reason']}"
        lines.append(text)
    return "\n".join(lines)


def ladder_description(rows: list[dict]) -> str:
    """The accuracy ladder of each model that came from one: every rung tried, the layers kept in FP32, the choice."""
    parts, seen = [], set()
    for r in rows:
        ladder = r.get("ladder")
        if not isinstance(ladder, dict) or r["variant"] in seen:
            continue
        seen.add(r["variant"])
        parts += [f"Accuracy ladder of {r['variant']} ({ladder['backend']}): budget {ladder['budget']:g} point(s) of "
                  f"validation top-1 against FP32 ({ladder['fp32_val_top1']:.2f} on {ladder['val_images']} images); "
                  f"chosen: {ladder['chosen']} ({'within budget' if ladder['within_budget'] else 'OVER BUDGET'}).", "",
                  "| rung | val top-1 | drop (± standard error) | within budget | p50 b1 (ms) | layers in FP32 | how |", "|---|---|---|---|---|---|---|"]
        for rung in ladder["rungs"]:
            drop = _fmt(rung['drop'], '{:+.2f}') + (f" ± {rung['drop_se']:.2f}" if rung.get("drop_se") is not None
                                                    and rung['drop'] is not None else "")
            parts.append(f"| {rung['rung']} | {_fmt(rung['val_top1'], '{:.2f}')} | {drop} | "
                         f"{'yes' if rung['within_budget'] else 'no'} | {_fmt(rung['latency_b1_ms'], '{:.3f}')} | "
                         f"{', '.join(rung['fp32_layers']) or '-'} | {rung['note'] or '-'} |")
        if ladder.get("message"):
            parts += ["", f"NOTICE: {ladder['message']}"]
        if ladder.get("resolution"):
            parts += ["", f"NOTICE: {ladder['resolution']}"]
        parts.append("")
    return "\n".join(parts)


def pareto_description(rows: list[dict]) -> str:
    parts = []
    for batch_size in sorted({r["batch_size"] for r in rows}):
        front = pareto_front([r for r in rows if r["batch_size"] == batch_size])
        parts.append(f"batch {batch_size}: " + " → ".join(
            f"{r['variant']}/{r['backend']} ({r['p50_ms']:.2f} ms, {r[quality(r)]:.2f})" for r in front))
    return "Pareto front (fastest first; each next point is slower and more accurate): " + "; ".join(parts) + "."


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from visioncompress.cpu import cpu_features

    return (f"{cpu} [{cpu_features().summary()}], {len(os.sched_getaffinity(0))} cores, "
            f"Python {platform.python_version()}")


def threads_description(rows: list[dict]) -> str:
    """What the benchmark steps used: thread counts and the pods' CPU quotas, as recorded in the rows."""
    threads = sorted({r["threads"] for r in rows if r.get("threads")})
    quotas = sorted({r.get("cpu_quota") for r in rows}, key=lambda q: (q is None, q or 0))
    if not threads:
        return ""
    quota = ", ".join("none" if q is None else f"{q:g} CPUs" for q in quotas)
    return (f"Runtimes used {', '.join(map(str, threads))} intra-op thread(s) (THREADS, else the pod's CPU "
            f"quota); CPU quota of the benchmark pods: {quota}.")


def build_report(rows: list[dict], markdown_path: str | os.PathLike, json_path: str | os.PathLike | None = None,
                 *, title: str = "visioncompress comparison", plot_path: str | os.PathLike | None = None) -> str:
    """Write the Markdown report (plot embedded) and, if asked, the enriched rows as JSON and the plot as PNG."""
    table = markdown_table(rows)
    png = plot_png(rows) if rows else b""
    image = base64.b64encode(png).decode()
    if plot_path and png:
        Path(plot_path).parent.mkdir(parents=True, exist_ok=True)
        Path(plot_path).write_bytes(png)
    compared = compare(rows)
    references = sorted({f"batch {r['batch_size']}: {r['fastest_float']}" for r in compared if r.get("fastest_float")})
    text = "\n".join([
        f"# {title}", "",
        f"Measured on {machine_description()}. The accuracy change (Δ) and the first speed-up are against FP32 "
        "in the same runtime at the same batch size (PyTorch FP32: TorchScript trace+freeze, the form its INT8 "
        "model runs in; `fp32-eager` is eager PyTorch; OpenVINO FP32 runs with INFERENCE_PRECISION_HINT=f32, "
        "BF16/FP16 are rows of their own). The second speed-up is against the fastest floating-point row of "
        f"any runtime ({'; '.join(references) or 'none measured'}).", threads_description(rows), "", table, "",
        f"![latency vs accuracy](data:image/png;base64,{image})" if image else "", "",
        pareto_description(rows) if rows else "", "",
        "How each row ran:", "", choices_description(rows), "", ladder_description(rows),
    ])
    Path(markdown_path).parent.mkdir(parents=True, exist_ok=True)
    Path(markdown_path).write_text(text)
    if json_path:
        Path(json_path).write_text(json.dumps(compare(rows), indent=2) + "\n")
    log.info("report written to %s", markdown_path)
    return text
