"""OpenVINO INT8 via NNCF post-training quantization; the output loads with openvino.Core().read_model.

Generated from the stage's declaration in ``visioncompress.stages``; parameters: README.md beside this file.
"""

from visioncompress.components import stage_component

quantize_openvino = stage_component('quantize_openvino')
