"""The `visioncompress` command line: help with defaults, compile, job files, KFP connection errors.

No KFP backend can run here: connection failures use a closed 127.0.0.1 port, and the request shapes
of `run` / `schedule` are checked against a small stand-in of the KFP v2beta1 REST API on 127.0.0.1.
"""

import json
import os
import socket
import subprocess
import sys
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from visioncompress.cli import kfp_cron, main
from visioncompress.config.jobfile import load_job, map_job
from visioncompress.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
JOBS = REPO / "examples" / "jobs"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def _no_kfp_env(monkeypatch):
    for name in ("KFP_HOST", "KFP_NAMESPACE", "KFP_TOKEN", "KFP_TOKEN_FILE", "KFP_COOKIES", "KFP_SSL_CA_CERT",
                 "KFP_KUBE_CONTEXT", "KF_PIPELINES_ENDPOINT", "KF_PIPELINES_UI_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)


def _cli(capsys, *argv) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's --help and usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------- help


@pytest.mark.parametrize("argv, expected", [
    (["--help"], ["run", "compile", "upload", "schedule"]),
    (["run", "--help"], ["(default: kubeflow)", "(default: visioncompress)", "(default: runs/local)",
                         "insize = 32", "LEARNING_RATE = 0.001", "ptq_onnx: quant_format = 'QuantFormat.QDQ'"]),
    (["run", "ptq_torch", "--help"], ["parameters of ptq_torch", "choice = 'static'", "BATCH_SIZE = 1",
                                      "(default: 15.0)"]),
    (["compile", "--help"], ["(default: pipelines/compiled)", "PIPELINE"]),
    (["upload", "--help"], ["(default: kubeflow)", "--version"]),
    (["schedule", "--help"], ["create", "list", "delete"]),
    (["schedule", "create", "--help"], ["(default: 1)", "(default: False)", "(default: visioncompress)",
                                        "insize = 32", "[[ScheduledTime.2006-01-02]]"]),
    (["schedule", "list", "--help"], ["(default: kubeflow)", "(default: 15.0)"]),
    (["schedule", "delete", "--help"], ["(default: kubeflow)", "RECURRING_RUN"]),
])
def test_help_shows_parameters_with_defaults(capsys, argv, expected):
    code, out, _ = _cli(capsys, *argv)
    assert code == 0
    flat = " ".join(out.split())  # argparse wraps to the terminal width
    for text in expected:
        assert text in flat, f"{' '.join(argv)}: {text!r} missing"


# ---------------------------------------------------------------- compile


def test_compile_writes_yaml(capsys, tmp_path):
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    code, out, err = _cli(capsys, "compile", "ptq_torch", "--output-dir", str(tmp_path))
    assert code == 0, err
    path = tmp_path / "ptq_torch.yaml"
    assert f"wrote {path}" in out
    spec = next(yaml.safe_load_all(path.read_text()))
    json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
    assert spec["pipelineInfo"]["name"] == "visioncompress-ptq-torch"
    code, _, err = _cli(capsys, "compile", "ptq_torhc", "--output-dir", str(tmp_path))
    assert code == 2 and "ptq_torhc" in err and "ptq_torch" in err


# ---------------------------------------------------------------- job files


def test_spec_job_files_map_to_pipeline_and_parameters():
    from visioncompress.pipelines.registry import validate_pipeline_params

    onnx = load_job(JOBS / "onnx_ptq_cifar10.yaml")
    assert onnx.pipeline == "ptq_onnx"
    assert onnx.params["LEARNING_RATE"] == 0.001 and onnx.params["activation_type"] == "QuantType.QUInt8"
    assert (onnx.params["DATASET_SOURCE"], onnx.params["DATASET_NAME"]) == ("torchvision", "CIFAR10")
    assert {"JOB_PATH", "NUM_CLASSES"} <= set(onnx.ignored)
    # nyuntam's DEVICE: 'cuda:0' is honoured: the training steps go to the GPU pool and train on CUDA
    assert (onnx.params["DEVICE"], onnx.params["TRAIN_ON_GPU"]) == ("cuda:0", True)

    torch_job = load_job(JOBS / "torch_ptq_fashion_mnist.yaml")
    assert torch_job.pipeline == "ptq_torch"
    assert torch_job.params["choice"] == "static" and torch_job.params["CRITERION"] == "CrossEntropyLoss"
    assert torch_job.params["DATASET_SOURCE"] == "fashion-mnist" and "DATASET_NAME" not in torch_job.params
    assert torch_job.ignored == {"quant.FXQuant.EPOCHS": "not a parameter of pipeline 'ptq_torch'"}
    for job in (onnx, torch_job):
        validate_pipeline_params(job.pipeline, job.params, local=False)


def test_job_mapping_rules():
    job = {"ALGORITHM": "CPU Post Training Quantization - OpenVino", "LEARNING RATE": "1e-3", "BATCH_SIZE": 8,
           "OPTIMIZER": "Adam", "quant": {"NNCF": {"TRANSFORMER": False, "OPTIMIZER": "SGD"},
                                          "ONNXQuant": {"per_channel": True}}}
    mapped = map_job(job)
    assert mapped.pipeline == "ptq_openvino"
    assert mapped.params == {"LEARNING_RATE": 0.001, "BATCH_SIZE": 8, "OPTIMIZER": "SGD", "TRANSFORMER": False}
    assert mapped.ignored == {"quant.ONNXQuant": "section for another algorithm (ONNXQuant)"}
    assert map_job({"ALGORITHM": "ptq_torch"}).pipeline == "ptq_torch"
    assert map_job({"MODEL_NAME": "mobilenet_v2"}, "ptq_onnx").params == {"MODEL": "mobilenet_v2"}
    assert map_job({"DATASET_PATH": "s3://data/pets.zip"}, "ptq_torch").params["DATASET_SOURCE"] == "folder"


@pytest.mark.parametrize("job, pipeline, parameter, hint", [
    ({"ALGORITHM": "ONNXQuant", "LEARNING_RTE": 0.01}, None, "LEARNING_RTE", "did you mean 'LEARNING_RATE'?"),
    ({"ALGORITHM": "ONNXQuant", "quant": {"ONNXQuant": {"per_chanel": True}}}, None, "quant.ONNXQuant.per_chanel",
     "did you mean 'per_channel'?"),
    ({"ALGORITHM": "FXQuantt"}, None, "ALGORITHM", "did you mean 'FXQuant'?"),
    ({"ALGORITHM": "ONNXQuant"}, "ptq_torch", "ALGORITHM", "this job maps to 'ptq_onnx'"),
    ({"ALGORITHM": "NNCF", "PLATFORM": "mmyolo"}, None, "PLATFORM", "torchvision or timm"),
    ({"ALGORITHM": "NNCF", "LEARNING RATE": 0.1, "LEARNING_RATE": 0.2}, None, "LEARNING_RATE", "one value"),
])
def test_job_mapping_errors_name_the_key(job, pipeline, parameter, hint):
    with pytest.raises(ConfigError) as info:
        map_job(job, pipeline)
    assert info.value.parameter == parameter and hint in str(info.value)


def test_run_with_unknown_job_key_fails_before_any_work(capsys, tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text("ALGORITHM: FXQuant\nTASK: image_classification\nFINETUNE_EPOCH: 2\n")
    code, out, err = _cli(capsys, "run", "--config", str(job), "--local", "--root", str(tmp_path / "runs"))
    assert code == 2 and not (tmp_path / "runs").exists()
    assert err.strip() == ("visioncompress: FINETUNE_EPOCH=2 is not allowed; expected a parameter of pipeline "
                           "'ptq_torch' (did you mean 'FINETUNE_EPOCHS'?)")


def test_cron_is_given_to_kfp_with_seconds():
    assert kfp_cron("0 3 * * 1") == "0 0 3 * * 1"
    assert kfp_cron("0 0 3 * * 1") == "0 0 3 * * 1" and kfp_cron("@weekly") == "@weekly"
    with pytest.raises(ConfigError, match="--cron"):
        kfp_cron("every monday")


@pytest.mark.parametrize("cron, expected", [
    ("*/15 * * * *", "0 */15 * * * *"),
    ("30 0 3 1-5 JAN,jul mon-fri", "30 0 3 1-5 JAN,jul mon-fri"),
    ("0 0 12 ? * sun", "0 0 12 ? * sun"),
    ("0 0-30/10 8-18 * * 1,3,5", "0 0-30/10 8-18 * * 1,3,5"),
    ("0 5/20 * * * *", "0 5/20 * * * *"),
    ("@every 6h30m", "@every 6h30m"),
    ("@monthly", "@monthly"),
])
def test_cron_forms_the_kfp_scheduler_parses_are_accepted(cron, expected):
    assert kfp_cron(cron) == expected


@pytest.mark.parametrize("cron, problem", [
    ("0 3 * *", "5 fields"),                        # too few fields
    ("0 0 0 3 * * 1", "5 fields"),                  # too many
    ("60 * * * *", "a valid minutes field (0-59): '60' is outside 0-59"),
    ("0 24 * * *", "a valid hours field (0-23)"),
    ("0 0 0 * * 7", "a valid day of week field (0-6)"),  # robfig/cron v1: Sunday is 0 only
    ("0 0 0 0 * *", "a valid day of month field (1-31)"),
    ("0 3 * 13 *", "a valid month field (1-12)"),
    ("0 3 * * 5-1", "starts after it ends"),
    ("*/0 * * * *", "step '0'"),
    ("0 3 * * funday", "is not a number or a name"),
    ("? 3 * * *", "'?' is only allowed"),
    ("@fortnightly", "@daily/@weekly"),
    ("@every soon", "@daily/@weekly"),
])
def test_schedule_create_refuses_cron_kfp_would_reject(capsys, cron, problem):
    code, _, err = _cli(capsys, "schedule", "create", "ptq_torch", "--cron", cron)  # no host: refused before
    assert code == 2 and err.startswith(f"visioncompress: --cron={cron!r} is not allowed") and problem in err
    assert err.count("\n") == 1


@pytest.mark.parametrize("argv, message", [
    (["--max-concurrency", "11"], "--max-concurrency=11 is not allowed; expected a whole number from 1 to 10"),
    (["--max-concurrency", "0"], "--max-concurrency=0 is not allowed; expected a whole number from 1 to 10"),
    (["--start", "2026-12-02", "--end", "2026-12-01"],
     "--end='2026-12-01T00:00:00Z' is not allowed; expected a time after --start (2026-12-02T00:00:00Z)"),
    (["--start", "2026-12-01T05:00:00+02:00", "--end", "2026-12-01T03:00:00Z"],
     "--end='2026-12-01T03:00:00Z' is not allowed; expected a time after --start (2026-12-01T03:00:00Z)"),
    (["--start", "next monday"], "--start='next monday' is not allowed; expected an ISO date or time"),
])
def test_schedule_create_refuses_what_the_kfp_api_server_would(capsys, argv, message):
    code, _, err = _cli(capsys, "schedule", "create", "ptq_torch", "--cron", "0 3 * * 1", *argv)
    assert code == 2 and err.startswith(f"visioncompress: {message}") and err.count("\n") == 1


def _schedule_args(*argv):
    from visioncompress.cli import build_parser

    return build_parser().parse_args(["schedule", "create", "ptq_torch", *argv])


def test_schedule_options_reach_create_recurring_run():
    """What `schedule create` hands to kfp.Client.create_recurring_run, option by option."""
    import inspect

    from kfp import Client

    from visioncompress.cli import recurring_run_kwargs

    def kwargs(*argv):
        return recurring_run_kwargs(_schedule_args("--cron", "0 3 * * 1", *argv), experiment_id="exp-7",
                                    package="/tmp/p.yaml", params={"BATCH_SIZE": 8}, pipeline="ptq_torch")

    default = kwargs()
    assert set(default) <= set(inspect.signature(Client.create_recurring_run).parameters)
    assert default == dict(experiment_id="exp-7", job_name="ptq_torch-scheduled", cron_expression="0 0 3 * * 1",
                           max_concurrency=1, no_catchup=True, params={"BATCH_SIZE": 8},
                           pipeline_package_path="/tmp/p.yaml", enable_caching=None, start_time=None, end_time=None)
    assert kwargs("--catchup")["no_catchup"] is False
    assert kwargs("--cache")["enable_caching"] is True and kwargs("--no-cache")["enable_caching"] is False
    assert kwargs("--max-concurrency", "10")["max_concurrency"] == 10
    window = kwargs("--start", "2026-12-01", "--end", "2027-01-01T06:30:00+01:00")
    assert (window["start_time"], window["end_time"]) == ("2026-12-01T00:00:00Z", "2027-01-01T05:30:00Z")
    assert kwargs("--name", "nightly")["job_name"] == "nightly"


def test_schedule_experiment_and_caching_reach_kfp(tmp_path):
    """--experiment names the experiment the client creates; without --cache only data preparation stays cached."""
    from visioncompress.cli import _compile_to

    assert _schedule_args("--cron", "0 3 * * 1", "--experiment", "nightly-exp").experiment == "nightly-exp"
    package = _compile_to("ptq_torch", tmp_path / "ptq_torch.yaml")
    compiled = package.read_text()
    for flag in (True, False):  # --cache / --no-cache: KFP's enable_caching decides, the package is as compiled
        assert _compile_to("ptq_torch", tmp_path / "again.yaml", recompute_after_data=flag is None).read_text() \
            == compiled

    def caching(text):
        spec = next(yaml.safe_load_all(text))
        tasks = dict(spec["root"]["dag"]["tasks"])
        for component in spec["components"].values():
            tasks.update(component.get("dag", {}).get("tasks", {}))
        return {name: t.get("cachingOptions", {}).get("enableCache", False) for name, t in tasks.items()
                if not t["componentRef"]["name"].startswith("comp-condition")}

    as_compiled = caching(compiled)
    assert as_compiled["data-prep"] is True and as_compiled["finetune"] is True and as_compiled["publish"] is False
    package = _compile_to("ptq_torch", tmp_path / "scheduled.yaml", recompute_after_data=True)
    scheduled = caching(package.read_text())
    assert scheduled.pop("data-prep") is True and set(scheduled.values()) == {False}
    assert {"finetune", "quantize-torch", "benchmark", "report", "publish"} <= set(scheduled)
    # The rewritten package still loads as a pipeline spec with its platform (secret, placement) part.
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    spec, platform = yaml.safe_load_all(package.read_text())
    json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
    assert "kubernetes" in platform["platforms"]


# ---------------------------------------------------------------- KFP connection errors


def _subprocess_cli(*argv) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    for name in ("KFP_HOST", "KFP_TOKEN", "KFP_NAMESPACE"):
        env.pop(name, None)
    return subprocess.run([sys.executable, "-m", "visioncompress.cli", *argv], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_run_against_unreachable_host_is_one_line():
    host = f"http://127.0.0.1:{_closed_port()}"
    done = _subprocess_cli("run", "ptq_torch", "--host", host, "-p", "FINETUNE_EPOCHS=2")
    assert done.returncode == 2
    assert done.stderr.strip() == f"visioncompress: cannot reach KFP at {host}: connection refused"
    assert "Traceback" not in done.stdout + done.stderr


def test_schedule_against_unreachable_host_is_one_line(capsys):
    host = f"http://127.0.0.1:{_closed_port()}"
    done = _subprocess_cli("schedule", "list", "--host", host)
    assert done.returncode == 2 and "Traceback" not in done.stdout + done.stderr
    assert done.stderr.strip() == f"visioncompress: cannot reach KFP at {host}: connection refused"
    code, _, err = _cli(capsys, "schedule", "create", "ptq_torch", "--cron", "0 3 * * 1", "--host", host)
    assert code == 2 and err.strip() == f"visioncompress: cannot reach KFP at {host}: connection refused"


def test_missing_host_is_one_line(capsys):
    code, _, err = _cli(capsys, "schedule", "list")
    assert code == 2 and err.startswith("visioncompress: --host='' is not allowed") and err.count("\n") == 1


# ---------------------------------------------------------------- against a stand-in KFP API


class _FakeKfp(BaseHTTPRequestHandler):
    """Just enough of KFP's v2beta1 REST API for the client calls the CLI makes."""

    requests: list = []
    refuse: bool = False
    recurring: list = []
    pipelines: list = []

    def log_message(self, *args):
        pass

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:  # the multipart pipeline uploads
            body = {"multipart": raw}
        path = self.path.split("?")[0]
        type(self).requests.append((self.command, path, body, self.headers.get("Authorization")))
        if path == "/apis/v2beta1/healthz":
            return self._reply(200, {"multi_user": False})
        if type(self).refuse:
            return self._reply(403, {"error": "denied", "message": "user is not authorized"})
        if path == "/apis/v2beta1/experiments" and self.command == "GET":
            return self._reply(200, {"experiments": [], "total_size": 0})
        if path == "/apis/v2beta1/experiments":
            return self._reply(200, {"experiment_id": "exp-1", "display_name": body.get("display_name")})
        if path == "/apis/v2beta1/pipelines" and self.command == "GET":
            return self._reply(200, {"pipelines": type(self).pipelines} if type(self).pipelines else {})
        if path == "/apis/v2beta1/pipelines/upload":
            name = self.path.split("name=")[1].split("&")[0]
            type(self).pipelines.append({"pipeline_id": "pipe-1", "display_name": name})
            return self._reply(200, type(self).pipelines[-1])
        if path == "/apis/v2beta1/pipelines/upload_version":
            return self._reply(200, {"pipeline_id": "pipe-1", "pipeline_version_id": "ver-2"})
        if path == "/apis/v2beta1/runs":
            return self._reply(200, {"run_id": "run-1", "display_name": body.get("display_name")})
        if path == "/apis/v2beta1/recurringruns" and self.command == "POST":
            created = {**body, "recurring_run_id": "0c5a1c1e-1111-2222-3333-444455556666", "status": "ENABLED"}
            type(self).recurring.append(created)
            return self._reply(200, created)
        if path == "/apis/v2beta1/recurringruns":
            return self._reply(200, {"recurringRuns": type(self).recurring, "total_size": len(type(self).recurring)})
        if path.startswith("/apis/v2beta1/recurringruns/") and self.command == "DELETE":
            type(self).recurring = [r for r in type(self).recurring if not path.endswith(r["recurring_run_id"])]
            return self._reply(200, {})
        return self._reply(404, {"message": f"no route {path}"})

    do_GET = do_POST = do_DELETE = _handle


@pytest.fixture
def fake_kfp():
    _FakeKfp.requests, _FakeKfp.refuse, _FakeKfp.recurring, _FakeKfp.pipelines = [], False, [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeKfp)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_refusing_endpoint_is_one_line(capsys, fake_kfp):
    _FakeKfp.refuse = True
    code, _, err = _cli(capsys, "schedule", "list", "--host", fake_kfp, "--token", "expired")
    assert code == 2
    assert err.strip() == (f"visioncompress: KFP at {fake_kfp} refused the request: HTTP 403 Forbidden: "
                           "user is not authorized")
    assert ("GET", "/apis/v2beta1/recurringruns", {}, "Bearer expired") in _FakeKfp.requests


def test_schedule_create_list_delete(capsys, fake_kfp):
    code, out, err = _cli(capsys, "schedule", "create", "ptq_torch", "--cron", "0 3 * * 1", "--host", fake_kfp,
                          "-p", "FINETUNE_EPOCHS=2", "--name", "nightly-ptq")
    assert code == 0, err
    assert "scheduled nightly-ptq (0 0 3 * * 1, max concurrency 1, catch-up off, cache data preparation only)" in out
    body = next(b for method, path, b, _ in _FakeKfp.requests
                if method == "POST" and path == "/apis/v2beta1/recurringruns")
    assert body["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * 1"
    assert body["max_concurrency"] == "1" or body["max_concurrency"] == 1
    assert body["no_catchup"] is True and body["experiment_id"] == "exp-1"
    assert body["runtime_config"]["parameters"]["FINETUNE_EPOCHS"] == 2
    # each scheduled run publishes under its own date
    assert body["runtime_config"]["parameters"]["RUN_DATE"] == "[[ScheduledTime.2006-01-02]]"
    spec = body["pipeline_spec"].get("pipeline_spec", body["pipeline_spec"])  # wrapped with its platform spec
    assert spec["pipelineInfo"]["name"] == "visioncompress-ptq-torch"
    # without --cache a recurring run recomputes every step after data preparation
    cached = {t["componentRef"]["name"] for t in spec["root"]["dag"]["tasks"].values()
              if t.get("cachingOptions", {}).get("enableCache")}
    assert cached == {"comp-data-prep"}

    code, out, _ = _cli(capsys, "schedule", "list", "--host", fake_kfp)
    assert code == 0 and "nightly-ptq" in out and "0 0 3 * * 1" in out and "off" in out
    code, out, _ = _cli(capsys, "schedule", "delete", "nightly-ptq", "--host", fake_kfp)
    assert code == 0 and "deleted recurring run nightly-ptq (0c5a1c1e-" in out
    assert _FakeKfp.recurring == []


def test_remote_run_name_carries_the_date(capsys, fake_kfp):
    code, out, err = _cli(capsys, "run", "ptq_torch", "--host", fake_kfp, "-p", "BATCH_SIZE=8")
    assert code == 0, err
    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    assert out.startswith(f"submitted ptq_torch-{today}-") and out.strip().endswith(f"{fake_kfp}/#/runs/details/run-1")
    body = next(b for method, path, b, _ in _FakeKfp.requests if method == "POST" and path == "/apis/v2beta1/runs")
    assert body["display_name"].startswith(f"ptq_torch-{today}-")
    assert body["runtime_config"]["parameters"] == {"BATCH_SIZE": 8}


def test_upload_takes_a_reviewed_precompiled_file(capsys, fake_kfp, tmp_path):
    from visioncompress.pipelines.compile import COMPILED_DIR

    reviewed = tmp_path / "reviewed.yaml"
    reviewed.write_text((COMPILED_DIR / "ptq_torch.yaml").read_text())
    code, out, err = _cli(capsys, "upload", "--package", str(reviewed), "--host", fake_kfp)
    assert code == 0, err
    assert "visioncompress-ptq-torch" in out
    upload = next(b for method, path, b, _ in _FakeKfp.requests if path == "/apis/v2beta1/pipelines/upload")
    assert reviewed.read_bytes() in upload["multipart"], "the reviewed file is uploaded byte for byte"
    code, _, err = _cli(capsys, "upload", "--package", str(tmp_path / "missing.yaml"), "--host", fake_kfp)
    assert code == 2 and "--package" in err and "\n" not in err.strip()


def test_user_namespace_is_apart_from_the_kfp_service_namespace(capsys, fake_kfp):
    code, _, err = _cli(capsys, "run", "ptq_torch", "--host", fake_kfp, "--namespace", "team-a")
    assert code == 0, err
    from visioncompress.cli import _connection, build_parser

    args = build_parser(["run", "ptq_torch"]).parse_args(["run", "ptq_torch", "--kube-context", "prod",
                                                           "--namespace", "team-a", "--kfp-namespace", "kfp"])
    conn = _connection(args)
    assert (conn.namespace, conn.kfp_namespace) == ("team-a", "kfp")


def test_upload_creates_then_versions(capsys, fake_kfp):
    code, out, err = _cli(capsys, "upload", "ptq_onnx", "--host", fake_kfp)
    assert code == 0, err
    assert out.strip() == f"uploaded pipeline visioncompress-ptq-onnx: {fake_kfp}/#/pipelines/details/pipe-1"
    upload = next(b for method, path, b, _ in _FakeKfp.requests if path == "/apis/v2beta1/pipelines/upload")
    assert b"visioncompress-ptq-onnx" in upload["multipart"] and b"deploymentSpec" in upload["multipart"]
    code, out, err = _cli(capsys, "upload", "ptq_onnx", "--host", fake_kfp, "--version", "v2")
    assert code == 0, err
    assert out.strip() == (f"uploaded version v2 of visioncompress-ptq-onnx: "
                           f"{fake_kfp}/#/pipelines/details/pipe-1/version/ver-2")


def test_dry_run_prints_the_pipeline_and_every_parameter_without_running(capsys, tmp_path):
    code, out, err = _cli(capsys, "run", "--config", str(JOBS / "torch_ptq_fashion_mnist.yaml"), "--dry-run",
                          "--local", "--root", str(tmp_path / "runs"), "--param", "SEED=7")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "pipeline: ptq_torch"
    rows = {line[4:].split("=")[0].strip(): (line[2] == "*", line.split("= ", 1)[1]) for line in lines[2:]}
    from visioncompress.config.pipelines import pipeline_spec

    assert set(rows) == set(pipeline_spec("ptq_torch").defaults_map())  # the full set, each once
    assert rows["SEED"] == (True, "7") and rows["choice"] == (True, '"static"')
    assert rows["WARMUP"] == (False, "5")  # a default, unmarked
    assert not (tmp_path / "runs").exists()  # nothing ran
    code, out, err = _cli(capsys, "run", "--config", str(JOBS / "torch_ptq_fashion_mnist.yaml"), "--dry-run",
                          "--param", "BATCH_SIZE=0")
    assert code == 2 and "BATCH_SIZE" in err and not out  # still validated
