"""A torch module saved as data: its tensors in safetensors and its module tree in JSON.

``torch.save(model)`` pickles the module and ``torch.load(weights_only=False)`` runs whatever the
pickle names, so anyone who can write a stage's output could make the next stage run code. Here a
model is two files instead:

* ``<stem>.safetensors``: every tensor (parameters, buffers, and plain tensor attributes such as
  anchors), read back by safetensors, which has no unpickler;
* ``<stem>.arch.json``: the module tree: each module's class, its scalar attributes (channel counts,
  ``groups``, ``normalized_shape``, ``num_heads``, ``head_dim``, thresholds ...) and its children.

Rebuilding creates each module with ``cls.__new__`` and ``nn.Module.__init__`` (no user code runs),
then fills in the recorded attributes: a pruned model comes back with its pruned widths and head
counts, a detector with its anchors, box coders and thresholds. Only classes from torch, torchvision
and visioncompress are accepted (``nn.Module`` subclasses, and plain helper objects from torchvision's
detection/ops packages and visioncompress); functions only from a short list of torch modules.
"""

from __future__ import annotations

import enum
import functools
import importlib
import json
import os
import types
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from visioncompress.errors import ArtifactError

TREE_KIND = "visioncompress.module-tree"
_MODULE_PREFIXES = ("torch.nn.", "torchvision.", "timm.", "visioncompress.")
_PLAIN_PREFIXES = ("torchvision.models.detection.", "torchvision.ops.", "visioncompress.")
_FUNCTION_MODULES = ("torch", "torch.nn.functional", "torch.nn.init", "math", "operator", "torchvision.ops")
_FUNCTION_PREFIXES = ("torchvision.ops.", "torchvision.models.", "timm.layers.", "timm.models.", "visioncompress.")
# nn.Module bookkeeping recreated by nn.Module.__init__ (hooks are runtime state, never saved).
_MODULE_INTERNALS = ("_backward_pre_hooks", "_backward_hooks", "_is_full_backward_hook", "_forward_hooks",
                     "_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_forward_pre_hooks",
                     "_forward_pre_hooks_with_kwargs", "_state_dict_hooks", "_state_dict_pre_hooks",
                     "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks", "_compiled_call_impl")


def _qualname(obj) -> str:
    return f"{obj.__module__}:{obj.__qualname__}"


def _class_allowed(cls) -> bool:
    import torch

    module = getattr(cls, "__module__", "") or ""
    if not isinstance(cls, type):
        return False
    if issubclass(cls, torch.nn.Module):
        return module.startswith(_MODULE_PREFIXES) or module == "torch.nn"
    if issubclass(cls, enum.Enum):
        return module.startswith(("torch", "torchvision", "timm", "visioncompress"))
    return module.startswith(_PLAIN_PREFIXES) and type(cls) is type and hasattr(cls, "__dict__") \
        and "__slots__" not in vars(cls)


def _function_allowed(obj) -> bool:
    module = getattr(obj, "__module__", None) or ""
    return module in _FUNCTION_MODULES or module.startswith(_FUNCTION_PREFIXES)


def _resolve(ref: str, where: str):
    module_name, _, qualname = ref.partition(":")
    if not module_name.startswith(("torch", "torchvision", "timm", "visioncompress", "math", "operator")) \
            or not all(part.isidentifier() for part in qualname.split(".")):
        raise ArtifactError(f"{where}: {ref!r} is not a torch/torchvision/timm/visioncompress name; refusing it")
    try:
        obj = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ArtifactError(f"{where}: {ref!r} does not exist in the installed packages ({exc})") from exc
    return obj


