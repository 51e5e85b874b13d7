"""Compile every pipeline (or those named) to pipelines/compiled/<name>.yaml.

    python -m visioncompress.pipelines.compile [NAME ...] [--output-dir DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml
from kfp import compiler

from visioncompress.config.pipelines import PIPELINES
from visioncompress.pipelines.registry import get_pipeline

COMPILED_DIR = Path(__file__).resolve().parent / "compiled"
CACHED_WHEN_RECOMPUTING = ("comp-data-prep",)


def compile_pipeline(name: str, path: Path, *, recompute_after_data: bool = False) -> Path:
    """Compile pipeline ``name`` to ``path``; ``recompute_after_data`` turns caching off for every step
    but data preparation (what a recurring run wants: new training, measurements and publication)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(get_pipeline(name), str(path))
    if recompute_after_data:
        docs = list(yaml.safe_load_all(path.read_text()))
        spec = docs[0]
        dags = [spec["root"]["dag"]] + [c["dag"] for c in spec.get("components", {}).values() if "dag" in c]
        for dag in dags:
            for task in dag.get("tasks", {}).values():
                if "componentRef" in task and task["componentRef"]["name"] not in CACHED_WHEN_RECOMPUTING:
                    task["cachingOptions"] = {}  # KFP's form of enableCache: false
        path.write_text(yaml.safe_dump_all(docs, sort_keys=True))
    return path


def compile_pipelines(names=None, output_dir: Path = COMPILED_DIR) -> list[Path]:
    return [compile_pipeline(name, Path(output_dir) / f"{name}.yaml") for name in names or sorted(PIPELINES)]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help=f"pipelines to compile (default: all of {sorted(PIPELINES)})")
    parser.add_argument("--output-dir", type=Path, default=COMPILED_DIR)
    args = parser.parse_args(argv)
    for path in compile_pipelines(args.names, args.output_dir):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
