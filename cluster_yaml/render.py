"""Placeholders in native ParallelCluster YAML -> values, and every scalar -> the string the provider gets.

Placeholder forms, usable anywhere in a string value:

- ``${PublicSubnet}``: a PrereqStack value (names of the PrereqStack outputs; the awsome-distributed-
  training names such as ``${PUBLIC_SUBNET_ID}`` or ``${FSX_ID}`` are accepted as aliases).
- ``${NUM_INSTANCES}`` / ``${NUM_INSTANCES:-3}``: an UPPER_CASE name is read from CDK context
  (``-c NUM_INSTANCES=8``); after ``:-`` comes the default used when context has none.
- ``${NodeAction:enable_pyxis.sh}``: the S3 URL of ``scripts/node_actions/enable_pyxis.sh`` in the
  node-actions bucket ClusterStack deploys (``${ScriptsBucket}``): its stable key in the head node's
  and login pools' OnNodeStart/OnNodeConfigured, its content-pinned key elsewhere (node_actions.py).

CloudFormation hands every custom-resource scalar to the provider as a string. We render them as
strings ourselves (``true``/``false`` in lower case, numbers in decimal) so the template, the
snapshot, the schema check and the provider all see the same thing, create and update alike.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from cluster_yaml import stack_values
from cluster_yaml.document import ConfigDocument, YamlPath
from cluster_yaml.node_actions import is_fixed_location
from settings.errors import ConfigError, ConfigErrors

PLACEHOLDER = re.compile(r"\$\{(?P<name>[A-Za-z][A-Za-z0-9_]*)(?::-(?P<default>[^}]*)|:(?P<arg>[^}]*))?\}")
CONTEXT_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
# Tokens that sed-based templates (awsome-distributed-training) replace before use.
SED_TOKEN = re.compile(r"\bPLACEHOLDER_[A-Z0-9_]+\b")
NODE_ACTION = "NodeAction"
COMPONENT = "Component"  # image configs: ${Component:<name>} -> Image Builder component ARN
SCRIPTS_BUCKET = "ScriptsBucket"

# PrereqStack's output names, values known at synth (Region, VpcCidr) and what ClusterStack makes for the config,
# with the names awsome-distributed-training's templates use for them: declared in stack_values.py.
STACK_VALUE_NAMES = stack_values.PLACEHOLDERS
ALIASES = stack_values.ALIASES


@dataclass(frozen=True)
class Placeholder:
    text: str
    name: str
    default: str | None
    arg: str | None


@dataclass
class PlaceholderValues:
    """Where placeholder values come from: PrereqStack values (tokens, or dummies for validation),
    CDK context for UPPER_CASE names, and the node-action script URLs."""

    stack: Mapping[str, str]
    context: Callable[[str], Any]
    node_action_url: Callable[[str, bool], str]  # (script, fixed location) -> s3:// URL
    node_actions_dir: Path
    component_arn: Callable[[str], str] | None = None


def scalar_text(value: Any) -> Any:
    """The string CloudFormation would deliver for a YAML scalar (None stays None: key left out)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return value


