"""Publishing parameters: where the chosen models go and when the ``latest`` pointer may move."""

from __future__ import annotations

from dataclasses import dataclass

from visioncompress.config._fields import spec_field


@dataclass
class PublishConfig:
    destination: str = spec_field("", "DESTINATION", help="s3://bucket/prefix or minio://bucket/prefix; "
                                  "empty = do not publish")
    accuracy_budget: float = spec_field(1.0, "ACCURACY_BUDGET", help="top-1 points (mAP points for detection) the "
                                        "new model may lose against the current latest; a candidate further below "
                                        "never becomes latest")
    run_date: str = spec_field("", "RUN_DATE", help="publication date (YYYY-MM-DD); empty = today (UTC); "
                               "schedules pass [[ScheduledTime.2006-01-02]]")
    primary: str = spec_field("", "PRIMARY", help="the published model whose top-1 (mAP) gates the latest pointer "
                              "(default: the first)")
    publish_over_budget: bool = spec_field(False, "PUBLISH_OVER_BUDGET", help="upload a candidate over "
                                           "ACCURACY_BUDGET anyway, under its own prefix with a manifest marked "
                                           "rejected (latest.json never moves to it); False: upload nothing")
    keep_last: int = spec_field(0, "KEEP_LAST", help="keep this many newest publications and delete older ones "
                                "(never the one latest.json points to); 0 keeps every publication")

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
