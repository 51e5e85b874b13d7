"""GPU half of TensorRT PTQ: build and serialise an INT8 engine from the QDQ ONNX model.

Generated from the stage's declaration in ``visioncompress.stages``; parameters: README.md beside this file.
"""

from visioncompress.components import stage_component

build_tensorrt_engine = stage_component('build_tensorrt_engine')
