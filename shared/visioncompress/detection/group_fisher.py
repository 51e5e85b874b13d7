"""GroupFisher structured pruning for torchvision detectors, on torch-pruning's dependency graph.

Importance (Liu et al., 2021, "Group Fisher Pruning"): for each prunable channel group, the Fisher
information of a channel mask, accumulated as (sum over positions of activation x gradient)^2 per
image, divided by what removing one channel saves: activation memory (NORM_TYPE=act) or FLOPs
(NORM_TYPE=flops). Every INTERVAL iterations the group holding the least important channel loses
its lowest channels (at most a quarter of the group at once), enough to stay on course for
TARGET_FLOP_RATIO by the middle of training (later if needed: pruning goes on until it is reached);
the second half recovers at the full learning rate (LR_RATIO scales it while pruning).

Scope: the backbone and the FPN's internals. The FPN output width, which the shared heads
expect, and the heads themselves stay intact (a whole-detector graph does not finish for
RetinaNet/FCOS, whose heads are shared across levels).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from visioncompress.errors import ConfigError
from visioncompress.log import get_logger

log = get_logger("detection.group_fisher")
MIN_CHANNELS = 8
MAX_STEP_SHARE = 0.25  # one step removes at most this share of a group's channels


def _fpn(detector: nn.Module):
    fpn = getattr(detector.backbone, "fpn", None)
    if fpn is None:
        raise ConfigError("MODEL", type(detector).__name__, "a detector with an FPN backbone (fcos_*, retinanet_*, "
                          "fasterrcnn_*_fpn) for GroupFisher pruning")
    return fpn


def fixed_width_layers(detector: nn.Module) -> list[nn.Module]:
    """Layers whose output width must not change: FPN outputs and extra levels."""
    fpn = _fpn(detector)
    fixed = [m for m in fpn.layer_blocks.modules() if isinstance(m, nn.Conv2d)]
    if fpn.extra_blocks is not None:
        fixed += [m for m in fpn.extra_blocks.modules() if isinstance(m, nn.Conv2d)]
    return fixed


def count_macs(detector: nn.Module, insize: int) -> float:
    """MACs of one image through the detector's core (backbone, FPN, head; two-stage: the backbone)."""
    import torch_pruning as tp

    from visioncompress.detection.heads import DetectorCore, family

    module = DetectorCore(detector) if family(detector) != "two-stage" else detector.backbone
    was_training = module.training
    macs, _ = tp.utils.count_ops_and_params(module.eval(), torch.rand(1, 3, insize, insize))
    module.train(was_training)
    return float(macs)


class _BackboneScope(nn.Module):
    """The backbone with list outputs: the part of the detector the dependency graph covers."""

    def __init__(self, detector):
        super().__init__()
        self.backbone = detector.backbone

    def forward(self, x):
        return list(self.backbone(x).values())


class GroupFisherPruner:
    def __init__(self, detector: nn.Module, insize: int, norm_type: str):
        import torch_pruning as tp

        self.detector, self.insize, self.norm_type = detector, insize, norm_type
        self.scope = _BackboneScope(detector)
        example = torch.rand(1, 3, insize, insize)
        self.graph = tp.DependencyGraph().build_dependency(self.scope, example_inputs=example, verbose=False)
        self._fixed = fixed_width_layers(detector)
        self._hooks: list = []
        self._fisher: dict[nn.Module, torch.Tensor] = {}
        self._shapes: dict[nn.Module, tuple[int, int]] = {}
        self._refresh()

    def _refresh(self) -> None:
        self.close()
        self._fisher = {}
        self.groups = [g for g in self.graph.get_all_groups(ignored_layers=self._fixed, root_module_types=(nn.Conv2d,))
                       if self._width(g) > MIN_CHANNELS]
        convs = [m for m in self.scope.modules() if isinstance(m, nn.Conv2d)]
        shape_hooks = [m.register_forward_hook(lambda mod, _i, out: self._shapes.__setitem__(mod, out.shape[-2:]))
                       for m in convs]
        was_training = self.scope.training
        with torch.no_grad():
            self.scope.eval()(torch.rand(1, 3, self.insize, self.insize))
        self.scope.train(was_training)
        for h in shape_hooks:
            h.remove()
        self._attach()

    def _attach(self) -> None:
        for group in self.groups:
            root = group[0].dep.target.module
            self._hooks.append(root.register_forward_hook(self._capture))

    @staticmethod
    def _width(group) -> int:
        return len(group[0].idxs)

    def _capture(self, module, _inputs, output):
        if not output.requires_grad:
            return

        def on_grad(grad, activation=output.detach()):
            per_image = (activation * grad).sum(dim=(2, 3))
            score = per_image.pow(2).sum(dim=0).detach()
            self._fisher[module] = self._fisher.get(module, 0) + score
        output.register_hook(on_grad)

    def _cost(self, group) -> float:
        """What one channel of the group costs: activation memory or FLOPs, over its layers."""
        total = 0.0
        for dep, _ in group:
            layer = dep.target.module
            if not isinstance(layer, nn.Conv2d) or layer not in self._shapes:
                continue
            h, w = self._shapes[layer]
            kernel = layer.kernel_size[0] * layer.kernel_size[1]
            if self.graph.is_out_channel_pruning_fn(dep.handler):
                total += h * w if self.norm_type == "act" else kernel * layer.in_channels / layer.groups * h * w
            elif self.norm_type == "flops":
                total += kernel * layer.out_channels / layer.groups * h * w
        return max(total, 1.0)

    def flops(self) -> float:
        attached = bool(self._hooks)
        self.close()  # torch-pruning's counter deep-copies the model, and the hooks hold this pruner
        try:
            return count_macs(self.detector, self.insize)
        finally:
            if attached:
                self._attach()

    def step(self, flops_to_remove: float) -> float:
        """Prune the least important channels of one group; returns the FLOPs removed."""
        candidates = []
        for group in self.groups:
            root = group[0].dep.target.module
            if root not in self._fisher or self._width(group) <= MIN_CHANNELS:
                continue
            scores = self._fisher[root] / self._cost(group)
            candidates.append((float(scores.min()), group, scores))
        if not candidates:
            return 0.0
        _, group, scores = min(candidates, key=lambda c: c[0])
        root = group[0].dep.target.module
        before = self.flops()
        per_channel = self._cost_flops(group)
        count = max(1, math.ceil(flops_to_remove / per_channel))
        count = min(count, max(1, int(self._width(group) * MAX_STEP_SHARE)), self._width(group) - MIN_CHANNELS)
        order = torch.argsort(scores)[:count].tolist()
        self.graph.get_pruning_group(root, group[0].dep.handler, order).prune()
        self._refresh()
        return before - self.flops()

    def _cost_flops(self, group) -> float:
        saved, self.norm_type = self.norm_type, "flops"
        try:
            return self._cost(group)
        finally:
            self.norm_type = saved

    def close(self) -> None:
        for handle in self._hooks:
            handle.remove()
        self._hooks = []
