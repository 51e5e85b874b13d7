"""Run a pipeline on this machine through kfp.local (placement is ignored locally).

    python -m visioncompress.pipelines.local compare --root runs/demo -p FINETUNE_EPOCHS=2 -p BATCH_SIZE=64
"""

from __future__ import annotations

import argparse
import ast
import sys
import time
from pathlib import Path

from visioncompress.errors import VisionCompressError


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


def run_local(name: str, params: dict, root: str | Path) -> Path:
    """Validate, then run pipeline ``name`` locally; returns the report's path."""
    from kfp import local

    from visioncompress.pipelines.registry import coerce_params, get_pipeline, pipeline_parameters, validate_pipeline_params

    validate_pipeline_params(name, params)  # fails before any work on a bad parameter
    params = local_run_params(params, pipeline_parameters(name))  # no GPU here: skip TensorRT with a notice
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root))
    task = get_pipeline(name)(**coerce_params(name, params))
    return Path(task.output.path)


def main(argv=None) -> int:
    from visioncompress.pipelines.registry import PIPELINES

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pipeline", choices=sorted(PIPELINES))
    parser.add_argument("--root", default="runs/local", help="pipeline root: where every artifact is written")
    parser.add_argument("-p", "--param", action="append", metavar="NAME=VALUE", help="a pipeline parameter")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        report_path = run_local(args.pipeline, parse_assignments(args.param), args.root)
    except VisionCompressError as exc:
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
