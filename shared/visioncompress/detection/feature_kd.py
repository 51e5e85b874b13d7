"""Feature distillation losses for detectors, on matching FPN levels of teacher and student.

PKD (Cao et al., 2022): each channel is standardised over batch and positions, so the loss is
1 - Pearson correlation between teacher and student responses; magnitude differences between
the two networks stop mattering. CWD (Shu et al., 2021): each channel becomes a distribution
over positions (softmax with temperature tau) and the student matches the teacher's by KL.
A 1x1 convolution adapts the student's width where it differs from the teacher's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Loss weights as in the papers' RetinaNet settings.
PKD_WEIGHT = 6.0
CWD_WEIGHT = 10.0
CWD_TAU = 1.0
# The papers distil ImageNet-initialised students; a student trained from scratch lets the feature term
# dominate its first steps, and FCOS's ReLU box regression then dies (its loss stays at 1). The feature
# weight therefore ramps up linearly over the first steps.
RAMP_STEPS = 300
# PKD standardises each channel over the batch's positions (N x H x W). The papers' 800-1333 px images give
# every FPN level hundreds of positions; at the small inputs this project trains on, the coarse levels are
# 1x1 or 2x2 maps, i.e. 8-32 samples per channel for a batch of 8. A student trained from scratch barely varies
# there between images (channel std 0.06-0.2 at P7 against ~1.7 at P3), and the standardisation's 1/std makes
# those levels' gradient several times the whole detection loss's. Measured at initialisation, 96 px and a
# batch of 8 as in `make bench`: gradient norm 20 from P7 alone, 22 from the PKD term in all, 6 from the
# detection losses; gradients are clipped at norm 10, so the detection term shrinks to about a quarter and the
# student's shared head follows noise-level statistics of 8 samples, which is what let it collapse (mAP 0.0)
# on one CPU and not on another. Levels with fewer positions than this are therefore left out of PKD (they
# count as zero in the average over levels, so the others keep the papers' weight): the PKD gradient is then
# 6, the detection losses' 6.
MIN_PKD_POSITIONS = 64


def _standardise(feature: torch.Tensor) -> torch.Tensor:
    flat = feature.transpose(0, 1).flatten(1)  # C x (N*H*W)
    flat = (flat - flat.mean(dim=1, keepdim=True)) / (flat.std(dim=1, keepdim=True) + 1e-6)
    return flat


def pkd_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    return 0.5 * F.mse_loss(_standardise(student), _standardise(teacher))


def cwd_loss(student: torch.Tensor, teacher: torch.Tensor, tau: float = CWD_TAU) -> torch.Tensor:
    n, c = student.shape[:2]
    log_p_student = F.log_softmax(student.flatten(2) / tau, dim=2)
    log_p_teacher = F.log_softmax(teacher.flatten(2) / tau, dim=2)
    kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=2)
    return kl.sum() * tau * tau / (n * c)


def usable_level(method: str, shape) -> bool:
    """Whether a feature map of ``shape`` (N, C, H, W) carries a distillation signal: PKD needs enough
    positions to standardise over; CWD's distribution over positions needs more than one position."""
    n, _, h, w = shape
    return n * h * w >= MIN_PKD_POSITIONS if method == "pkd" else h * w > 1


class FeatureDistiller(nn.Module):
    """Weighted PKD or CWD over FPN levels, with 1x1 connectors where widths differ."""

    def __init__(self, method: str, student_widths: list[int], teacher_widths: list[int],
                 ramp_steps: int = RAMP_STEPS):
        super().__init__()
        self.method, self.ramp_steps, self.steps = method, ramp_steps, 0
        self.used_levels: list[int] | None = None
        self.weight = PKD_WEIGHT if method == "pkd" else CWD_WEIGHT
        self.connectors = nn.ModuleList(
            nn.Identity() if s == t else nn.Conv2d(s, t, kernel_size=1) for s, t in zip(student_widths, teacher_widths)
        )

    def get_extra_state(self) -> dict:
        return {"steps": int(self.steps)}  # the ramp's position: saved with the connectors in state_dict()

    def set_extra_state(self, state: dict) -> None:
        self.steps = int(state["steps"])

    def forward(self, student: list[torch.Tensor], teacher: list[torch.Tensor]) -> torch.Tensor:
        if student[0].requires_grad:
            self.steps += 1
        ramp = min(1.0, self.steps / self.ramp_steps) if self.ramp_steps else 1.0
        total, used = student[0].new_zeros(()), []
        for level, (connector, s, t) in enumerate(zip(self.connectors, student, teacher)):
            if not usable_level(self.method, s.shape):
                continue
            s = connector(s)
            if s.shape[-2:] != t.shape[-2:]:
                t = F.interpolate(t, size=s.shape[-2:], mode="bilinear", align_corners=False)
            total = total + (pkd_loss(s, t) if self.method == "pkd" else cwd_loss(s, t))
            used.append(level)
        self.used_levels = used
        return ramp * self.weight * total / len(student)
