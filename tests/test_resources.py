"""Thread counts follow the pod's CPU quota (cgroup v1/v2), THREADS overrides, the benchmark records both."""

import json
import os
import subprocess
import sys

import pytest

from visioncompress.resources import cpu_quota, thread_count


def _v2(tmp_path, text):
    (tmp_path / "cpu.max").write_text(text)
    return tmp_path


def test_cgroup_v2_quota(tmp_path):
    assert cpu_quota(_v2(tmp_path, "150000 100000\n")) == 1.5
    assert cpu_quota(_v2(tmp_path, "max 100000\n")) is None


def test_cgroup_v1_quota(tmp_path):
    folder = tmp_path / "cpu,cpuacct"
    folder.mkdir()
    (folder / "cpu.cfs_quota_us").write_text("200000\n")
    (folder / "cpu.cfs_period_us").write_text("100000\n")
    assert cpu_quota(tmp_path) == 2.0
    (folder / "cpu.cfs_quota_us").write_text("-1\n")
    assert cpu_quota(tmp_path) is None


def test_no_cgroup_files_means_no_quota(tmp_path):
    assert cpu_quota(tmp_path) is None


def test_thread_count_follows_quota_and_threads_overrides(tmp_path):
    visible = len(os.sched_getaffinity(0))
    root = _v2(tmp_path, "100000 100000\n")  # 1 CPU
    choice = thread_count(0, root)
    assert (choice.count, choice.source, choice.quota) == (1, "cgroup quota" if visible > 1 else "visible cores", 1.0)
    assert thread_count(3, root).count == 3 and thread_count(3, root).source == "THREADS"
    unlimited = thread_count(0, _v2(tmp_path, "max 100000\n"))
    assert unlimited.count == visible and unlimited.quota is None
    assert "CPU quota" in choice.describe()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 visible cores to restrict to 1")
def test_benchmark_threads_follow_a_restricted_cpu_set(tmp_path):
    """A real process limited to one core (taskset) measures with one thread and says so."""
    code = ("import json,sys; from visioncompress.benchmark.runners import default_threads; "
            "from visioncompress.resources import apply_threads; import torch; c = apply_threads(0); "
            "print(json.dumps([default_threads(0), torch.get_num_threads(), c.visible_cores]))")
    out = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "OMP_NUM_THREADS": ""})
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [1, 1, 1]


def test_run_stage_applies_threads_and_storage_parameters(tmp_path, monkeypatch):
    """THREADS and S3_* reach the process a stage runs in (what a component does in its pod)."""
    import torch

    from visioncompress.stages import STAGES, Stage, run_stage

    seen = {}

    def probe(a, c):
        seen.update(threads=torch.get_num_threads(), endpoint=os.environ.get("VC_S3_ENDPOINT"))

    monkeypatch.delenv("VC_S3_ENDPOINT", raising=False)
    before = torch.get_num_threads()
    original = STAGES["data_prep"]
    monkeypatch.setitem(STAGES, "data_prep", Stage("data_prep", original.doc, probe, outputs=original.outputs,
                                                     uses=original.uses, kind=original.kind))
    try:
        run_stage("data_prep", {"dataset": None, "THREADS": 1, "S3_ENDPOINT": "http://127.0.0.1:9"})
    finally:
        torch.set_num_threads(before)
        os.environ.pop("VC_S3_ENDPOINT", None)
    assert seen == {"threads": 1, "endpoint": "http://127.0.0.1:9"}
