"""How many CPU threads a stage may use: the pod's CPU quota (cgroup v2 or v1), else the visible cores.

On Kubernetes a pod's CPU limit is a CFS quota, not a smaller set of cores: ``os.cpu_count()`` and the
affinity mask still show every core of the node, and a runtime that starts one thread per core is
throttled. ``THREADS`` (> 0) overrides.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def cpu_quota(root: str | os.PathLike = CGROUP_ROOT) -> float | None:
    """CPUs the cgroup may use (quota / period), or None when unlimited or unreadable."""
    root = Path(root)
    v2 = root / "cpu.max"  # cgroup v2: "max 100000" or "400000 100000"
    try:
        fields = v2.read_text().split() if v2.is_file() else []
        if fields:
            return None if fields[0] == "max" else int(fields[0]) / int(fields[1])
    except (OSError, ValueError, IndexError):
        pass
    for folder in (root / "cpu,cpuacct", root / "cpu", root):  # cgroup v1
        try:
            quota = int((folder / "cpu.cfs_quota_us").read_text())
            period = int((folder / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return None if quota <= 0 or period <= 0 else quota / period
    return None


@dataclass(frozen=True)
class Threads:
    count: int
    quota: float | None  # CPUs allowed by the cgroup (None: no limit)
    visible_cores: int
    source: str  # THREADS, cgroup quota, visible cores

    def describe(self) -> str:
        quota = "none" if self.quota is None else f"{self.quota:g} CPUs"
        return f"{self.count} threads ({self.source}; CPU quota {quota}, {self.visible_cores} visible cores)"


def thread_count(threads: int = 0, root: str | os.PathLike = CGROUP_ROOT) -> Threads:
    visible = len(os.sched_getaffinity(0))
    quota = cpu_quota(root)
    if threads and threads > 0:
        return Threads(int(threads), quota, visible, "THREADS")
    if quota is not None and quota < visible:
        return Threads(max(1, math.floor(quota)), quota, visible, "cgroup quota")
    return Threads(visible, quota, visible, "visible cores")


def apply_threads(threads: int = 0) -> Threads:
    """Set torch's thread count for this process and return the choice (runtimes take ``count``)."""
    choice = thread_count(threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(choice.count))
    try:
        import torch

        torch.set_num_threads(choice.count)
    except ImportError:  # pragma: no cover - torch is a dependency of every image
        pass
    return choice
