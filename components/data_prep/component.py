"""Prepare a dataset artifact (train/val/calibration/test splits) for classification or detection.

Generated from the stage's declaration in ``visioncompress.stages``; parameters: README.md beside this file.
"""

from visioncompress.components import stage_component

data_prep = stage_component('data_prep')
