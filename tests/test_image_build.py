"""The CPU image, built for real, runs a real component through kfp.local's DockerRunner.

Needs a Docker daemon (`make test-images` installs docker.io + debootstrap and starts one). Nothing is
pulled: the base image comes from Debian's debootstrap (tests/images/make_base.sh), pip in the build
installs from a wheelhouse resolved on this host (tests/images/build.py). The first run takes minutes
(base image, wheelhouse, image); later ones reuse Docker's layer cache.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[1]
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
# A tiny run: the split sizes below follow from these parameters.
PARAMS = {"insize": 16, "MAX_TRAIN_SAMPLES": 300, "MAX_TEST_SAMPLES": 100, "CALIBRATION_SAMPLES": 32,
          "VAL_FRACTION": 0.1, "SEED": 3}

# Runs in a fresh interpreter so that VC_IMAGE_CPU is read when `components` is first imported.
RUN_DATA_PREP = r"""
import json, os, sys

from kfp import local
from visioncompress.components.data_prep.component import data_prep

root, params = sys.argv[1], json.loads(sys.argv[2])
os.umask(0)  # folders kfp.local makes on the host stay writable for the image's non-root user
local.init(runner=local.DockerRunner(), pipeline_root=root)  # no mounts: the image ships Fashion-MNIST
task = data_prep(**params)
print("RESULT=" + json.dumps({"path": task.output.path, "metadata": task.output.metadata}))
"""


def _docker_ready() -> str | None:
    if not shutil.which("docker"):
        return "the docker CLI is not installed (make test-images installs docker.io)"
    try:
        import docker  # noqa: F401  (kfp.local.DockerRunner needs the SDK)
    except ImportError:
        return "the docker Python SDK is missing (pip install docker)"
    info = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True)
    if info.returncode != 0:
        return f"no Docker daemon answers ({info.stderr.strip()[:200]}); make test-images starts one"
    return None


@pytest.fixture(scope="module")
def cpu_image():
    reason = _docker_ready()
    if reason:
        pytest.skip(reason)
    result = subprocess.run([sys.executable, str(REPO / "tests" / "images" / "build.py"), "cpu"],
                            stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert result.returncode == 0, "building images/cpu/Dockerfile failed (its log is above)"
    return result.stdout.strip().splitlines()[-1]


def _inspect(image: str) -> dict:
    out = subprocess.run(["docker", "image", "inspect", image], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)[0]


def test_cpu_image_runs_as_non_root_and_has_no_pip_cache(cpu_image):
    config = _inspect(cpu_image)["Config"]
    assert config["User"] == "1000"
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["VIRTUAL_ENV"] == "/opt/venv" and env["PIP_NO_CACHE_DIR"] == "1"
    probe = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", cpu_image, "sh", "-c",
         "id -u; python -c 'import sys, torch, visioncompress; print(sys.version_info[:2], torch.__version__)'; "
         "du -s /root/.cache/pip 2>/dev/null || echo no-pip-cache"],
        capture_output=True, text=True, timeout=300)
    assert probe.returncode == 0, probe.stderr
    uid, versions, cache = probe.stdout.strip().splitlines()
    assert uid == "1000"
    assert versions.startswith("(3, 11) 2.14.1")
    assert cache == "no-pip-cache"


@pytest.mark.skipif(not (FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file(),
                    reason="Fashion-MNIST is missing on the host (apt-get install dataset-fashion-mnist)")
def test_data_prep_with_the_default_source_runs_in_the_cpu_image(cpu_image, tmp_path):
    """DATASET_SOURCE=fashion-mnist with no path: the image's own copy, nothing mounted from the host."""
    root = tmp_path / "pipeline-root"
    root.mkdir()
    root.chmod(0o777)  # the component runs as uid 1000
    env = {**os.environ, "VC_IMAGE_CPU": cpu_image, "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-c", RUN_DATA_PREP, str(root), json.dumps(PARAMS)],
                         capture_output=True, text=True, env=env, cwd=REPO, timeout=900)
    print(run.stdout[-6000:], run.stderr[-6000:])
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"Found image {cpu_image!r}" in run.stdout  # ran in the image just built, nothing pulled
    result = json.loads(next(l for l in run.stdout.splitlines() if l.startswith("RESULT="))[len("RESULT="):])

    # The artifact's KFP metadata, as the component logged it.
    metadata = result["metadata"]
    assert metadata["task"] == "classification" and metadata["source"] == "fashion-mnist"
    assert metadata["num_classes"] == 10 and metadata["input_size"] == 16
    assert metadata["splits"] == {"train": 270, "val": 30, "calibration": 32, "test": 100}

    # The files, written inside the container by the non-root user.
    dataset = Path(result["path"])
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert manifest["splits"] == metadata["splits"] and len(manifest["classes"]) == 10
    assert (dataset / "manifest.json").stat().st_uid == 1000
    for split, count in manifest["splits"].items():
        with np.load(dataset / f"{split}.npz") as data:
            # stored at Fashion-MNIST's own 28 px, resized when read
            assert data["images"].shape == (count, 28, 28, 1) and data["images"].dtype == np.uint8
            assert data["labels"].shape == (count,) and set(data["labels"]) <= set(range(10))

    # The same call on the host gives the same dataset: the image runs this repository's code.
    from visioncompress.config import DataConfig
    from visioncompress.data import prepare_dataset

    config = DataConfig(source="fashion-mnist", insize=16, val_fraction=0.1, calibration_samples=32,
                        max_train_samples=300, max_test_samples=100, seed=3)
    host = prepare_dataset(config, tmp_path / "host")
    assert host.mean == manifest["mean"] and host.std == manifest["std"]
    for split in manifest["splits"]:
        with np.load(dataset / f"{split}.npz") as ours, np.load(tmp_path / "host" / f"{split}.npz") as theirs:
            assert np.array_equal(ours["labels"], theirs["labels"])
            assert np.abs(ours["images"].astype(int) - theirs["images"].astype(int)).max() <= 1


def test_detection_image_extends_the_cpu_image(cpu_image):
    """images/detection/Dockerfile builds on the CPU image (its last step imports the mm stack)."""
    tag = cpu_image.rsplit(":", 1)[1]
    result = subprocess.run([sys.executable, str(REPO / "tests" / "images" / "build.py"), "detection",
                             "--tag", tag, "--base", cpu_image], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert result.returncode == 0, "building images/detection/Dockerfile failed (its log is above)"
    image = result.stdout.strip().splitlines()[-1]
    cpu, detection = _inspect(cpu_image), _inspect(image)
    assert detection["Config"]["User"] == "1000"
    # The CPU image's layers are shared, not rebuilt.
    assert detection["RootFS"]["Layers"][: len(cpu["RootFS"]["Layers"])] == cpu["RootFS"]["Layers"]
    probe = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", image, "python", "-c",
         "import cv2, mmdet, torch; print(cv2.__version__, mmdet.__version__, torch.__version__)"],
        capture_output=True, text=True, timeout=300)
    assert probe.returncode == 0, probe.stderr
    cv2_version, mmdet_version, torch_version = probe.stdout.split()
    assert cv2_version.startswith("5.") and mmdet_version == "3.3.0"
    assert torch_version.split("+")[0] == "2.14.1"  # requirements.txt constrains the extras
