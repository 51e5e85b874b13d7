"""Shared machinery for stage configs: spec-name mapping and value checks."""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Iterable, Mapping, TypeVar

from visioncompress.config.catalog import param  # noqa: F401  (re-exported for the config modules)
from visioncompress.errors import ConfigError

C = TypeVar("C")


def spec_names(cls: type) -> dict[str, str]:
    """Map every accepted spec spelling (and the field name itself) to the field name."""
    names: dict[str, str] = {}
    for f in dataclasses.fields(cls):
        spec = f.metadata.get("spec", f.name)
        for alias in {f.name, spec, spec.replace(" ", "_"), spec.replace("_", " ")}:
            names[alias] = f.name
    return names


def from_spec(cls: type[C], params: Mapping[str, Any]) -> C:
    """Build a config from spec-named parameters; unknown names are errors with a suggestion."""
    names = spec_names(cls)
    kwargs: dict[str, Any] = {}
    for key, value in params.items():
        if key not in names:
            close = difflib.get_close_matches(key, list(names), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(key, value, f"a parameter of {cls.__name__}{hint}")
        kwargs[names[key]] = value
    return cls(**kwargs)


def config_from(cls: type[C], params: Mapping[str, Any]) -> C:
    """Build ``cls`` from the entries of ``params`` named as in the spec (components pass ``locals()``).

    Only spec names count here, so a component's artifact arguments (``model``, ``dataset``) never
    land in a config field of the same name.
    """
    by_spec = {f.metadata["spec"]: f.name for f in dataclasses.fields(cls) if "spec" in f.metadata}
    return cls(**{by_spec[k]: v for k, v in params.items() if k in by_spec})


def to_spec(config: Any) -> dict[str, Any]:
    """The config as spec-named parameters (what the metadata and reports record)."""
    return {
        f.metadata.get("spec", f.name): getattr(config, f.name) for f in dataclasses.fields(config)
    }


def check_choice(parameter: str, value: str, allowed: Iterable[str]) -> str:
    """Case-insensitive choice; returns the canonical spelling."""
    allowed = list(allowed)
    lookup = {a.lower(): a for a in allowed}
    canonical = lookup.get(str(value).strip().lower())
    if canonical is None:
        raise ConfigError(parameter, value, allowed)
    return canonical


def check_int(parameter: str, value: Any, *, minimum: int | None = None, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise ConfigError(parameter, value, "an integer")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ConfigError(parameter, value, f"an integer >= {minimum}")
    if maximum is not None and value > maximum:
        raise ConfigError(parameter, value, f"an integer <= {maximum}")
    return value


def check_float(parameter: str, value: Any, *, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(parameter, value, "a number")
    value = float(value)
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        raise ConfigError(parameter, value, f"a number in {left}{low}, {high}{right}")
    return value


def check_bool(parameter: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "false", "1", "0", "yes", "no"}:
        return value.strip().lower() in {"true", "1", "yes"}
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ConfigError(parameter, value, "true or false")
