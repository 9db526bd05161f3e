"""Typed access to CDK context, with errors that say where a value came from.

The CDK CLI merges ``cdk.json``, ``cdk.context.json`` and ``-c key=value`` before the app runs, so
the app cannot see the origin of a value. We compare with ``cdk.json`` to name the likely file:
a value equal to the shipped one came from ``cdk.json``, anything else from ``-c``.
Values given with ``-c`` always arrive as strings, so every getter accepts the string form too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

from settings.errors import ConfigError, ConfigErrors

REPO_ROOT = Path(__file__).resolve().parent.parent
CDK_JSON = REPO_ROOT / "cdk.json"

T = TypeVar("T")
_MISSING = object()


def shipped_context() -> dict[str, Any]:
    """The ``context`` block of the repository's cdk.json (the documented defaults)."""
    return json.loads(CDK_JSON.read_text())["context"]


class ContextReader:
    """Reads and converts context values, collecting every problem before raising once."""

    def __init__(self, lookup: Callable[[str], Any], cdk_json_context: dict[str, Any] | None = None) -> None:
        self._lookup = lookup
        self._cdk_json = shipped_context() if cdk_json_context is None else cdk_json_context
        self.errors: list[ConfigError] = []

    # -- provenance ---------------------------------------------------------------------------
    def source(self, key: str) -> str:
        value = self._lookup(key)
        if value is None:
            return "default"
        if key in self._cdk_json and _same(self._cdk_json[key], value):
            return "cdk.json"
        return "-c (command line or cdk.context.json)"

    def fail(self, key: str, problem: str, fix: str, value: Any = _MISSING) -> None:
        shown = self._lookup(key) if value is _MISSING else value
        self.errors.append(ConfigError(source=self.source(key), key=f"context '{key}'", value=shown,
                                       problem=problem, fix=fix))

    def raise_if_errors(self) -> None:
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            raise ConfigErrors(self.errors)

    # -- typed getters ------------------------------------------------------------------------
    def raw(self, key: str) -> Any:
        """The value as given (None when unset), for keys that accept several types."""
        return self._lookup(key)

    def string(self, key: str, default: str) -> str:
        value = self._lookup(key)
        if value is None:
            return default
        if not isinstance(value, str):
            self.fail(key, "must be a string", f"set it as a quoted string, e.g. -c {key}={default or 'VALUE'}")
            return default
        return value.strip()

    def boolean(self, key: str, default: bool) -> bool:
        value = self._lookup(key)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        self.fail(key, "must be true or false", f"use -c {key}=true or -c {key}=false")
        return default

    def integer(self, key: str, default: int, *, allowed: Iterable[int] | None = None,
                check: Callable[[int], str | None] | None = None, hint: str = "") -> int:
        """An int from context. ``allowed`` lists valid values; ``check`` returns a problem or None."""
        value = self._lookup(key)
        if value is None:
            return default
        allowed = list(allowed) if allowed is not None else None
        choices = hint or (", ".join(map(str, allowed)) if allowed else "")
        fix = f"use one of: {choices}" if choices else f"use a whole number, e.g. -c {key}={default}"
        number = _to_int(value)
        if number is None:
            self.fail(key, "is not a whole number", fix)
            return default
        if allowed is not None and number not in allowed:
            self.fail(key, "is not an allowed value", fix)
            return default
        problem = check(number) if check else None
        if problem:
            self.fail(key, problem, fix)
            return default
        return number

    def choice(self, key: str, default: str, allowed: Iterable[str]) -> str:
        allowed = list(allowed)
        value = self.string(key, default)
        if value not in allowed:
            self.fail(key, "is not an allowed value", f"use one of: {', '.join(allowed)}")
            return default
        return value

    def json_list(self, key: str, default: list[Any]) -> list[Any]:
        """A list; from ``-c`` it is given as JSON text."""
        return self._json(key, default, list, "a JSON list", "[]", "must be a list")

    def json_object(self, key: str, default: dict[str, Any]) -> dict[str, Any]:
        """A JSON object; from ``-c`` it is given as JSON text."""
        return self._json(key, default, dict, "a JSON object", "{}", "must be a JSON object")

    def _json(self, key: str, default: Any, kind: type, what: str, empty: str, wrong_type: str) -> Any:
        value = self._lookup(key)
        if value is None:
            return default
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                self.fail(key, f"is not valid JSON ({exc.msg} at character {exc.pos})",
                          f"pass {what}, e.g. -c '{key}={empty}', or edit it in cdk.json")
                return default
        if not isinstance(value, kind):
            self.fail(key, wrong_type, f"write it as {what} in cdk.json, e.g. \"{key}\": {empty}")
            return default
        return value


def _to_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def _same(shipped: Any, given: Any) -> bool:
    return shipped == given or (isinstance(given, str) and json.dumps(shipped) == given) or str(shipped) == given


__all__ = ["ContextReader", "ConfigError", "ConfigErrors", "shipped_context", "REPO_ROOT"]
