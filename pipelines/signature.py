"""A pipeline's parameters and defaults read from its source, without building the pipeline.

Importing a pipeline module builds its graph (seconds per pipeline); ``--help`` and job-file mapping
only need the signature, which the function's literal defaults give directly.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

REQUIRED = object()


def pipeline_signature(name: str) -> dict:
    """``{parameter: default}`` of pipeline ``name`` (``REQUIRED`` where there is no default)."""
    from pipelines.registry import PIPELINES, get_pipeline, pipeline_parameters

    if name not in PIPELINES:
        get_pipeline(name)  # raises the registry's ConfigError listing the names
    module, func = PIPELINES[name].target.split(":")
    try:
        spec = importlib.util.find_spec(module)
        tree = ast.parse(Path(spec.origin).read_text())
        node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == func)
        args = node.args.args
        defaults = [REQUIRED] * (len(args) - len(node.args.defaults)) + [ast.literal_eval(d)
                                                                         for d in node.args.defaults]
        return {a.arg: d for a, d in zip(args, defaults)}
    except (StopIteration, ValueError, SyntaxError, OSError, AttributeError, TypeError):
        return pipeline_parameters(name)
