"""PyTorch CPU post-training quantization; the output loads with torch.jit.load.

Generated from the stage's declaration in ``visioncompress.stages``; parameters: README.md beside this file.
"""

from visioncompress.components import stage_component

quantize_torch = stage_component('quantize_torch')
