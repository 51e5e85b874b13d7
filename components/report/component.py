"""One comparison report (Markdown table + plot) over the benchmark results that were given.

Generated from the stage's declaration in ``visioncompress.stages``; parameters: README.md beside this file.
"""

from visioncompress.components import stage_component

report = stage_component('report')
