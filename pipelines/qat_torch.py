"""CPU Quantization Aware Training - PyTorch (FX), the spec's parameters and defaults."""

from visioncompress.components.qat_torch.component import qat_torch as qat_torch_op
from visioncompress.pipelines._steps import single_ptq, pipeline


@pipeline("qat_torch")
def qat_torch(p):
    return single_ptq(p, qat_torch_op, "torch_qat", "torch", title="QAT - PyTorch (FX)",
                      step_name="QAT Torch (FX, x86)", variant="qat-int8")
