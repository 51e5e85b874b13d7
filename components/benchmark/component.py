"""Accuracy, latency p50/p90 at batch 1 and BATCH_SIZE, throughput and size, in the model's own runtime.

Generated from the stage's declaration in ``visioncompress.stages``; parameters: README.md beside this file.
"""

from visioncompress.components import stage_component

benchmark = stage_component('benchmark')
