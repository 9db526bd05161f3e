"""ParallelCluster's own config schema (marshmallow), run offline in its isolated venv: its messages
mapped to the file, line and key of the config they are about."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Iterator

from cluster_yaml.document import ConfigDocument, YamlPath
from cluster_yaml.sidecar import ask_once, lock_file, pcluster_python
from settings.errors import ConfigError

# Operating systems ParallelCluster dropped, and what replaces them (its CHANGELOG: alinux2 and
# ubuntu2004 are not offered by 3.16).
DROPPED_OS = {"alinux2": "alinux2023", "ubuntu2004": "ubuntu2204 or ubuntu2404", "centos7": "rocky8 or rocky9",
              "ubuntu1804": "ubuntu2204 or ubuntu2404", "alinux": "alinux2023"}


@dataclass(frozen=True)
class SchemaRequest:
    document: ConfigDocument
    config: dict[str, Any]  # rendered
    cluster_name: str
    kind: str = "cluster"  # or "image" (pcluster build-image config)


def schema_request(requests: list[SchemaRequest]) -> dict[str, Any]:
    return {"configs": [{"name": r.document.source, "cluster_name": r.cluster_name, "config": r.config,
                         "kind": r.kind} for r in requests]}


def version_error(found: str, expected: str) -> ConfigError | None:
    if found == expected:
        return None
    return ConfigError(source=lock_file(expected).name, key="aws-parallelcluster", value=found,
                       problem=f"does not match context parallelcluster_version {expected} (the provider that will "
                               "deploy the cluster)", fix=f"pin aws-parallelcluster=={expected} there, then run "
                                                          "`make install`")


def errors_from(requests: list[SchemaRequest], answer: dict[str, Any], expected_version: str) -> list[ConfigError]:
    """Errors ParallelCluster's schema reports for each config, mapped to file, line and key."""
    mismatch = version_error(answer["version"], expected_version)
    if mismatch:
        return [mismatch]
    errors: list[ConfigError] = []
    for request, outcome in zip(requests, answer["results"]):
        for path, message in _flatten(outcome["errors"] or {}, (), request.config):
            errors.append(_error(request, path, message, outcome.get("fields", {})))
    return errors


def _error(request: SchemaRequest, path: YamlPath, message: str, fields: dict[str, list[str]]) -> ConfigError:
    section = next((str(p) for p in reversed(path) if not isinstance(p, int)), "the top level")
    fix = f"see {section} in the ParallelCluster {request.kind} configuration reference"
    key = path[-1] if path else ""
    if message == "Unknown field." and isinstance(key, str):
        allowed = fields.get(".".join(str(p) for p in path[:-1] if not isinstance(p, int)), [])
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        fix = (f"did you mean {close[0]}? " if close else "") + (
            f"keys allowed here: {', '.join(sorted(allowed))}" if allowed else fix)
    if path == ("Image", "Os") or (len(path) >= 2 and path[-2:] == ("Image", "Os")):
        value = request.config.get("Image", {}).get("Os") if isinstance(request.config.get("Image"), dict) else None
        if value in DROPPED_OS:
            fix = f"ParallelCluster no longer supports {value}: use {DROPPED_OS[value]}"
    return request.document.error(path, f"ParallelCluster schema: {message}", fix)


def schema_errors(requests: list[SchemaRequest], region: str, expected_version: str) -> list[ConfigError]:
    """The schema check of ``expected_version``'s own package, in a process of its own, waited for at once (cached by
    content)."""
    if not requests:
        return []
    answer = ask_once(schema_request(requests), region, python=pcluster_python(expected_version))
    return errors_from(requests, answer, expected_version)


def _flatten(messages: Any, path: YamlPath, data: Any) -> Iterator[tuple[YamlPath, str]]:
    """Marshmallow's nested {key: {index: [msg]}} -> (YAML path, message); list indices become ints."""
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, (dict, list)):
                yield from _flatten(message, path, data)
            else:
                yield path, str(message)
        return
    for key, value in messages.items():
        if key == "_schema":
            yield from _flatten(value, path, data)
            continue
        step: Any = int(key) if isinstance(data, list) and str(key).isdigit() else key
        child = data[step] if isinstance(data, list) and isinstance(step, int) and step < len(data) else (
            data.get(step) if isinstance(data, dict) else None)
        yield from _flatten(value, (*path, step), child)
