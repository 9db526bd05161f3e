"""The one error type users see at synth time: where, which key, what was wrong, how to fix it."""

from __future__ import annotations

from typing import Any


class ConfigError(Exception):
    """Bad user input, reported without a stack trace by ``app.py``.

    ``source`` names the file (``cdk.json``, ``cluster_configs/x.yaml``) or ``-c`` when the value
    came from the command line; ``key`` is the context key or the YAML path.
    """

    def __init__(self, *, source: str, key: str, problem: str, fix: str, value: Any = None,
                 has_value: bool = True) -> None:
        self.source = source
        self.key = key
        self.value = value
        self.problem = problem
        self.fix = fix
        self.has_value = has_value
        shown = f" = {value!r}" if has_value else ""
        super().__init__(f"{source}: {key}{shown}: {problem}\n  fix: {fix}")

    def with_problem(self, problem: str) -> ConfigError:
        """The same place, value and fix, with another problem text."""
        return ConfigError(source=self.source, key=self.key, problem=problem, fix=self.fix, value=self.value,
                           has_value=self.has_value)


class ConfigErrors(Exception):
    """Several independent ConfigErrors, reported together so users fix them in one pass."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))
