"""GroupFisher structured pruning of a detector while it trains.

Generated from the stage's declaration in ``visioncompress.stages``; parameters: README.md beside this file.
"""

from visioncompress.components import stage_component

prune_detection = stage_component('prune_detection')
