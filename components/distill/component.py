"""Knowledge distillation: trains the student (MODEL) from the teacher (classification: softened logits; detection: PKD/CWD on FPN features).

Generated from the stage's declaration in ``visioncompress.stages``; parameters: README.md beside this file.
"""

from visioncompress.components import stage_component

distill = stage_component('distill')
