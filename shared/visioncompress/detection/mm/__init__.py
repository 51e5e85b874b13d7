"""OpenMMLab family: MMDetection / MMYOLO configs + checkpoints with MMRazor's algorithms.

    distill_mm(student_config, teacher_config, teacher_checkpoint, method, data_root, work_dir, ...)
    prune_group_fisher_mm(config, checkpoint, data_root, work_dir, interval, norm_type, ...)
    evaluate_mm(model_or_pt, data_root, split) -> {"mAP", "mAP50"}

Needs requirements-mm.txt (installed in the detection image and by `make test-mm`); every
compatibility fix for this project's torch lives in ``compat.mm_compat``. Names load lazily, so
importing this package does not import the mm stack.
"""

from __future__ import annotations

import importlib

_EXPORTS = {"mm_compat": "compat", "distill_mm": "distill", "prune_group_fisher_mm": "prune",
            "evaluate_mm": "evaluate", "MMDetector": "model", "load_model": "model", "METHODS": "distill"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
