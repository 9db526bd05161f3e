"""ParallelCluster's own config schema, run offline in its isolated venv (.venv-pcluster)."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from cluster_config.document import ConfigDocument, YamlPath
from settings.context import REPO_ROOT
from settings.errors import ConfigError

PCLUSTER_PYTHON = REPO_ROOT / ".venv-pcluster" / "bin" / "python"
WORKER = Path(__file__).with_name("pcluster_worker.py")


@dataclass(frozen=True)
class SchemaRequest:
    document: ConfigDocument
    config: dict[str, Any]  # rendered with validation dummies
    cluster_name: str
    kind: str = "cluster"  # or "image" (pcluster build-image config)


def _offline_env(region: str) -> dict[str, str]:
    # No credentials and no metadata endpoint: a stray AWS call fails at once instead of going online.
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "AWS_DEFAULT_REGION": region,
            "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "PYTHONDONTWRITEBYTECODE": "1"}


def schema_errors(requests: list[SchemaRequest], region: str, expected_version: str,
                  python: Path = PCLUSTER_PYTHON) -> list[ConfigError]:
    """Errors ParallelCluster's ClusterSchema reports for each config, mapped to file, line and key."""
    if not python.exists():
        return [ConfigError(source=str(python.relative_to(REPO_ROOT)) if python.is_relative_to(REPO_ROOT) else
                            str(python), key="ParallelCluster schema", has_value=False,
                            problem="the isolated ParallelCluster venv is missing",
                            fix="run `make install` (it creates .venv-pcluster from requirements-pcluster.txt)")]
    payload = {"configs": [{"name": r.document.source, "cluster_name": r.cluster_name, "config": r.config,
                            "kind": r.kind} for r in requests]}
    result = subprocess.run([str(python), str(WORKER)], input=json.dumps(payload), capture_output=True, text=True,
                            env=_offline_env(region), timeout=120)
    if result.returncode != 0:
        return [ConfigError(source=str(WORKER.relative_to(REPO_ROOT)), key="ParallelCluster schema",
                            has_value=False, problem=f"the schema check crashed: {result.stderr.strip()[-800:]}",
                            fix="run `make install` to rebuild .venv-pcluster")]
    answer = json.loads(result.stdout)
    if answer["version"] != expected_version:
        return [ConfigError(source="requirements-pcluster.txt", key="aws-parallelcluster",
                            value=answer["version"], problem=f"does not match context parallelcluster_version "
                            f"{expected_version} (the provider that will deploy the cluster)",
                            fix="pin the same version in both places, then run `make install`")]
    errors: list[ConfigError] = []
    for request, outcome in zip(requests, answer["results"]):
        for path, message in _flatten(outcome["errors"] or {}, (), request.config):
            section = next((str(p) for p in reversed(path) if not isinstance(p, int)), "the top level")
            errors.append(request.document.error(path, f"ParallelCluster schema: {message}",
                                                 f"see {section} in the ParallelCluster {request.kind} configuration "
                                                 "reference"))
    return errors


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
