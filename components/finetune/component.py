"""Build (or load) the model and optionally fine-tune it; writes the FP32 model artifact.

Generated from the stage's declaration in ``visioncompress.stages``; parameters: README.md beside this file.
"""

from visioncompress.components import stage_component

finetune = stage_component('finetune')
