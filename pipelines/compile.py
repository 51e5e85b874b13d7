"""Compile every pipeline (or those named) to pipelines/compiled/<name>.yaml.

    python -m pipelines.compile [NAME ...] [--output-dir DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kfp import compiler

from pipelines.registry import PIPELINES, get_pipeline

COMPILED_DIR = Path(__file__).resolve().parent / "compiled"


def compile_pipelines(names=None, output_dir: Path = COMPILED_DIR) -> list[Path]:
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names or sorted(PIPELINES):
        path = output_dir / f"{name}.yaml"
        compiler.Compiler().compile(get_pipeline(name), str(path))
        written.append(path)
    return written


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help=f"pipelines to compile (default: all of {sorted(PIPELINES)})")
    parser.add_argument("--output-dir", type=Path, default=COMPILED_DIR)
    args = parser.parse_args(argv)
    for path in compile_pipelines(args.names, args.output_dir):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
