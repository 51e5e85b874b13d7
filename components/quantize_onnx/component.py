"""ONNX Runtime static INT8 quantization; the output loads with onnxruntime.InferenceSession.

Generated from the stage's declaration in ``visioncompress.stages``; parameters: README.md beside this file.
"""

from visioncompress.components import stage_component

quantize_onnx = stage_component('quantize_onnx')
