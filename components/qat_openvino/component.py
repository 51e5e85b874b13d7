"""OpenVINO INT8 via NNCF quantization-aware training; the output loads with openvino.Core().read_model.

Generated from the stage's declaration in ``visioncompress.stages``; parameters: README.md beside this file.
"""

from visioncompress.components import stage_component

qat_openvino = stage_component('qat_openvino')
