"""GroupFisher structured pruning for torchvision detectors, on torch-pruning's dependency graph.

Importance (Liu et al., 2021, "Group Fisher Pruning"): for each prunable channel group, the Fisher
information of a channel mask, accumulated as (sum over positions of activation x gradient)^2 per
image, divided by what removing one channel saves: activation memory (NORM_TYPE=act) or FLOPs
(NORM_TYPE=flops). Every INTERVAL iterations the groups holding the least important channels lose
their lowest channels (at most a quarter of a group per step; the next group follows when that is
not enough), so that every step removes its share of what is left to reach TARGET_FLOP_RATIO.
The last scheduled step (at the middle of training) is a deadline: it removes whatever is still
missing without the quarter cap, in importance order, and the stage fails if even that cannot
reach the target (every group at its minimum width). The target is therefore reached by the same
iteration whatever the importance values (and so the CPU's arithmetic) are. The second half
recovers at the full learning rate (LR_RATIO scales it while pruning).

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
        self._names = {m: n for n, m in self.scope.named_modules()}
        self.record: list[tuple[str, list[int]]] = []
        self._hooks: list = []
        self._fisher: dict[nn.Module, torch.Tensor] = {}
        self._shapes: dict[nn.Module, tuple[int, int]] = {}
        self._measure_shapes()
        self._refresh()

    def _refresh(self, keep_fisher: bool = False) -> None:
        self.close()
        if not keep_fisher:
            self._fisher = {}
        self.groups = [g for g in self.graph.get_all_groups(ignored_layers=self._fixed, root_module_types=(nn.Conv2d,))
                       if self._width(g) > MIN_CHANNELS]
        self._attach()

    def _measure_shapes(self) -> None:
        """Output sizes of every convolution (pruning channels never changes them)."""
        convs = [m for m in self.scope.modules() if isinstance(m, nn.Conv2d)]
        hooks = [m.register_forward_hook(lambda mod, _i, out: self._shapes.__setitem__(mod, out.shape[-2:]))
                 for m in convs]
        was_training = self.scope.training
        with torch.no_grad():
            self.scope.eval()(torch.rand(1, 3, self.insize, self.insize))
        self.scope.train(was_training)
        for h in hooks:
            h.remove()

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

    def _importance(self, group, root) -> tuple[float, torch.Tensor]:
        """(rank of the group, per-channel scores): Fisher per unit of cost; a group no gradient has reached
        yet ranks after every measured one, its channels ordered by weight magnitude."""
        if root in self._fisher:
            scores = self._fisher[root] / self._cost(group)
            return float(scores.min()), scores
        return float("inf"), root.weight.detach().abs().flatten(1).sum(1)

    def step(self, flops_to_remove: float, *, deadline: bool = False) -> float:
        """Prune the least important channels until ``flops_to_remove`` FLOPs are gone; returns the FLOPs
        removed (measured). Each group loses at most MAX_STEP_SHARE of its width per step and only groups
        with Fisher scores are touched, unless ``deadline``: then any group may go down to MIN_CHANNELS, and
        passes over the groups repeat until the FLOPs are gone or every group is at its minimum."""
        before, removed = self.flops(), 0.0
        while removed < flops_to_remove:
            estimate, touched = removed, set()
            while estimate < flops_to_remove:  # one pass: each group at most once, on estimated savings
                candidates = []
                for group in self.groups:
                    root = group[0].dep.target.module
                    if root in touched or self._width(group) <= MIN_CHANNELS or \
                            (root not in self._fisher and not deadline):
                        continue
                    rank, scores = self._importance(group, root)
                    candidates.append((rank, len(candidates), group, scores))
                if not candidates:
                    break
                _, _, group, scores = min(candidates, key=lambda c: (c[0], c[1]))
                root, width, per_channel = group[0].dep.target.module, self._width(group), self._cost_flops(group)
                count = max(1, math.ceil((flops_to_remove - estimate) / per_channel))
                cap = width - MIN_CHANNELS if deadline else max(1, int(width * MAX_STEP_SHARE))
                count = min(count, cap, width - MIN_CHANNELS)
                self.prune_channels(root, sorted(torch.argsort(scores, stable=True)[:count].tolist()))
                touched.add(root)
                estimate += count * per_channel
            measured = before - self.flops()
            if not deadline or not touched or measured <= removed:
                removed = measured
                break
            removed = measured
        return removed

    def prune_channels(self, root: nn.Module, idxs: list[int], *, refresh: bool = True) -> None:
        """Remove output channels ``idxs`` of ``root`` (and what depends on them); recorded for resume."""
        handler = self.graph.get_pruner_of_module(root).prune_out_channels
        self.graph.get_pruning_group(root, handler, idxs).prune()
        if root in self._fisher:
            keep = [i for i in range(len(self._fisher[root])) if i not in set(idxs)]
            self._fisher[root] = self._fisher[root][keep]
        self.record.append((self._names[root], list(idxs)))
        if refresh:
            self._refresh(keep_fisher=True)

    def replay(self, record: list) -> None:
        """Apply a recorded sequence of pruning operations (a resumed run's structure)."""
        modules = dict(self.scope.named_modules())
        for name, idxs in record:
            self.prune_channels(modules[name], [int(i) for i in idxs], refresh=False)
        self._refresh()

    def fisher_state(self) -> dict[str, torch.Tensor]:
        return {self._names[m]: v.clone() for m, v in self._fisher.items()}

    def load_fisher_state(self, state: dict[str, torch.Tensor]) -> None:
        modules = dict(self.scope.named_modules())
        self._fisher = {modules[name]: value.clone() for name, value in state.items()}

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
