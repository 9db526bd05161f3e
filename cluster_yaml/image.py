"""Custom AMI: the `pcluster build-image` config (image_configs/*.yaml) and its AWSTOE components.

Components are ordinary AWSTOE documents with build AND test phases; a command that is exactly
``#@include <repo path>`` becomes that file's content, so the image runs the same node-action
scripts as the boot-time CustomActions (one source, shellcheck-ed and tested once).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

import yaml

from cluster_yaml import dummy_values
from cluster_yaml.document import ConfigDocument, load_document
from cluster_yaml.render import PlaceholderValues, render
from cluster_yaml.schema import SchemaRequest, schema_errors
from settings.context import REPO_ROOT
from settings.errors import ConfigError, ConfigErrors

IMAGE_DIR = REPO_ROOT / "image_configs"
COMPONENT_DIR = IMAGE_DIR / "components"
INCLUDE = re.compile(r"^#@include (?P<path>\S+)$")
VERSION = re.compile(r"^# component-version: (?P<version>\d+\.\d+\.\d+)$", re.M)
STEP_ACTIONS = {"ExecuteBash", "S3Download", "WebDownload", "CreateFile", "Reboot", "UpdateOS", "ExecuteBinary"}


def component_version(path: Path) -> str:
    match = VERSION.search(path.read_text())
    if not match:
        raise ConfigError(source=str(path.relative_to(REPO_ROOT)), key="component-version", has_value=False,
                          problem="has no '# component-version: X.Y.Z' line",
                          fix="add it at the top; raise it whenever the component changes")
    return match.group("version")


def render_component(path: Path) -> str:
    """The AWSTOE YAML as uploaded: includes expanded; raises ConfigError(s) for structural problems."""
    source = str(path.relative_to(REPO_ROOT))
    document = yaml.safe_load(path.read_text())
    errors = _structure_errors(document, source)
    for phase in document.get("phases", []) if isinstance(document, dict) else []:
        for step in phase.get("steps", []):
            commands = (step.get("inputs") or {}).get("commands") if isinstance(step.get("inputs"), dict) else None
            for index, command in enumerate(commands or []):
                match = INCLUDE.match(str(command).strip())
                if not match:
                    continue
                target = REPO_ROOT / match.group("path")
                if not target.is_file():
                    errors.append(ConfigError(source=source, key=f"{phase['name']}.{step.get('name')}", has_value=False,
                                              problem=f"includes {match.group('path')}, which does not exist",
                                              fix="include a file of this repository, e.g. scripts/node_actions/x.sh"))
                    continue
                commands[index] = target.read_text()
    if errors:
        raise errors[0] if len(errors) == 1 else ConfigErrors(errors)
    component_version(path)
    return yaml.safe_dump(document, sort_keys=False, width=120)


def _structure_errors(document: Any, source: str) -> list[ConfigError]:
    def error(key: str, problem: str, fix: str) -> ConfigError:
        return ConfigError(source=source, key=key, problem=problem, fix=fix, has_value=False)

    if not isinstance(document, dict):
        return [error("(top level)", "is not a YAML mapping", "start with name, schemaVersion and phases")]
    errors = []
    for key in ("name", "schemaVersion", "phases"):
        if key not in document:
            errors.append(error(key, "is missing", "AWSTOE documents need name, schemaVersion: 1.0 and phases"))
    if str(document.get("schemaVersion")) != "1.0":
        errors.append(error("schemaVersion", "is not 1.0", "set schemaVersion: 1.0"))
    phases = {p.get("name"): p for p in document.get("phases") or [] if isinstance(p, dict)}
    for needed in ("build", "test"):
        if needed not in phases:
            errors.append(error("phases", f"has no {needed} phase", "give every component build AND test steps"))
    for name, phase in phases.items():
        for index, step in enumerate(phase.get("steps") or []):
            where = f"phases.{name}.steps[{index}]"
            if not isinstance(step, dict) or not {"name", "action", "inputs"} <= set(step):
                errors.append(error(where, "lacks name, action or inputs", "each step needs all three"))
            elif step["action"] not in STEP_ACTIONS:
                errors.append(error(f"{where}.action", f"'{step['action']}' is not an AWSTOE action",
                                    f"use one of: {', '.join(sorted(STEP_ACTIONS))}"))
        if not phase.get("steps"):
            errors.append(error(f"phases.{name}", "has no steps", "add at least one step"))
    return errors


def components_used(document: ConfigDocument) -> list[str]:
    from cluster_yaml.render import COMPONENT, placeholders_in

    return list(dict.fromkeys(p.arg for _, p in placeholders_in(document.data) if p.name == COMPONENT and p.arg))


def image_values(base: PlaceholderValues, component_arn: Callable[[str], str]) -> PlaceholderValues:
    return PlaceholderValues(stack=base.stack, context=base.context, node_action_url=base.node_action_url,
                             node_actions_dir=base.node_actions_dir, component_arn=component_arn)


def validate_image(document: ConfigDocument, region: str, vpc_cidr: str, context: Callable[[str], Any],
                   parallelcluster_version: str) -> dict[str, Any]:
    """Renders an image config with stand-ins, checks its components and ParallelCluster's schema."""
    errors: list[ConfigError] = []
    for name in components_used(document):
        path = COMPONENT_DIR / f"{name}.yaml"
        if not path.is_file():
            errors.append(document.error((), f"uses ${{Component:{name}}} but {path.relative_to(REPO_ROOT)} is missing",
                                         "add the component file or fix the name"))
            continue
        try:
            render_component(path)
        except ConfigError as error:
            errors.append(error)
        except ConfigErrors as many:
            errors.extend(many.errors)
    values = image_values(dummy_values(region, vpc_cidr, "unused", context, False),
                          lambda name: f"arn:aws:imagebuilder:{region}:123456789012:component/{name}/1.0.0/1")
    config = render(document, values)
    errors += schema_errors([SchemaRequest(document, config, "unused", kind="image")], region, parallelcluster_version)
    if errors:
        raise errors[0] if len(errors) == 1 else ConfigErrors(errors)
    return config


def load_image_config(name: str = "pcluster-ami") -> ConfigDocument:
    path = IMAGE_DIR / f"{name}.yaml"
    if not path.is_file():
        options = ", ".join(sorted(p.stem for p in IMAGE_DIR.glob("*.yaml")))
        raise ConfigError(source="image_configs", key=name, has_value=False, problem="no such image config",
                          fix=f"use one of: {options}")
    return load_document(path, source=f"image_configs/{path.name}")
