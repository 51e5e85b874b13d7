"""The ``.pt`` files of the mm family: a whole mm detector inside a small wrapper.

``load_model`` (``torch.load(path, weights_only=False)``) reads the files this library writes itself; it
works in a fresh process because unpickling the wrapper imports this module first, which installs
``mm_compat`` before any mm class is looked up. Beside each one, ``save_model`` writes
``<name>.state.pt``, the detector's state dict, which loads with ``weights_only=True``: that is the file to
hand on as a teacher checkpoint. A checkpoint a user gives (``load_weights``) is never fully unpickled.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from torch import nn

from visioncompress.log import get_logger

from .compat import mm_compat

mm_compat()
log = get_logger(__name__)


class MMDetector(nn.Module):
    """An mmdet/mmyolo detector plus what is needed to run it on plain images."""

    def __init__(self, model: nn.Module, classes, insize: int, family: str, model_cfg: dict):
        super().__init__()
        self.model = model
        self.classes = tuple(classes)
        self.insize = int(insize)
        self.family = family
        self.model_cfg = model_cfg

    def forward(self, inputs: torch.Tensor):
        """Raw head outputs for a normalised-by-the-model batch (N x 3 x H x W, BGR 0..255)."""
        return self.model(inputs, mode="tensor")

    @torch.no_grad()
    def predict(self, images, score_thr: float = 0.05) -> list[dict]:
        """Detect on RGB uint8 images (H x W x 3 arrays); boxes are x0, y0, x1, y1 in image pixels."""
        from mmdet.structures import DetDataSample
        self.eval()
        inputs, samples = [], []
        for image in images:
            image = np.asarray(image)
            h, w = image.shape[:2]
            scale = self.insize / max(h, w)
            nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
            x = torch.from_numpy(np.ascontiguousarray(image[..., ::-1])).permute(2, 0, 1).float()[None]
            x = torch.nn.functional.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False)[0]
            padded = torch.full((3, self.insize, self.insize), 114.0)  # as the data pipeline pads
            padded[:, :nh, :nw] = x
            inputs.append(padded.round().clamp(0, 255).to(torch.uint8))
            samples.append(DetDataSample(metainfo=dict(
                img_shape=(nh, nw), ori_shape=(h, w), scale_factor=(nw / w, nh / h),
                pad_shape=(self.insize, self.insize), batch_input_shape=(self.insize, self.insize))))
        results = self.model.test_step(dict(inputs=inputs, data_samples=samples))
        out = []
        for r in results:
            p = r.pred_instances
            keep = p.scores >= score_thr
            out.append(dict(boxes=p.bboxes[keep].cpu().numpy(), scores=p.scores[keep].cpu().numpy(),
                            labels=p.labels[keep].cpu().numpy()))
        return out


def _cpu(obj, seen: set, depth: int = 0):
    """CPU copies of the tensors that mm modules keep outside their parameters and buffers."""
    if isinstance(obj, torch.Tensor):
        return obj.cpu()
    if id(obj) in seen or depth > 8:
        return obj
    seen.add(id(obj))
    if isinstance(obj, dict):
        for k, v in obj.items():
            obj[k] = _cpu(v, seen, depth + 1)
    elif isinstance(obj, list):
        obj[:] = [_cpu(v, seen, depth + 1) for v in obj]
    elif isinstance(obj, tuple):
        return type(obj)(*(_cpu(v, seen, depth + 1) for v in obj)) if hasattr(obj, "_fields") \
            else tuple(_cpu(v, seen, depth + 1) for v in obj)
    elif hasattr(obj, "__dict__") and not isinstance(obj, (type, nn.Module)):
        _cpu(vars(obj), seen, depth + 1)
    return obj


def save_model(wrapper: MMDetector, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper.model.cpu()  # mmengine's cpu() also tells the data preprocessor its device
    wrapper.cpu().eval()
    for module in wrapper.modules():
        if "_raw_positive_infos" in vars(module):  # mmdet heads' cache of the last training batch
            module._raw_positive_infos = {}
        for key, value in vars(module).items():
            if key not in ("_parameters", "_buffers", "_modules"):
                setattr(module, key, _cpu(value, set()))
    torch.save(wrapper, path)  # loadable where there is no GPU
    torch.save({"state_dict": wrapper.model.state_dict()}, state_path(path))  # weights only, for load_weights
    return path


def state_path(model_path) -> Path:
    """Where ``save_model`` writes the weights-only state dict of ``model_path``."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.stem + ".state.pt")


def load_model(path) -> MMDetector:
    """Our own model files (whole modules): weights_only=False is intended here."""
    obj = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(obj, MMDetector):
        raise TypeError(f"{path} holds a {type(obj).__name__}, not a visioncompress mm detector")
    return obj


def load_weights(module: nn.Module, checkpoint) -> None:
    """Load an mmengine checkpoint (.pth, e.g. from an mm Runner) or one of our .pt files into module."""
    from visioncompress.errors import ArtifactError
    path = Path(checkpoint)
    if not path.is_file():
        raise ArtifactError(f"checkpoint {path} does not exist")
    try:
        whole = f"{MMDetector.__module__}.MMDetector" in torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:
        whole = False
    if whole:  # never unpickled: a file naming our class can name anything else too
        raise ArtifactError(f"{path} is a whole pickled mm detector, which is not loaded (unpickling runs code "
                            f"from the file); give its weights-only state dict instead, {state_path(path).name}, "
                            "which the stage wrote beside it")
    from mmengine.runner import CheckpointLoader
    try:
        with mm_compat():
            ckpt = CheckpointLoader.load_checkpoint(str(path), map_location="cpu")
    except pickle.UnpicklingError as exc:
        raise ArtifactError(f"{path}: not a weights-only checkpoint this adapter loads ({exc}). Re-save it "
                            "as torch.save({'state_dict': model.state_dict()}, path)") from exc
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise ArtifactError(f"{path}: no state_dict in the checkpoint")
    own = module.state_dict()
    state = {k[7:] if k.startswith("module.") else k: v for k, v in state.items()}
    usable = {k: v for k, v in state.items() if k in own and getattr(v, "shape", None) == own[k].shape}
    fresh = sorted(set(own) - set(usable))
    if not usable or any(k.startswith(("backbone.", "neck.")) for k in fresh):
        raise ArtifactError(f"{path} does not fit the config: {len(fresh)} of {len(own)} tensors missing or "
                            f"shaped differently, e.g. {fresh[:4]}")
    module.load_state_dict(usable, strict=False)
    if fresh:  # e.g. the classifier of a checkpoint trained on another number of classes
        log.info("mm: %s: %d tensors keep their initial values: %s", path.name, len(fresh), fresh[:6])


def flops_params(model: nn.Module, insize: int) -> tuple[int, int]:
    """FLOPs (multiply-adds, counted by mmrazor as GroupFisher does) of one insize x insize image, and
    the number of parameters."""
    from mmrazor.models.task_modules.estimators.counters import get_model_flops_params
    was_training = model.training
    model.eval()

    device = next(model.parameters()).device

    def make_input(shape):
        return dict(inputs=torch.rand(shape, device=device) * 255, mode="tensor")
    with torch.no_grad():
        flops, _ = get_model_flops_params(model, input_shape=(1, 3, insize, insize), units=None,
                                          input_constructor=make_input)
    model.train(was_training)
    return int(flops), sum(p.numel() for p in model.parameters())
