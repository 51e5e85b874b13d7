"""Run a pipeline on this machine through kfp.local (placement is ignored locally).

    python -m visioncompress.pipelines.local compare --root runs/demo -p FINETUNE_EPOCHS=2 -p BATCH_SIZE=64
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import os
import re
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from visioncompress.errors import StageFailed, VisionCompressError
from visioncompress.kfp_io import FAILURE_FILE_ENV

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_FAILED_TASK = re.compile(r"Inner task failed: '([^']+)'")


def _parse_value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        lowered = text.lower()
        return {"true": True, "false": False}.get(lowered, text)


def parse_assignments(pairs) -> dict:
    params = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--param {pair!r}: expected NAME=VALUE")
        params[key.strip()] = _parse_value(value.strip())
    return params


OPTIONAL_PARAM = "TENSORRT_OPTIONAL"


def local_run_params(params: dict, pipeline_defaults: dict, *, out=None) -> dict:
    """For a local run: make the TensorRT steps optional, with a visible notice, when this machine cannot run them.

    Only when the pipeline has the parameter and the caller did not set it; an explicit
    TENSORRT_OPTIONAL=False keeps the strict behaviour (the build stage fails with its one-line reason).
    """
    if OPTIONAL_PARAM not in pipeline_defaults or OPTIONAL_PARAM in params:
        return params
    if "USE_TENSORRT" in pipeline_defaults and not params.get("USE_TENSORRT", pipeline_defaults["USE_TENSORRT"]):
        return params  # the branch does not run at all
    from visioncompress.quantize.tensorrt import tensorrt_unavailable_reason

    reason = tensorrt_unavailable_reason()
    if reason is None:
        return params
    print(f"NOTICE: the TensorRT branch will be skipped in this local run: {reason}. "
          f"The rest of the comparison runs as usual (set {OPTIONAL_PARAM}=False to fail instead).",
          file=out or sys.stdout, flush=True)
    return {**params, OPTIONAL_PARAM: True}


class _TaskOutput:
    """Where kfp.local prints the tasks' output: all of it to the log file, the terminal without stacks.

    Tracebacks (an unexpected error inside a stage) stay in the log; the terminal gets the stage's
    one-line error. With ``debug`` the terminal gets everything.
    """

    def __init__(self, log, terminal, debug: bool):
        self.log, self.terminal, self.debug = log, terminal, debug
        self._pending, self._in_trace, self._indent = "", False, 0

    def write(self, text: str) -> int:
        self.log.write(text)
        if self.debug:
            return self.terminal.write(text)
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            if self._keep(line):
                self.terminal.write(line + "\n")
        return len(text)

    def _keep(self, line: str) -> bool:
        stripped = line.lstrip()
        indent = len(line) - len(stripped)  # kfp.local indents each task's lines
        if stripped.startswith("Traceback (most recent call last):"):
            self._in_trace, self._indent = True, indent
            return False
        if stripped.startswith(("During handling of the above exception", "The above exception was")):
            return False
        if self._in_trace:
            if not stripped or indent > self._indent:
                return False
            self._in_trace = False  # back at the traceback's own indentation: the exception's line
            return stripped.startswith("visioncompress:")
        return True

    def flush(self) -> None:
        self.log.flush()
        self.terminal.flush()


def _failure_from(failures: Path, log_path: Path, error: RuntimeError) -> StageFailed:
    """The failed step's own error line (recorded by kfp_io.stage), else the last line of its output."""
    task = (_FAILED_TASK.search(_ANSI.sub("", str(error))) or [None, "pipeline"])[1]
    records = []
    if failures.is_file():
        for line in failures.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                records.append(json.loads(line))
    if records:
        return StageFailed(records[0]["stage"], records[0]["message"], str(log_path))
    lines = [ln.strip() for ln in _ANSI.sub("", log_path.read_text(errors="replace")).splitlines() if ln.strip()] \
        if log_path.is_file() else []
    last = next((ln for ln in reversed(lines) if ln.startswith("visioncompress:")), None) or \
        next((ln for ln in reversed(lines) if re.match(r"^[A-Za-z_.]+(Error|Exception):", ln)), None) or \
        "failed (see the log)"
    return StageFailed(task, last.removeprefix("visioncompress: "), str(log_path))


