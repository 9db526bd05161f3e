"""A cluster config file as loaded: its data plus where each key sits, for errors that point at a line."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from settings.errors import ConfigError

YamlPath = tuple[Any, ...]  # ("Scheduling", "SlurmQueues", 0, "Name")


def format_path(path: YamlPath) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


@dataclass
class ConfigDocument:
    source: str  # shown in errors, e.g. cluster_configs/vanilla.yaml
    data: dict[str, Any]
    lines: dict[YamlPath, int] = field(default_factory=dict)

    def line_of(self, path: YamlPath) -> int | None:
        """Line of ``path``, or of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return None

    def error(self, path: YamlPath, problem: str, fix: str, value: Any = None, has_value: bool = False) -> ConfigError:
        line = self.line_of(path)
        where = f"{self.source}:{line}" if line else self.source
        return ConfigError(source=where, key=format_path(path), problem=problem, fix=fix, value=value,
                           has_value=has_value)


def load_document(path: Path, source: str | None = None) -> ConfigDocument:
    """Parses YAML, keeping the line of every key. Syntax errors become a ConfigError with the line."""
    source = source or path.name
    text = path.read_text()
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        line = text.splitlines()[mark.line] if mark and mark.line < len(text.splitlines()) else ""
        if "${" in line and re.search(r"[\[{]\s*\$\{", line):
            fix = 'quote a placeholder inside [ ] or { } (YAML reads "{" there as a mapping): ["${SecurityGroup}"]'
        else:
            fix = "check indentation and quoting on that line (a `:` or `#` inside a value needs quotes)"
        raise ConfigError(source=where, key="YAML", problem=f"is not valid YAML: {problem}", fix=fix,
                          has_value=False) from None
    if not isinstance(data, dict):
        raise ConfigError(source=source, key="(top level)", problem="is not a YAML mapping",
                          fix="a ParallelCluster config starts with keys such as Region, Image, HeadNode, Scheduling",
                          has_value=False)
    lines: dict[YamlPath, int] = {}
    _record_lines(root, (), lines)
    return ConfigDocument(source=source, data=data, lines=lines)


def _record_lines(node: yaml.Node, path: YamlPath, lines: dict[YamlPath, int]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = (*path, key_node.value)
            _record_lines(value_node, child, lines)
            lines[child] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _record_lines(item, (*path, index), lines)
