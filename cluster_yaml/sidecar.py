"""The ParallelCluster worker process (pcluster_sidecar/worker.py in .venv-pcluster-<version>), seen from the app
and its answer cache.

aws-parallelcluster pins CDK v1, so its code runs in its own venv, in a process of its own: started
early (imports and the simulated account's backends warm up while the stacks are built), asked one
JSON request per line, and closed. Answers are cached by content: the request, the worker's source
and the locked venv, so an unchanged config and unchanged templates are never checked twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from settings.cluster import ClusterSettings, supported_parallelcluster_versions
from settings.context import REPO_ROOT


def pcluster_venv(version: str) -> Path:
    """The isolated venv of one ParallelCluster version, built by make install from its lock file."""
    return REPO_ROOT / f".venv-pcluster-{version}"


def pcluster_python(version: str) -> Path:
    return pcluster_venv(version) / "bin" / "python"


def lock_file(version: str) -> Path:
    return REPO_ROOT / f"requirements-pcluster-{version}.txt"


DEFAULT_VERSION = ClusterSettings.parallelcluster_version
PCLUSTER_PYTHON = pcluster_python(DEFAULT_VERSION)  # the version of the shipped context
CACHE_DIR = REPO_ROOT / ".cache" / "pcluster"
SIDECAR = REPO_ROOT / "pcluster_sidecar"  # runs in .venv-pcluster-<version> (pcluster_sidecar/__init__.py)
WORKER = SIDECAR / "worker.py"
WORKER_SOURCES = (WORKER, SIDECAR / "account.py")
TIMEOUT_SECONDS = 300
INSTALL_HINT = ("run `make install` (it builds .venv-pcluster-<version> from requirements-pcluster-<version>.txt for "
                "each parallelcluster_version cdk.json uses; `make pcluster-venv PCLUSTER_VERSION=<version>` builds "
                "another)")


class WorkerError(Exception):
    """The worker is missing or stopped: a broken install, not a bad config."""


class MachineryFailure(WorkerError):
    """The validation machinery failed on a request (a fault of the simulation, not of the config): the
    exception, what was being checked, and the worker's traceback."""

    def __init__(self, exception: str, checking: str | None, traceback: str = "") -> None:
        super().__init__(f"{exception} (while checking {checking or 'the request'})")
        self.exception, self.checking, self.traceback = exception, checking, traceback


def installed_python(version: str) -> Path:
    """The python of ``version``'s venv; a WorkerError saying how to get it when it is not there."""
    python = pcluster_python(version)
    if python.exists():
        return python
    if lock_file(version).exists():
        raise WorkerError(f"ParallelCluster {version}'s own package, in {pcluster_venv(version).name}, is not installed: "
                          f"run `make pcluster-venv PCLUSTER_VERSION={version}`")
    raise WorkerError(f"ParallelCluster {version} has no lock in this app (requirements-pcluster-{version}.txt), so "
                      "its update policies cannot be read offline; supported: "
                      f"{', '.join(supported_parallelcluster_versions())}")


def offline_env(region: str) -> dict[str, str]:
    # No credentials and no metadata endpoint: a stray AWS call fails at once instead of going online.
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "AWS_DEFAULT_REGION": region,
            "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "PYTHONDONTWRITEBYTECODE": "1"}


def last_account_file(region: str) -> Path:
    """The simulated account last asked for in ``region``: built ahead by the next warm worker."""
    return CACHE_DIR / f"last-account-{region}.json"


def remember_account(region: str, account: dict[str, Any]) -> None:
    write_atomically(last_account_file(region), json.dumps(account, default=str))


def write_atomically(path: Path, text: str) -> None:
    """Readers see the old file or the new one; two synths at once each write their own temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(text)
    temporary.replace(path)


def _lock_of(python: Path) -> str:
    lock = lock_file(python.parent.parent.name.removeprefix(".venv-pcluster-"))
    return lock.read_text() if lock.exists() else ""


def cache_key(request: dict[str, Any], python: Path = PCLUSTER_PYTHON) -> str:
    parts = [json.dumps(request, sort_keys=True, default=str), str(python),
             *(source.read_text() for source in WORKER_SOURCES),
             _lock_of(python)]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def cached(key: str) -> dict[str, Any] | None:
    path = CACHE_DIR / f"{key}.json"
    return json.loads(path.read_text()) if path.exists() else None


def store(key: str, answer: dict[str, Any]) -> None:
    write_atomically(CACHE_DIR / f"{key}.json", json.dumps(answer))


class PclusterProcess:
    """One worker process: ``ask`` sends a request and waits for its answer; ``close`` ends it.

    ``warm`` starts building the simulated account (moto backends, ParallelCluster's imports, and the
    account last asked for in this region) before the first request, for callers that will ask for a
    dry run after some work of their own.
    """

    def __init__(self, region: str, *, warm: bool = False, python: Path = PCLUSTER_PYTHON) -> None:
        if not python.exists():
            where = python.relative_to(REPO_ROOT) if python.is_relative_to(REPO_ROOT) else python
            raise WorkerError(f"the isolated ParallelCluster venv {where} is missing: {INSTALL_HINT}")
        args = [str(python), str(WORKER), *(["--warm", region, str(last_account_file(region))] if warm else [])]
        self.stderr = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe: chatty logs cannot block the worker
        self.process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
                                        text=True, env=offline_env(region), cwd=str(REPO_ROOT))

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        self.send(request)
        return self.receive()

    def send(self, request: dict[str, Any]) -> None:
        """Queues a request; the worker answers requests in order (``receive``)."""
        assert self.process.stdin
        try:
            self.process.stdin.write(json.dumps(request, default=str) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            pass  # receive() reports what the worker printed

    def receive(self) -> dict[str, Any]:
        assert self.process.stdout
        line = self.process.stdout.readline()
        if not line:
            self.close()
            self.stderr.seek(0)
            stderr = self.stderr.read()
            raise WorkerError(f"the ParallelCluster worker stopped: {stderr.strip()[-800:]}; {INSTALL_HINT}")
        answer = json.loads(line)
        if "crash" in answer:
            raise MachineryFailure(answer["crash"], answer.get("checking"), answer.get("traceback", ""))
        return answer

    def close(self) -> None:
        """Ends the worker at once: every answer is in, and tearing down moto and pcluster would only cost time."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.process.stdin:
            self.process.stdin.close()
        if self.process.stdout:
            self.process.stdout.close()

    def __enter__(self) -> "PclusterProcess":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def ask_once(request: dict[str, Any], region: str, *, use_cache: bool = True,
             python: Path = PCLUSTER_PYTHON) -> dict[str, Any]:
    """One request in a process of its own (cached by content unless ``use_cache`` is False)."""
    key = cache_key(request, python)
    answer = cached(key) if use_cache else None
    if answer is None:
        with PclusterProcess(region, warm="dryrun" in request, python=python) as worker:
            answer = worker.ask(request)
        if use_cache:
            store(key, answer)
    return answer
