"""Object detection: Knowledge Distillation (PKD or CWD on FPN features) of a student detector."""

from visioncompress.pipelines._steps import pipeline
from visioncompress.pipelines.distill import distill_steps


@pipeline("detect_distill")
def detect_distill(p):
    return distill_steps(p, title="Detection Knowledge Distillation", step_name="distill (detection)")
