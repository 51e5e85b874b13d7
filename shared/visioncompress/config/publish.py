"""Publishing parameters: where the chosen models go and when the ``latest`` pointer may move."""

from __future__ import annotations

from dataclasses import dataclass

from visioncompress.config._fields import spec_field


@dataclass
class PublishConfig:
    destination: str = spec_field("", "DESTINATION", help="s3://bucket/prefix or minio://bucket/prefix; "
                                  "empty = do not publish")
    accuracy_budget: float = spec_field(1.0, "ACCURACY_BUDGET", help="top-1 points the new model may lose against "
                                        "the current latest before the latest pointer stops moving")
    run_date: str = spec_field("", "RUN_DATE", help="publication date (YYYY-MM-DD); empty = today (UTC); "
                               "schedules pass [[ScheduledTime.2006-01-02]]")
    primary: str = spec_field("", "PRIMARY", help="the published model whose top-1 gates the latest pointer "
                              "(default: the first)")

    def __post_init__(self) -> None:
        from visioncompress.storage.publish import check_budget, resolve_run_date
        from visioncompress.storage.s3 import parse_uri

        if self.destination:
            parse_uri(self.destination, "DESTINATION")
        self.accuracy_budget = check_budget(self.accuracy_budget)
        if self.run_date:
            resolve_run_date(self.run_date)
