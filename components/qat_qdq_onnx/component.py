"""CPU half of TensorRTQAT: quantization-aware training in TensorRT's INT8 form (symmetric, per-channel weights), exported as a QDQ ONNX model.

Generated from the stage's declaration in ``visioncompress.stages``; parameters: README.md beside this file.
"""

from visioncompress.components import stage_component

qat_qdq_onnx = stage_component('qat_qdq_onnx')
