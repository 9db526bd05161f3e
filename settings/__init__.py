"""Context -> typed, validated settings. Errors name the source, the key and the fix.

Commands read context only through here (``read``): the same defaults, conversions and errors as the app.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from settings.context import ContextReader, shipped_context
from settings.errors import ConfigError, ConfigErrors
from settings.prereq import PrereqSettings

T = TypeVar("T")


def read(settings_class: Callable[..., T], overrides: dict[str, Any] | None = None) -> T:
    """``settings_class`` from cdk.json's context with ``overrides`` (``-c`` pairs) on top; raises ConfigError(s)."""
    context = {**shipped_context(), **(overrides or {})}
    return settings_class.from_context(ContextReader(context.get))  # type: ignore[attr-defined]


__all__ = ["ConfigError", "ConfigErrors", "ContextReader", "PrereqSettings", "read", "shipped_context"]
