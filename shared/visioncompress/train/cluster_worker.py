"""One node of a multi-node training job (``visioncompress.train.cluster``).

    python -m visioncompress.train.cluster_worker SPEC_JSON

SPEC_JSON: ``{"stage", "params", "inputs": {artifact: URI}, "outputs": {artifact: URI prefix}, "num_nodes",
"procs_per_node"}``. The node downloads the inputs, writes the training entry's spec with local paths
(``{"stage", "params", "inputs": {artifact: path}, "outputs": {artifact: path}}``), runs
``torchrun ... -m visioncompress.train.launch SPEC.json`` with the rendezvous the controller put in the
environment (Kubeflow Trainer's torch runtime: ``PET_*``; the Training Operator: ``MASTER_ADDR``, ``RANK``), and
node 0 uploads the outputs rank 0 wrote (the model artifact carries its metadata) to the output prefixes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping

from visioncompress.errors import ConfigError

LAUNCH_MODULE = "visioncompress.train.launch"
DEFAULT_MASTER_PORT = "29500"


def _first(env: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        value = str(env.get(name, "")).strip()
        if value:
            return value
    return None


def rendezvous(env: Mapping[str, str], spec: Mapping[str, Any]) -> dict:
    """Nodes, processes per node, this node's rank and the master address, from what the controller set.

    Node rank: ``PET_NODE_RANK`` (Trainer), else ``JOB_COMPLETION_INDEX`` (the node's indexed Job), else ``RANK``
    (a PyTorchJob pod's replica rank: master 0, workers 1..). Nodes and processes come from the spec, which
    the job was sized from.
    """
    rank = _first(env, "PET_NODE_RANK", "JOB_COMPLETION_INDEX", "RANK")
    master = _first(env, "PET_MASTER_ADDR", "MASTER_ADDR")
    if rank is None or master is None:
        raise ConfigError("NUM_NODES", spec.get("num_nodes"), "a run inside a TrainJob or PyTorchJob (no node "
                          "rank / master address in this environment)")
    nodes, per_node = int(spec["num_nodes"]), int(spec["procs_per_node"])
    if not 0 <= int(rank) < nodes:
        raise ConfigError("NUM_NODES", nodes, f"more than this node's rank {rank}")
    return {"nnodes": nodes, "nproc_per_node": per_node, "node_rank": int(rank), "master_addr": master,
            "master_port": int(_first(env, "PET_MASTER_PORT", "MASTER_PORT") or DEFAULT_MASTER_PORT)}


def torchrun_command(rdzv: Mapping[str, Any], spec_path: str | os.PathLike) -> list[str]:
    """torchrun with a static rendezvous: global rank = node rank x processes per node + local rank."""
    return [sys.executable, "-m", "torch.distributed.run", f"--nnodes={rdzv['nnodes']}",
            f"--nproc-per-node={rdzv['nproc_per_node']}", f"--node-rank={rdzv['node_rank']}",
            f"--master-addr={rdzv['master_addr']}", f"--master-port={rdzv['master_port']}",
            "-m", LAUNCH_MODULE, str(spec_path)]


def localize(spec: Mapping[str, Any], workdir: str | os.PathLike) -> dict:
    """The training entry's spec with local paths: inputs downloaded, outputs under ``workdir/outputs``."""
    from visioncompress.storage.s3 import download

    from visioncompress.stages import STAGES

    workdir = Path(workdir)
    inputs = {name: str(download(uri, workdir / "inputs" / name)) for name, uri in spec["inputs"].items()}
    # every output of the stage (metrics too: the step logs them from the model's metadata, nothing uploads them)
    outputs = {name: str(workdir / "outputs" / name) for name, _ in STAGES[spec["stage"]].outputs}
    return {"stage": spec["stage"], "params": spec["params"], "inputs": inputs, "outputs": outputs,
            "checkpoints": spec.get("checkpoints") or str(workdir / "checkpoints"),
            "result": str(workdir / "result.json")}


def upload_outputs(local: Mapping[str, Any], spec: Mapping[str, Any]) -> None:
    """Node 0: every output folder (or file) rank 0 wrote, to its prefix."""
    from visioncompress.errors import ArtifactError
    from visioncompress.storage.s3 import upload_dir, upload_file

    for name, uri in spec["outputs"].items():
        path = Path(local["outputs"][name])
        if path.is_dir():
            upload_dir(path, uri.rstrip("/") + "/")
        elif path.is_file():
            upload_file(path, uri.rstrip("/") + "/")
        else:
            raise ArtifactError(f"rank 0 wrote no {name!r} output at {path}")


def main(argv: list[str] | None = None) -> int:
    from visioncompress.kfp_io import stage

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m visioncompress.train.cluster_worker SPEC_JSON", file=sys.stderr)
        return 2
    spec = json.loads(argv[0])
    with stage(spec["stage"]):
        rdzv = rendezvous(os.environ, spec)
        workdir = Path(os.environ.get("VC_TRAIN_WORKDIR") or tempfile.mkdtemp(prefix="vc-train-"))
        local = localize(spec, workdir)
        spec_path = workdir / "spec.json"
        spec_path.write_text(json.dumps(local, indent=2) + "\n")
        print(f"node {rdzv['node_rank']}/{rdzv['nnodes']}: {rdzv['nproc_per_node']} processes, master "
              f"{rdzv['master_addr']}:{rdzv['master_port']}", flush=True)
        code = subprocess.call(torchrun_command(rdzv, spec_path))
        if code != 0:
            return code  # the training entry printed its own one-line error
        if rdzv["node_rank"] == 0:
            upload_outputs(local, spec)
    return 0


if __name__ == "__main__":
    sys.exit(main())
