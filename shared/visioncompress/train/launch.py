"""Multi-process training in one step: PyTorch's own launcher (torchrun) and torch.distributed.

``run_stage`` of a training stage calls ``prepare`` before any work (DEVICE, NUM_PROCESSES and
CHECKPOINT_URI are checked there) and, when more than one process is wanted, ``launch``: it writes a
SPEC file and runs ``python -m torch.distributed.run --standalone --nproc-per-node N -m
visioncompress.train.launch SPEC.json``. SPEC is::

    {"stage": <name in visioncompress.stages.STAGES>, "params": {SPEC_NAME: value, ...},
     "inputs": {artifact name: local path}, "outputs": {artifact name: local path},
     "checkpoints": <resolved checkpoint location>, "result": <path of the result JSON>}

Every rank (``main`` below) joins the process group (NCCL on CUDA, Gloo on CPU) and makes the stage's
one library call with stand-in artifacts (``.path``, ``.uri``, ``.metadata``, ``.log_metric``); the
engine wraps the model in DistributedDataParallel and gives each rank its shard. Only rank 0 writes
the output artifacts (other ranks write into a scratch folder that is removed), checkpoints and logs;
rank 0 then dumps its output artifacts' metadata and metrics to ``result``, which the parent applies
to its real (KFP) artifacts. A failing worker's error is what the parent step fails with.

A multi-node job (Kubeflow Trainer) runs the same worker entry with the same SPEC on every node.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping

from visioncompress.errors import VisionCompressError


class WorkerError(VisionCompressError):
    """A training process failed; the message is its own error."""


class StandIn:
    """An artifact as a training worker sees it: a local path, metadata and logged metrics."""

    def __init__(self, path: str, uri: str | None = None):
        self.path, self.uri = str(path), str(uri or path)
        self.metadata: dict[str, Any] = {}
        self.metrics: dict[str, float] = {}

    def log_metric(self, name: str, value: float) -> None:
        self.metrics[name] = value


def checkpoint_location(uri: str, output: Any, stage: str) -> str:
    """Where stage ``stage`` keeps its checkpoints: ``<CHECKPOINT_URI>/<stage>``; else, when the output
    artifact lives in object storage (a pipeline root in S3/MinIO), a sibling prefix of it keyed by the
    stage; else a folder beside the output (lost with the pod)."""
    from visioncompress.storage.s3 import is_remote

    if uri:
        return f"{str(uri).rstrip('/')}/{stage}"
    out_uri = str(getattr(output, "uri", "") or "")
    if is_remote(out_uri):
        return f"{out_uri.rstrip('/').rsplit('/', 1)[0]}/{stage}-checkpoints"
    return str(output.path) + ".checkpoints"


def prepare(stage: str, train_config, output: Any) -> tuple[int, str]:
    """(processes, checkpoint location) of a training stage, checked before any work: a missing CUDA
    device (DEVICE), more processes than GPUs (NUM_PROCESSES), an unusable CHECKPOINT_URI."""
    from visioncompress.train.checkpoint import check_checkpoint_location
    from visioncompress.train.engine import resolve_processes

    processes = resolve_processes(train_config)
    location = checkpoint_location(train_config.checkpoint_uri, output, stage)
    check_checkpoint_location(location)
    return processes, location


def _json_safe(params: Mapping[str, Any]) -> dict:
    safe = {}
    for key, value in params.items():
        try:
            json.dumps(value)
        except TypeError:
            continue
        safe[key] = value
    return safe


def launch(stage: str, params: Mapping[str, Any], artifacts: Mapping[str, Any], processes: int,
           checkpoints: str, *, inputs: tuple[str, ...], outputs: tuple[str, ...]) -> None:
    """Run ``stage`` in ``processes`` torchrun workers on this node; apply rank 0's output metadata and
    metrics to ``artifacts``; raise WorkerError with the workers' error when they fail."""
    import visioncompress

    workdir = Path(tempfile.mkdtemp(prefix="vc-launch-"))
    try:
        spec = {"stage": stage, "params": _json_safe(params),
                "inputs": {n: artifacts[n].path for n in inputs if artifacts.get(n) is not None},
                "outputs": {n: artifacts[n].path for n in outputs},
                "checkpoints": checkpoints, "result": str(workdir / "result.json")}
        spec_path = workdir / "spec.json"
        spec_path.write_text(json.dumps(spec, indent=2))
        env = dict(os.environ)
        root = str(Path(visioncompress.__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
        env["VC_LAUNCH_ERRORS"] = str(workdir)
        # the step's CPUs shared among its processes (torchrun's own default is one thread each)
        env["OMP_NUM_THREADS"] = str(max(1, len(os.sched_getaffinity(0)) // processes))
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
                   "-m", "visioncompress.train.launch", str(spec_path)]
        print(f"{stage}: {processes} training processes: {' '.join(command[1:])}", flush=True)
        sys.stdout.flush()
        sys.stderr.flush()
        code = subprocess.run(command, env=env, stdin=subprocess.DEVNULL).returncode  # output streams through
        if code:
            errors = sorted(workdir.glob("error-*.json"))
            if errors:
                first = json.loads(min(errors, key=lambda p: p.stat().st_mtime_ns).read_text())
                raise WorkerError(f"training process {first['rank']} of {processes} failed: {first['message']}")
            raise WorkerError(f"torchrun with {processes} processes exited with code {code} (see the log above)")
        result = json.loads((workdir / "result.json").read_text())
        for name, data in result["outputs"].items():
            artifacts[name].metadata.update(data["metadata"])
            for metric, value in data["metrics"].items():
                artifacts[name].log_metric(metric, value)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str]) -> int:
    import torch
    import torch.distributed as dist

    from visioncompress.config import StorageConfig, TrainConfig
    from visioncompress.stages import STAGES
    from visioncompress.train.engine import resolve_device

    spec = json.loads(Path(argv[0]).read_text())
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    stage = STAGES[spec["stage"]]
    scratch = Path(tempfile.mkdtemp(prefix=f"vc-rank{rank}-"))
    try:
        configs = stage.configs(spec["params"])
        if StorageConfig in configs:
            os.environ.update(configs[StorageConfig].environment())
        device = resolve_device(configs[TrainConfig].device)
        if device.type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if rank:
            logging.getLogger("visioncompress").setLevel(logging.WARNING)
        artifacts: dict[str, Any] = {n: StandIn(p) for n, p in spec["inputs"].items()}
        outputs = {n: StandIn(p if rank == 0 else scratch / n) for n, p in spec["outputs"].items()}
        stage.run({**artifacts, **outputs, "_params": spec["params"], "_checkpoints": spec["checkpoints"]}, configs)
        if rank == 0:
            Path(spec["result"]).write_text(json.dumps({"outputs": {
                n: {"metadata": a.metadata, "metrics": a.metrics} for n, a in outputs.items()}}, default=str))
        dist.barrier()
        dist.destroy_process_group()
        return 0
    except BaseException as exc:
        folder = os.environ.get("VC_LAUNCH_ERRORS")
        if folder:
            message = " ".join(str(exc).split()) if isinstance(exc, VisionCompressError) else \
                f"unexpected {type(exc).__name__}: {' '.join(str(exc).split())}"
            Path(folder, f"error-{rank}.json").write_text(json.dumps({"rank": rank, "message": message}))
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    from torch.distributed.elastic.multiprocessing.errors import record

    sys.exit(record(main)(sys.argv[1:]))