class _Encoder:
    def __init__(self):
        self.tensors: dict[str, Any] = {}
        self._tensor_keys: dict[int, str] = {}
        self._objects: dict[int, int] = {}
        self._keep: list = []  # keeps encoded objects alive so their ids stay unique

    def tensor(self, value, path: str) -> str:
        key = self._tensor_keys.get(id(value))
        if key is None:
            if value.is_quantized or value.layout != __import__("torch").strided:
                raise ArtifactError(f"{path}: a {value.layout} / quantized tensor cannot be saved as safetensors")
            key = f"t{len(self._tensor_keys)}"
            self._tensor_keys[id(value)] = key
            self._keep.append(value)
            self.tensors[key] = value.detach().to("cpu").contiguous().clone()
        return key

    def encode(self, value, path: str):
        import torch

        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, torch.nn.Parameter):
            return {"$param": self.tensor(value, path), "grad": bool(value.requires_grad)}
        if isinstance(value, torch.Tensor):
            return {"$tensor": self.tensor(value, path)}
        if isinstance(value, np.generic):  # numpy scalars (thresholds computed with numpy)
            return self.encode(value.item(), path)
        if isinstance(value, np.ndarray):
            return {"$ndarray": self.tensor(torch.from_numpy(np.ascontiguousarray(value)), path)}
        if isinstance(value, torch.Size):
            return {"$size": list(value)}
        if isinstance(value, torch.dtype):
            return {"$dtype": str(value).removeprefix("torch.")}
        if isinstance(value, torch.device):
            return {"$device": str(value)}
        if isinstance(value, list):
            return [self.encode(v, f"{path}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, tuple) and type(value) is tuple:
            return {"$tuple": [self.encode(v, f"{path}[{i}]") for i, v in enumerate(value)]}
        if isinstance(value, (set, frozenset)):
            return {"$set": [self.encode(v, f"{path}{{}}") for v in sorted(value, key=repr)]}
        if isinstance(value, dict) and type(value) in (dict, OrderedDict):
            tag = "$odict" if type(value) is OrderedDict else "$dict"
            return {tag: [[self.encode(k, f"{path}.key"), self.encode(v, f"{path}[{k!r}]")] for k, v in value.items()]}
        if isinstance(value, enum.Enum) and _class_allowed(type(value)):
            return {"$enum": _qualname(type(value)), "name": value.name}
        if isinstance(value, functools.partial):
            return {"$partial": self.encode(value.func, f"{path}.func"),
                    "args": self.encode(list(value.args), f"{path}.args"),
                    "keywords": self.encode(dict(value.keywords), f"{path}.keywords")}
        if isinstance(value, type):
            if issubclass(value, torch.nn.Module) and _class_allowed(value):
                return {"$class": _qualname(value)}
            raise ArtifactError(f"{path}: class {_qualname(value)} cannot be described as data")
        if isinstance(value, (types.FunctionType, types.BuiltinFunctionType)):
            if _function_allowed(value) and "<" not in value.__qualname__:
                return {"$function": _qualname(value)}
            raise ArtifactError(f"{path}: function {getattr(value, '__qualname__', value)!r} cannot be described as data")
        return self.obj(value, path)

    def obj(self, value, path: str):
        import torch

        cls = type(value)
        if not _class_allowed(cls):
            raise ArtifactError(f"{path}: a {cls.__module__}.{cls.__qualname__} cannot be described as data "
                                "(only torch, torchvision and visioncompress modules can)")
        if id(value) in self._objects:
            return {"$same": self._objects[id(value)]}
        self._objects[id(value)] = number = len(self._objects)
        self._keep.append(value)
        state = {}
        for name, item in vars(value).items():
            if isinstance(value, torch.nn.Module) and name in _MODULE_INTERNALS:
                continue
            state[name] = self.encode(item, f"{path}.{name}" if path else name)
        return {"$object": _qualname(cls), "id": number, "state": state}


class _Decoder:
    def __init__(self, tensors: dict, where: str):
        self.tensors, self.where, self._objects = tensors, where, {}
        self.used: set[str] = set()

    def tensor(self, key: str):
        if key not in self.tensors:
            raise ArtifactError(f"{self.where}: tensor {key!r} is missing from the weights file")
        self.used.add(key)
        return self.tensors[key]

    def decode(self, value):
        import torch

        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, list):
            return [self.decode(v) for v in value]
        if not isinstance(value, dict) or len(value) == 0:
            raise ArtifactError(f"{self.where}: malformed entry {str(value)[:80]!r}")
        tag = next(iter(value))
        if tag == "$param":  # one Parameter object per saved key, so tied weights stay tied
            key = value["$param"]
            if ("param", key) not in self._objects:
                self._objects[("param", key)] = torch.nn.Parameter(self.tensor(key),
                                                                   requires_grad=bool(value.get("grad", True)))
            return self._objects[("param", key)]
        if tag == "$tensor":
            return self.tensor(value["$tensor"])
        if tag == "$ndarray":
            return self.tensor(value["$ndarray"]).numpy()
        if tag == "$size":
            return torch.Size(value["$size"])
        if tag == "$dtype":
            dtype = getattr(torch, str(value["$dtype"]), None)
            if not isinstance(dtype, torch.dtype):
                raise ArtifactError(f"{self.where}: unknown dtype {value['$dtype']!r}")
            return dtype
        if tag == "$device":
            return torch.device(str(value["$device"]))
        if tag == "$tuple":
            return tuple(self.decode(v) for v in value["$tuple"])
        if tag == "$set":
            return {self.decode(v) for v in value["$set"]}
        if tag in ("$dict", "$odict"):
            pairs = [(self.decode(k), self.decode(v)) for k, v in value[tag]]
            return OrderedDict(pairs) if tag == "$odict" else dict(pairs)
        if tag == "$enum":
            cls = _resolve(value["$enum"], self.where)
            if not _class_allowed(cls):
                raise ArtifactError(f"{self.where}: {value['$enum']!r} is not an allowed enum")
            return cls[value["name"]]
        if tag == "$partial":
            return functools.partial(self.decode(value["$partial"]), *self.decode(value["args"]),
                                     **self.decode(value["keywords"]))
        if tag == "$class":
            cls = _resolve(value["$class"], self.where)
            if not (_class_allowed(cls) and issubclass(cls, torch.nn.Module)):
                raise ArtifactError(f"{self.where}: {value['$class']!r} is not an allowed module class")
            return cls
        if tag == "$function":
            func = _resolve(value["$function"], self.where)
            if isinstance(func, type) or not callable(func) or not _function_allowed(func):
                raise ArtifactError(f"{self.where}: {value['$function']!r} is not an allowed function")
            return func
        if tag == "$same":
            if value["$same"] not in self._objects:
                raise ArtifactError(f"{self.where}: reference to unknown object {value['$same']!r}")
            return self._objects[value["$same"]]
        if tag == "$object":
            return self.obj(value)
        raise ArtifactError(f"{self.where}: unknown entry {tag!r}")

    def obj(self, value):
        import torch

        cls = _resolve(value["$object"], self.where)
        if not _class_allowed(cls):
            raise ArtifactError(f"{self.where}: class {value['$object']!r} is not allowed in a model file")
        instance = cls.__new__(cls)  # no __init__: nothing but nn.Module's own bookkeeping runs
        if isinstance(instance, torch.nn.Module):
            torch.nn.Module.__init__(instance)
        self._objects[value["id"]] = instance
        state = value.get("state", {})
        if not isinstance(state, dict):
            raise ArtifactError(f"{self.where}: malformed state of {value['$object']!r}")
        instance.__dict__.update({str(k): self.decode(v) for k, v in state.items()})
        return instance


def save_module(module, directory: str | os.PathLike, stem: str = "model") -> list[str]:
    """Write ``<stem>.safetensors`` and ``<stem>.arch.json`` into ``directory``; returns the file names."""
    from safetensors.torch import save_file

    encoder = _Encoder()
    tree = encoder.encode(module, "")
    directory = Path(directory)
    weights, arch = f"{stem}.safetensors", f"{stem}.arch.json"
    save_file(encoder.tensors, str(directory / weights))
    (directory / arch).write_text(json.dumps({"kind": TREE_KIND, "version": 1, "root": tree}, sort_keys=True) + "\n")
    return [weights, arch]


def load_module(directory: str | os.PathLike, stem: str = "model"):
    """Rebuild the module written by :func:`save_module` (no unpickler, no code from the files)."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    weights, arch = directory / f"{stem}.safetensors", directory / f"{stem}.arch.json"
    for path in (weights, arch):
        if not path.is_file():
            raise ArtifactError(f"model artifact {directory} has no {path.name}")
    from visioncompress.artifacts import _read_kind

    doc = _read_kind(arch, TREE_KIND, "module tree")
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ArtifactError(f"{weights} could not be read as safetensors: {exc}") from exc
    decoder = _Decoder(tensors, str(arch))
    try:
        module = decoder.decode(doc.get("root"))
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{arch}: malformed module tree ({type(exc).__name__}: {exc})") from exc
    if not isinstance(module, torch.nn.Module):
        raise ArtifactError(f"{arch} does not describe a torch module")
    return module
