"""Reports: comparison tables, plots, KFP metrics."""

from visioncompress.report.build import build_report
from visioncompress.report.tables import compare, kfp_scalars, markdown_table, text_table

__all__ = ["build_report", "compare", "kfp_scalars", "markdown_table", "text_table"]
