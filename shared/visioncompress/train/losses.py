"""Loss construction from the spec's CRITERION names."""

from __future__ import annotations

# Losses that compare logits with a dense target: class labels are one-hot encoded for them.
_DENSE_TARGET_LOSSES = {"MSELoss", "L1Loss", "SmoothL1Loss", "HuberLoss", "BCEWithLogitsLoss", "MultiLabelSoftMarginLoss"}


def make_criterion(name: str, num_classes: int):
    """A callable ``loss(logits, labels)`` for the torch.nn loss class ``name``."""
    import torch
    import torch.nn.functional as F

    loss = getattr(torch.nn, name)()
    if name in _DENSE_TARGET_LOSSES:
        return lambda logits, labels: loss(logits, F.one_hot(labels, num_classes).to(logits.dtype))
    if name == "NLLLoss":
        return lambda logits, labels: loss(F.log_softmax(logits, dim=1), labels)
    return lambda logits, labels: loss(logits, labels)
