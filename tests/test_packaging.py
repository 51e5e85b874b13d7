"""`pip install .` (not editable) gives the whole product: library, components, pipelines and a working CLI."""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_lists_every_package():
    import tomllib

    import setuptools

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    expected = set(setuptools.find_packages(str(ROOT / "shared"), include=["visioncompress*"]))
    expected |= {"visioncompress.components", "visioncompress.pipelines"}
    expected |= {f"visioncompress.components.{p.name}" for p in (ROOT / "components").iterdir()
                 if (p / "component.py").is_file()}
    assert listed == expected


def test_library_core_imports_no_kfp():
    code = ("import sys, visioncompress.stages, visioncompress.config.pipelines, visioncompress.config.jobfile, "
            "visioncompress.docs; print('kfp' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.strip() == "False"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The wheel built from a copy of the checkout, installed without -e into a fresh venv that reuses this
    environment's dependencies (a .pth line; this venv's editable finder is not loaded there)."""
    tmp = tmp_path_factory.mktemp("pkg")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("shared", "components", "pipelines"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    wheels = tmp / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(wheels), str(src)], check=True, capture_output=True, text=True)
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "reuse-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    wheel = next(wheels.glob("visioncompress-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)],
                   check=True, capture_output=True, text=True)
    assert (venv / "bin" / "visioncompress").is_file(), "the console script must be installed"
    return venv, site


def _run(venv, args, cwd):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '')}"
    return subprocess.run([str(venv / "bin" / "visioncompress"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)


def test_installed_package_compiles_from_any_directory(installed, tmp_path):
    venv, site = installed
    out = _run(venv, ["--help"], tmp_path)
    assert out.returncode == 0 and "compile" in out.stdout, out.stderr
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import visioncompress.pipelines as p; "
                            "print(p.__file__)"], capture_output=True, text=True, cwd=tmp_path,
                           env={"PATH": os.environ["PATH"]})
    assert where.stdout.strip().startswith(str(site)), "the installed copy must be the one imported"
    out = _run(venv, ["compile", "ptq_torch"], tmp_path)
    assert out.returncode == 0, out.stderr
    compiled = tmp_path / "pipelines" / "compiled" / "ptq_torch.yaml"
    spec = next(yaml.safe_load_all(compiled.read_text()))
    assert spec["pipelineInfo"]["name"] == "visioncompress-ptq-torch"
    assert compiled.read_text() == (ROOT / "pipelines" / "compiled" / "ptq_torch.yaml").read_text()
    out = _run(venv, ["run", "ptq_torch", "--help"], tmp_path)
    assert "SEED = 43" in out.stdout and "random seed" in out.stdout


def test_installed_package_runs_a_pipeline_locally(installed, tmp_path):
    venv, _ = installed
    out = _run(venv, ["run", "ptq_onnx", "--local", "--root", "runs", "-p", "insize=16", "-p", "TRAINING=False",
                      "-p", "MAX_TRAIN_SAMPLES=200", "-p", "MAX_TEST_SAMPLES=100", "-p", "CALIBRATION_SAMPLES=32",
                      "-p", "MODEL=mobilenet_v3_small", "-p", "LATENCY_BATCH_SIZES=[4]"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "report:" in out.stdout and list((tmp_path / "runs").glob("*/report/report"))
