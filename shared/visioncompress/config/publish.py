"""Publishing parameters: where the chosen models go and when the ``latest`` pointer may move."""

from __future__ import annotations

from dataclasses import dataclass

from visioncompress.config._fields import param


@dataclass
class PublishConfig:
    destination: str = param('DESTINATION')
    accuracy_budget: float = param('ACCURACY_BUDGET')
    run_date: str = param('RUN_DATE')
    primary: str = param('PRIMARY')
    publish_over_budget: bool = param('PUBLISH_OVER_BUDGET')
    keep_last: int = param('KEEP_LAST')

    def __post_init__(self) -> None:
        from visioncompress.config._fields import check_bool
        from visioncompress.storage.publish import check_budget, check_keep_last, resolve_run_date
        from visioncompress.storage.s3 import parse_uri

        if self.destination:
            parse_uri(self.destination, "DESTINATION")
        self.accuracy_budget = check_budget(self.accuracy_budget)
        self.publish_over_budget = check_bool("PUBLISH_OVER_BUDGET", self.publish_over_budget)
        self.keep_last = check_keep_last(self.keep_last)
        if self.run_date:
            resolve_run_date(self.run_date)
