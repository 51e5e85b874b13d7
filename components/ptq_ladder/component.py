"""INT8 by the accuracy-aware ladder (LADDER_BACKEND): plain PTQ, then PTQ with accuracy control, then QAT distilled from the FP32 model, stopping at the first within ACCURACY_BUDGET points of FP32 validation top-1; a model over budget is marked so and publish refuses it.

Generated from the stage's declaration in ``visioncompress.stages``; parameters: README.md beside this file.
"""

from visioncompress.components import stage_component

ptq_ladder = stage_component('ptq_ladder')