def placeholders_in(data: Any, path: YamlPath = ()) -> Iterator[tuple[YamlPath, Placeholder]]:
    if isinstance(data, dict):
        for key, value in data.items():
            yield from placeholders_in(value, (*path, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from placeholders_in(value, (*path, index))
    elif isinstance(data, str):
        for match in PLACEHOLDER.finditer(data):
            yield path, Placeholder(match.group(0), match.group("name"), match.group("default"), match.group("arg"))


def node_actions_used(document: ConfigDocument) -> list[str]:
    """Script paths referenced with ``${NodeAction:...}``, in order of first use."""
    seen: dict[str, None] = {}
    for _, placeholder in placeholders_in(document.data):
        if placeholder.name == NODE_ACTION and placeholder.arg:
            seen.setdefault(placeholder.arg, None)
    return list(seen)


def render(document: ConfigDocument, values: PlaceholderValues) -> dict[str, Any]:
    """The config with placeholders replaced and scalars as strings. Raises ConfigError(s)."""
    errors: list[ConfigError] = []
    resolver = _Resolver(document, values, errors)
    rendered = resolver.walk(document.data, ())
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ConfigErrors(errors)
    return rendered


_OMIT = object()


class _Resolver:
    def __init__(self, document: ConfigDocument, values: PlaceholderValues, errors: list[ConfigError]) -> None:
        self.document, self.values, self.errors = document, values, errors

    def walk(self, data: Any, path: YamlPath) -> Any:
        # A value made only of placeholders that resolve to "" is left out, with its key: optional
        # settings such as `CustomAmi: ${CUSTOM_AMI:-}` then vanish when the context does not set them.
        if isinstance(data, dict):
            pairs = ((str(k), self.walk(v, (*path, k))) for k, v in data.items())
            return {k: v for k, v in pairs if v is not _OMIT}
        if isinstance(data, list):
            items = (self.walk(v, (*path, i)) for i, v in enumerate(data))
            return [v for v in items if v is not _OMIT]
        if isinstance(data, str):
            for token in SED_TOKEN.findall(data):
                self.sed_token(path, token)
            text = PLACEHOLDER.sub(lambda m: self.resolve(path, m), data)
            return _OMIT if text == "" and PLACEHOLDER.fullmatch(data.strip()) else text
        return scalar_text(data)

    def fail(self, path: YamlPath, problem: str, fix: str) -> str:
        self.errors.append(self.document.error(path, problem, fix))
        return ""

    def resolve(self, path: YamlPath, match: re.Match[str]) -> str:
        name, default, arg = match.group("name"), match.group("default"), match.group("arg")
        if name == NODE_ACTION:
            return self.node_action(path, arg or "")
        if name == COMPONENT and self.values.component_arn is not None:
            return self.values.component_arn(arg or "")
        canonical = ALIASES.get(name, name)
        if canonical in self.values.stack:
            return self.values.stack[canonical]
        if canonical in (SCRIPTS_BUCKET, "NodeActionsReadPolicy"):
            return self.fail(path, f"${{{canonical}}} is used but no ${{NodeAction:...}} script is referenced",
                             "reference a script with ${NodeAction:<file>} or remove this entry")
        if CONTEXT_NAME.match(name):
            given = self.values.context(name)
            if given is not None and given != "":
                return str(scalar_text(given))
            if default is not None:
                return default
            return self.fail(path, f"placeholder ${{{name}}} has no value",
                             f"pass -c {name}=<value> (or set it in cdk.json), or give a default: ${{{name}:-<value>}}")
        known = list(STACK_VALUE_NAMES) + list(ALIASES)
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean ${{{close[0]}}}? " if close else ""
        return self.fail(path, f"unknown placeholder ${{{name}}}",
                         f"{hint}PrereqStack values: {', '.join(STACK_VALUE_NAMES)}; "
                         "context values use UPPER_CASE names")

    def sed_token(self, path: YamlPath, token: str) -> None:
        name = token[len("PLACEHOLDER_"):]
        close = difflib.get_close_matches(name, list(ALIASES), n=1, cutoff=0.5)
        hint = f"e.g. ${{{close[0]}}}; " if close else ""
        self.fail(path, f"{token} is an unfilled placeholder (sed-style templates replace it before use)",
                  f"write a ${{...}} placeholder instead: {hint}PrereqStack values such as ${{PrimaryPrivateSubnet}}, "
                  f"${{SecurityGroup}}, ${{FSxLustreFilesystemId}}, or a context value ${{{name}}} (-c {name}=...)")

    def node_action(self, path: YamlPath, script: str) -> str:
        base = self.values.node_actions_dir
        target = (base / script).resolve()
        if not script or base.resolve() not in target.parents or not target.is_file():
            available = ", ".join(sorted(p.name for p in base.glob("*.sh")))
            return self.fail(path, f"${{NodeAction:{script}}} names no script in scripts/node_actions/",
                             f"use one of: {available}")
        return self.values.node_action_url(script, is_fixed_location(path))
