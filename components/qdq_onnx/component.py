"""CPU half of TensorRT PTQ: a calibrated QDQ ONNX model (symmetric INT8, per-channel weights).

Generated from the stage's declaration in ``visioncompress.stages``; parameters: README.md beside this file.
"""

from visioncompress.components import stage_component

qdq_onnx = stage_component('qdq_onnx')
