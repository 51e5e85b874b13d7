"""Every fix the OpenMMLab stack needs on this project's torch, in one place.

``mm_compat()`` installs, once per process, what importing mmdet/mmyolo/mmrazor needs:

* ``mmcv._ext``: mmcv-lite ships no compiled ops. When the real extension is absent, a stand-in
  serves ``nms`` (torchvision) and the sigmoid focal loss (plain torch); ``RoIAlign`` is switched
  to torchvision's kernel; every other op raises NotImplementedError naming itself.
* torch.ao names that mmrazor 1.0.0 imports at module load (its quantization stays unusable; its
  distillation and pruning do not use them).
* mmengine's package lookup (``_base_ = 'mmdet::...'`` in a config file) without pkg_resources,
  which setuptools >= 81 no longer ships.

The call returns a context manager: inside ``with mm_compat():`` torch.load's weights-only
unpickler also accepts the few mmengine/numpy globals that mmengine Runner checkpoints hold.
Outside it torch.load's defaults are untouched.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import pickle
import sys
import threading
import types

import torch

_lock = threading.Lock()
_installed = False
_depth = 0
_allowed: list = []
_added: list = []


class _ExtStandIn(types.ModuleType):
    """mmcv._ext for mmcv-lite: the ops the mm detection paths run, in torch/torchvision."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)

        def missing(*args, **kwargs):
            raise NotImplementedError(
                f"mmcv op {name!r} needs the compiled mmcv (mmcv-lite is installed); "
                "visioncompress's mm family supports models built from nms and RoIAlign only")
        return missing

    @staticmethod
    def nms(boxes, scores, iou_threshold: float, offset: int = 0):
        from torchvision.ops import nms
        if offset:
            boxes = torch.cat([boxes[:, :2], boxes[:, 2:] + offset], dim=1)
        return nms(boxes.float(), scores.float(), float(iou_threshold))

    @staticmethod
    def _focal_terms(logits, target, weight, gamma, alpha):
        n_cls = logits.size(1)
        onehot = torch.nn.functional.one_hot(target.clamp(max=n_cls), n_cls + 1)[:, :n_cls].to(logits)
        p = logits.sigmoid()
        pt = torch.where(onehot > 0, p, 1 - p)
        at = torch.where(onehot > 0, alpha, 1 - alpha)
        loss = -at * (1 - pt).pow(gamma) * torch.nn.functional.logsigmoid(torch.where(onehot > 0, logits, -logits))
        if weight is not None and weight.numel():
            loss = loss * weight[target.clamp(max=n_cls - 1)].unsqueeze(1)
        return loss

    def sigmoid_focal_loss_forward(self, input, target, weight, output, gamma=2.0, alpha=0.25):
        output.copy_(self._focal_terms(input, target, weight, gamma, alpha))

    def sigmoid_focal_loss_backward(self, input, target, weight, grad_input, gamma=2.0, alpha=0.25):
        with torch.enable_grad():
            x = input.detach().requires_grad_(True)
            grad, = torch.autograd.grad(self._focal_terms(x, target, weight, gamma, alpha).sum(), x)
        grad_input.copy_(grad)

    @staticmethod
    def get_compiler_version():
        return "none (mmcv-lite; visioncompress stand-in)"

    @staticmethod
    def get_compiling_cuda_version():
        return "not available"


def _install_mmcv_ext() -> None:
    if "mmcv._ext" in sys.modules or importlib.util.find_spec("mmcv") is None:
        return
    import mmcv
    if importlib.util.find_spec("mmcv._ext") is not None:
        return
    ext = _ExtStandIn("mmcv._ext")
    ext.__spec__ = importlib.machinery.ModuleSpec("mmcv._ext", None)
    sys.modules["mmcv._ext"] = ext
    mmcv._ext = ext

    from mmcv.ops import RoIAlign
    original_init = RoIAlign.__init__

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self.use_torchvision = True
    RoIAlign.__init__ = init


def _install_torch_ao_names() -> None:
    try:
        import torch.ao.quantization.backend_config.utils  # noqa: F401  (torch.ao reads it as an attribute)
        from torch.ao.quantization import fuser_method_mappings as fmm
        from torch.ao.quantization.backend_config import BackendPatternConfig
    except ImportError:
        return
    if not hasattr(fmm, "reverse2"):
        fmm.reverse2 = lambda f: (lambda is_qat, x, y: f(is_qat, y, x))
    if not hasattr(fmm, "reverse3"):
        fmm.reverse3 = lambda f: (lambda is_qat, x, w: f(is_qat, w[1], w[0], x))
    if not hasattr(fmm, "reverse_sequential_wrapper2"):
        fmm.reverse_sequential_wrapper2 = lambda seq: (lambda is_qat, x, y: seq(y, x))
    for name in ("_set_overwrite_output_fake_quantize", "_set_overwrite_output_observer",
                 "_set_input_output_observed"):
        if not hasattr(BackendPatternConfig, name):
            setattr(BackendPatternConfig, name, lambda self, _value: self)


def _install_package_lookup() -> None:
    if importlib.util.find_spec("pkg_resources") is not None or importlib.util.find_spec("mmengine") is None:
        return
    import os

    def is_installed(package: str) -> bool:
        return importlib.util.find_spec(package.replace("-", "_")) is not None

    def get_installed_path(package: str) -> str:
        spec = importlib.util.find_spec(package.replace("-", "_"))
        if spec is None or spec.origin is None:
            raise ModuleNotFoundError(f"package {package!r} is not installed")
        return os.path.dirname(spec.origin)

    import mmengine.config.config
    import mmengine.hub.hub
    import mmengine.utils
    import mmengine.utils.package_utils
    for module in (mmengine.utils.package_utils, mmengine.utils, mmengine.config.config, mmengine.hub.hub):
        for fn in (is_installed, get_installed_path):
            if hasattr(module, fn.__name__):
                setattr(module, fn.__name__, fn)


def _checkpoint_globals() -> list:
    import numpy as np
    from mmengine.logging import HistoryBuffer

    def history_getattr(obj, name):
        # HistoryBuffer pickles its statistics methods as getattr(HistoryBuffer, name): allow that only.
        if obj is HistoryBuffer and not name.startswith("_") and callable(getattr(HistoryBuffer, name, None)):
            return getattr(HistoryBuffer, name)
        raise pickle.UnpicklingError(f"getattr({obj!r}, {name!r}) is not allowed in an mm checkpoint")

    core = getattr(np, "_core", None) or np.core
    found = [HistoryBuffer, np.ndarray, np.dtype, core.multiarray._reconstruct, core.multiarray.scalar,
             (history_getattr, "builtins.getattr")]
    found += [type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32", "bool")]
    return found


def _install() -> None:
    global _installed, _allowed
    with _lock:
        if _installed:
            return
        _install_mmcv_ext()
        _install_torch_ao_names()
        _install_package_lookup()
        _allowed = _checkpoint_globals()
        _installed = True


@contextlib.contextmanager
def _checkpoint_scope():
    global _depth, _added
    with _lock:
        if _depth == 0:
            present = torch.serialization.get_safe_globals()
            _added = [g for g in _allowed if g not in present]
            torch.serialization.add_safe_globals(_added)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                kept = [g for g in torch.serialization.get_safe_globals() if g not in _added]
                torch.serialization.clear_safe_globals()
                torch.serialization.add_safe_globals(kept)


def mm_compat():
    """Make the mm stack importable (idempotent); use the result as ``with`` to load mm checkpoints."""
    _install()
    return _checkpoint_scope()
