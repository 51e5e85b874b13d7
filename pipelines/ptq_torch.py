"""CPU Post Training Quantization - Torch (the spec's parameters and defaults)."""

from visioncompress.components.quantize_torch.component import quantize_torch
from visioncompress.pipelines._steps import single_ptq, pipeline


@pipeline("ptq_torch")
def ptq_torch(p):
    return single_ptq(p, quantize_torch, "torch_ptq", "torch", title="PTQ - Torch", step_name="PTQ torch")
