"""Run-time settings every computing stage reads: CPU threads and object storage endpoint."""

from __future__ import annotations

from dataclasses import dataclass

from visioncompress.config._fields import check_choice, check_int, param


@dataclass
class RuntimeConfig:
    threads: int = param('THREADS')

    def __post_init__(self) -> None:
        self.threads = check_int("THREADS", self.threads, minimum=0)


@dataclass
class StorageConfig:
    endpoint: str = param('S3_ENDPOINT')
    secure: str = param('S3_SECURE')
    region: str = param('S3_REGION')

    def __post_init__(self) -> None:
        self.endpoint = str(self.endpoint or "").strip()
        self.region = str(self.region or "").strip()
        secure = str(self.secure).strip().lower() if self.secure not in (None, "") else ""
        self.secure = check_choice("S3_SECURE", secure, ("", "true", "false")) if secure else ""
        if "://" in self.endpoint:
            scheme, _, rest = self.endpoint.partition("://")
            if scheme.lower() not in {"http", "https"} or "/" in rest.rstrip("/"):
                from visioncompress.errors import ConfigError
                raise ConfigError("S3_ENDPOINT", self.endpoint, "host[:port] or http(s)://host[:port] without a path")

    def environment(self) -> dict[str, str]:
        """The storage settings these parameters override (the storage layer reads VC_S3_*)."""
        env = {}
        if self.endpoint:
            env["VC_S3_ENDPOINT"] = self.endpoint
        if self.secure:
            env["VC_S3_SECURE"] = self.secure
        if self.region:
            env["VC_S3_REGION"] = self.region
        return env
