"""Stands in for a branch that did not run: an empty results list, so the report lists what ran.

Generated from the stage's declaration in ``visioncompress.stages``; parameters: README.md beside this file.
"""

from visioncompress.components import stage_component

skipped_results = stage_component("skipped_results")
