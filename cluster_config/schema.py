"""ParallelCluster's own config schema, run offline in its isolated venv (.venv-pcluster)."""

from __future__ import annotations

import hashlib
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
LOCK_FILE = REPO_ROOT / "requirements-pcluster.txt"
CACHE_DIR = REPO_ROOT / ".cache" / "pcluster-schema"
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


class SchemaCheck:
    """ParallelCluster's schema check running in the background: started first, collected last, so
    it overlaps with building the stacks (it is a separate Python process in the isolated venv).

    Answers are cached by content (the configs, the worker, the locked venv), so a synth of an
    unchanged config does not pay for the check again; ``use_cache=False`` always runs it.
    """

    def __init__(self, requests: list[SchemaRequest], region: str, expected_version: str,
                 python: Path = PCLUSTER_PYTHON, use_cache: bool = True) -> None:
        self.requests, self.expected_version, self.python = requests, expected_version, python
        self.process: subprocess.Popen[str] | None = None
        self.payload = json.dumps({"configs": [{"name": r.document.source, "cluster_name": r.cluster_name,
                                                "config": r.config, "kind": r.kind} for r in requests]},
                                  sort_keys=True)
        key = hashlib.sha256("\0".join((self.payload, region, str(python), WORKER.read_text(),
                                         LOCK_FILE.read_text() if LOCK_FILE.exists() else "")).encode()).hexdigest()
        self.cache_file = CACHE_DIR / f"{key}.json" if use_cache else None
        self.cached = json.loads(self.cache_file.read_text()) if self.cache_file and self.cache_file.exists() else None
        if requests and python.exists() and self.cached is None:
            self.process = subprocess.Popen([str(python), str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            stderr=subprocess.PIPE, text=True, env=_offline_env(region))

    def errors(self) -> list[ConfigError]:
        """Errors ParallelCluster's ClusterSchema reports for each config, mapped to file, line and key."""
        if not self.requests:
            return []
        if self.cached is not None:
            return self._errors_from(self.cached)
        if self.process is None:
            where = str(self.python.relative_to(REPO_ROOT)) if self.python.is_relative_to(REPO_ROOT) else str(self.python)
            return [ConfigError(source=where, key="ParallelCluster schema", has_value=False,
                                problem="the isolated ParallelCluster venv is missing",
                                fix="run `make install` (it creates .venv-pcluster from requirements-pcluster.txt)")]
        stdout, stderr = self.process.communicate(self.payload, timeout=120)
        if self.process.returncode != 0:
            return [ConfigError(source=str(WORKER.relative_to(REPO_ROOT)), key="ParallelCluster schema",
                                has_value=False, problem=f"the schema check crashed: {stderr.strip()[-800:]}",
                                fix="run `make install` to rebuild .venv-pcluster")]
        answer = json.loads(stdout)
        if self.cache_file:
            self.cache_file.parent.mkdir(parents=True, exist_ok=True)
            self.cache_file.write_text(stdout)
        return self._errors_from(answer)

    def _errors_from(self, answer: dict[str, Any]) -> list[ConfigError]:
        if answer["version"] != self.expected_version:
            return [ConfigError(source="requirements-pcluster.txt", key="aws-parallelcluster",
                                value=answer["version"], problem=f"does not match context parallelcluster_version "
                                f"{self.expected_version} (the provider that will deploy the cluster)",
                                fix="pin the same version in both places, then run `make install`")]
        errors: list[ConfigError] = []
        for request, outcome in zip(self.requests, answer["results"]):
            for path, message in _flatten(outcome["errors"] or {}, (), request.config):
                section = next((str(p) for p in reversed(path) if not isinstance(p, int)), "the top level")
                errors.append(request.document.error(
                    path, f"ParallelCluster schema: {message}",
                    f"see {section} in the ParallelCluster {request.kind} configuration reference"))
        return errors


def schema_errors(requests: list[SchemaRequest], region: str, expected_version: str,
                  python: Path = PCLUSTER_PYTHON) -> list[ConfigError]:
    """The schema check, waited for at once."""
    return SchemaCheck(requests, region, expected_version, python).errors()


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
