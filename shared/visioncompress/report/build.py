"""Report stage: a Markdown comparison (table + plot) and a JSON of every measured row."""

from __future__ import annotations

import base64
import io
import json
import os
import platform
from pathlib import Path

from visioncompress.log import get_logger
from visioncompress.report.tables import QUALITY_LABELS, compare, markdown_table, quality

log = get_logger("report")


def plot_png(rows: list[dict]) -> bytes:
    """Latency (p50) against top-1, one point per variant/backend/batch size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batch_sizes = sorted({r["batch_size"] for r in rows})
    fig, axes = plt.subplots(1, len(batch_sizes), figsize=(5 * len(batch_sizes), 4), squeeze=False)
    backends = sorted({r["backend"] for r in rows})
    colours = {b: plt.cm.tab10(i) for i, b in enumerate(backends)}
    for ax, batch_size in zip(axes[0], batch_sizes):
        for i, r in enumerate(r for r in rows if r["batch_size"] == batch_size):
            marker = "o" if r["variant"] == "fp32" else "s"
            ax.scatter(r["p50_ms"], r[quality(r)], marker=marker, color=colours[r["backend"]])
            ax.annotate(f"{r['variant']}/{r['backend']}", (r["p50_ms"], r[quality(r)]), fontsize=7,
                        xytext=(4, 4 + 7 * (i % 3)), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel(f"p50 latency (ms, log scale), batch {batch_size}")
        ax.set_ylabel(QUALITY_LABELS[quality(rows[0])])
        ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {len(os.sched_getaffinity(0))} cores, Python {platform.python_version()}"


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
                 *, title: str = "visioncompress comparison") -> str:
    """Write the Markdown report (plot embedded) and, if asked, the enriched rows as JSON."""
    table = markdown_table(rows)
    image = base64.b64encode(plot_png(rows)).decode() if rows else ""
    text = "\n".join([
        f"# {title}", "",
        f"Measured on {machine_description()}. Speed-up and the accuracy change (Δ) are against FP32 "
        "in the same runtime at the same batch size.", threads_description(rows), "", table, "",
        f"![latency vs accuracy](data:image/png;base64,{image})" if image else "", "",
    ])
    Path(markdown_path).parent.mkdir(parents=True, exist_ok=True)
    Path(markdown_path).write_text(text)
    if json_path:
        Path(json_path).write_text(json.dumps(compare(rows), indent=2) + "\n")
    log.info("report written to %s", markdown_path)
    return text
