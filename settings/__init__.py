"""Context -> typed, validated settings. Errors name the source, the key and the fix."""

from settings.context import ContextReader, shipped_context
from settings.errors import ConfigError, ConfigErrors
from settings.prereq import PrereqSettings

__all__ = ["ConfigError", "ConfigErrors", "ContextReader", "PrereqSettings", "shipped_context"]
