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

    def __post_init__(self) -> None:
        from visioncompress.storage.publish import check_budget, resolve_run_date
        from visioncompress.storage.s3 import parse_uri

        if self.destination:
            parse_uri(self.destination, "DESTINATION")
        self.accuracy_budget = check_budget(self.accuracy_budget)
        if self.run_date:
            resolve_run_date(self.run_date)
