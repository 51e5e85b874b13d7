"""PyTorch CPU quantization-aware training (FX, x86 engine); the INT8 output loads with torch.jit.load.

Generated from the stage's declaration in ``visioncompress.stages``; parameters: README.md beside this file.
"""

from visioncompress.components import stage_component

qat_torch = stage_component('qat_torch')
