"""Errors that a user can act on: each names what was wrong and what is allowed."""

from __future__ import annotations

from typing import Iterable


class VisionCompressError(Exception):
    """Base class for the errors this library raises on purpose."""


class ConfigError(VisionCompressError, ValueError):
    """A stage parameter has a value the stage cannot use."""

    def __init__(self, parameter: str, value: object, allowed: str | Iterable[object]):
        if not isinstance(allowed, str):
            allowed = "one of: " + ", ".join(str(a) for a in allowed)
        self.parameter, self.value, self.allowed = parameter, value, allowed
        super().__init__(f"{parameter}={value!r} is not allowed; expected {allowed}")


class ArtifactError(VisionCompressError):
    """An input artifact is missing, incomplete or of the wrong kind."""


class TrainingError(VisionCompressError):
    """Training ended in a state the stage refuses to write (a student below its stated floor)."""


class MissingDependencyError(VisionCompressError):
    """A backend's runtime (a package or a device) is not available on this node."""


class StageFailed(VisionCompressError):
    """A pipeline step failed; the message is that step's own one-line error and where its log is."""

    def __init__(self, stage: str, message: str, log: str | None = None):
        self.stage, self.message, self.log = stage, message, log
        where = f" (log: {log})" if log else ""
        super().__init__(f"{stage}: {message}{where}")
