"""Upload the given models, the report and a manifest to DESTINATION; move latest.json only within ACCURACY_BUDGET.

Generated from the stage's declaration in ``visioncompress.stages``; parameters: README.md beside this file.
"""

from visioncompress.components import stage_component

publish = stage_component('publish')
