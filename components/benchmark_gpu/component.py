"""The benchmark on a GPU node: accuracy, latency, throughput and size of a TensorRT engine.

Generated from the stage's declaration in ``visioncompress.stages``; parameters: README.md beside this file.
"""

from visioncompress.components import stage_component

benchmark_gpu = stage_component('benchmark_gpu')
