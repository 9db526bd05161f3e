"""Settings of the lifecycle tools (hpc-replacement-guard, hpc-pr-report): what a change may replace."""

from __future__ import annotations

import re
from dataclasses import dataclass

from settings.context import ContextReader

REPLACEMENT_KEY = re.compile(r"^(PrereqStack|ClusterStack)/[A-Za-z0-9]+$")


@dataclass(frozen=True)
class LifecycleSettings:
    # "Stack/LogicalId" of resources holding data that a change may replace or delete (the guard's acknowledgements).
    acknowledged_replacements: tuple[str, ...] = ()

    @classmethod
    def from_context(cls, reader: ContextReader) -> "LifecycleSettings":
        keys = reader.json_list("acknowledged_replacements", list(cls().acknowledged_replacements))
        for key in keys:
            if not isinstance(key, str) or not REPLACEMENT_KEY.match(key):
                reader.fail("acknowledged_replacements", f"holds {key!r}, which is not a Stack/LogicalId",
                            "copy the keys hpc-replacement-guard prints, e.g. \"PrereqStack/HomeFileSystem776A06C2\"",
                            value=keys)
        settings = cls(tuple(k for k in keys if isinstance(k, str)))
        reader.raise_if_errors()
        return settings