def without_retries(pipeline):
    """A copy of ``pipeline`` whose tasks do not retry: on a cluster retries ride out network blips; here a
    failed step should end the run at once with its error, not after minutes of back-off."""
    import copy

    pipeline = copy.deepcopy(pipeline)
    spec = pipeline.component_spec.implementation.graph
    dags = [spec.root.dag] + [c.dag for c in spec.components.values() if c.HasField("dag")]
    for dag in dags:
        for task in dag.tasks.values():
            task.ClearField("retry_policy")
    return pipeline


@contextlib.contextmanager
def oneof_artifacts_locally():
    """Let kfp.local resolve ``dsl.OneOf`` over artifacts as the cluster does (KFP 2.17's local orchestrator
    resolves it for parameters only, and refuses a DAG output with more than one artifact selector): the output
    is the artifact of the one branch that ran. Training stages (placed by ``TRAIN_ON_GPU`` / ``NUM_NODES``) and
    the TensorRT branch of ``compare_all`` hand their outputs on this way."""
    from kfp.local.orchestrator.orchestrator_utils import OrchestratorUtils

    original = OrchestratorUtils.__dict__["get_dag_output_artifacts"]

    def get_dag_output_artifacts(cls, dag_outputs_spec, io_store):
        outputs = {}
        for key, spec in dag_outputs_spec.artifacts.items():
            found = []
            for selector in spec.artifact_selectors:
                try:
                    found.append(io_store.get_task_output(selector.producer_subtask, selector.output_artifact_key))
                except (KeyError, ValueError):
                    continue  # that branch did not run
            if len(found) != 1:
                raise ValueError(f"dsl.OneOf output {key!r}: {len(found)} branches produced it, expected one")
            outputs[key] = found[0]
        return outputs

    OrchestratorUtils.get_dag_output_artifacts = classmethod(get_dag_output_artifacts)
    try:
        yield
    finally:
        OrchestratorUtils.get_dag_output_artifacts = original


def run_local(name: str, params: dict, root: str | Path, *, debug: bool = False) -> Path:
    """Validate, then run pipeline ``name`` locally; returns the report's path.

    A failed step raises :class:`StageFailed` with that step's own error; every task's output is
    kept in ``<root>/logs/<pipeline>-<time>.log``.
    """
    from kfp import local

    from visioncompress.pipelines.registry import coerce_params, get_pipeline, pipeline_parameters, validate_pipeline_params

    validate_pipeline_params(name, params)  # fails before any work on a bad parameter
    params = local_run_params(params, pipeline_parameters(name))  # no GPU here: skip TensorRT with a notice
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    logs = root / "logs"
    logs.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-%f")
    log_path, failures = logs / f"{name}-{stamp}.log", logs / f"{name}-{stamp}.failures.jsonl"
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root))
    previous = os.environ.get(FAILURE_FILE_ENV)
    os.environ[FAILURE_FILE_ENV] = str(failures)
    try:
        with open(log_path, "w", encoding="utf-8") as log, oneof_artifacts_locally(), \
                contextlib.redirect_stdout(_TaskOutput(log, sys.stdout, debug)):
            task = without_retries(get_pipeline(name))(**coerce_params(name, params))
    except RuntimeError as exc:
        if "finished with status" not in str(exc):
            raise
        raise _failure_from(failures, log_path, exc) from (exc if debug else None)
    finally:
        if previous is None:
            os.environ.pop(FAILURE_FILE_ENV, None)
        else:
            os.environ[FAILURE_FILE_ENV] = previous
    return Path(task.output.path)


def main(argv=None) -> int:
    from visioncompress.pipelines.registry import PIPELINES

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pipeline", choices=sorted(PIPELINES))
    parser.add_argument("--root", default="runs/local", help="pipeline root: where every artifact is written")
    parser.add_argument("-p", "--param", action="append", metavar="NAME=VALUE", help="a pipeline parameter")
    parser.add_argument("--debug", action="store_true", help="show stack traces (the tasks' full output)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        report_path = run_local(args.pipeline, parse_assignments(args.param), args.root, debug=args.debug)
    except VisionCompressError as exc:
        if args.debug:
            raise
        print(f"visioncompress: {exc}", file=sys.stderr)
        return 2
    from visioncompress.benchmark import read_results
    from visioncompress.report import text_table

    results = report_path.parent / "results"
    print("\n" + text_table(read_results([results])))
    print(f"\nfinished in {time.perf_counter() - started:.0f} s")
    print(f"report:    {report_path}")
    print(f"results:   {results}")
    print(f"artifacts: {report_path.parent.parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
