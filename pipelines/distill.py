"""Knowledge Distillation (classification): a student (MODEL) learns from a teacher's softened logits."""

from visioncompress.components.distill.component import distill as distill_op
from visioncompress.pipelines._steps import measure, pipeline, prepare_data_and_model, step, summarize


def distill_steps(p, *, title: str, step_name: str):
    """Data, the student alone (baseline), the distilled student and the comparison; shared with detection."""
    data, model = prepare_data_and_model(p)
    student = step(distill_op, p, step_name, dataset=data.outputs["dataset"]).outputs["distilled_model"]
    results = dict(
        fp32=measure(p, model.outputs["model"], data, name="FP32 (student alone)", fp32_runtimes=["torch"]),
        distilled=measure(p, student, data, name="distilled", variant="distilled"),
    )
    return summarize(p, results, {"distilled": student}, title=title)


@pipeline("distill")
def distill(p):
    return distill_steps(p, title="Knowledge Distillation", step_name="distill")
