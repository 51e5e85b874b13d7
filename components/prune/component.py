"""Structured pruning (torch-pruning) of the FP32 model, then optional fine-tuning.

Generated from the stage's declaration in ``visioncompress.stages``; parameters: README.md beside this file.
"""

from visioncompress.components import stage_component

prune = stage_component('prune')
