"""Validate a whole run's parameters against the stage configs it will build, before any work."""

from __future__ import annotations

import difflib
from typing import Any, Iterable, Mapping

from visioncompress.config._fields import from_spec, spec_names
from visioncompress.errors import ConfigError


def validate_params(params: Mapping[str, Any], config_classes: Iterable[type],
                    accepted: Iterable[str] = ()) -> list[Any]:
    """Build every config from the parameters it knows; a name no stage knows is an error."""
    config_classes = list(config_classes)
    known = {name for cls in config_classes for name in spec_names(cls)} | set(accepted)
    for key, value in params.items():
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            raise ConfigError(key, value, "a known parameter" + (f" (did you mean {close[0]!r}?)" if close else ""))
    configs = []
    for cls in config_classes:
        names = spec_names(cls)
        configs.append(from_spec(cls, {k: v for k, v in params.items() if k in names}))
    return configs
