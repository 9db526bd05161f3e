"""Shared synthesis: the app is built once per session per context, so the suite stays fast."""

from __future__ import annotations

import os

# Before any CDK import: offline, quiet jsii.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
from stacks.jsii_kernel import jsii_node_options  # noqa: E402 - the V8 pool size app.py gives CDK's kernel

os.environ["NODE_OPTIONS"] = jsii_node_options(os.environ.get("NODE_OPTIONS", ""), os.cpu_count() or 1)

from functools import lru_cache  # noqa: E402
from typing import TYPE_CHECKING, Any  # noqa: E402

import pytest  # noqa: E402

from settings.context import shipped_context  # noqa: E402

if TYPE_CHECKING:  # CDK is imported where an app is built: xdist's controller process loads this file too, and
    # importing aws_cdk starts a jsii kernel there that nothing uses (a CPU-second at every start).
    from aws_cdk import Stack
    from aws_cdk.assertions import Template


def _share_botocore_models() -> None:
    """Every botocore session in a test process reads botocore's JSON models through one loader (per data path), as
    the clients of one session always do. The product makes one session per command, and the tests run hundreds of
    commands: each parsed the EC2 model again (0.3 s), about a third of the CPU of the deploy tests."""
    import botocore.loaders
    import botocore.session

    loaders: dict[Any, Any] = {}

    def register_data_loader(session: botocore.session.Session) -> None:
        def shared_loader() -> Any:
            path = session.get_config_variable("data_path")
            if path not in loaders:
                loaders[path] = botocore.loaders.create_loader(path)
            return loaders[path]
        session._components.lazy_register_component("data_loader", shared_loader)

    assert hasattr(botocore.session.Session, "_register_data_loader"), "botocore changed: update this speed-up"
    botocore.session.Session._register_data_loader = register_data_loader


_share_botocore_models()


# The user commands, the boto3 and template code behind them, and the developer tools: where a knob or a stack
# output must be read through settings/ and stack_values, never spelled out.
COMMAND_ROOMS = ("commands", "ops", "lifecycle", "job_bridge", "tools")

# The job bridge needs the roles allowed to submit (job_bridge_submitters).
BRIDGE = {"job_bridge": True, "job_bridge_submitters": ["arn:aws:iam::123456789012:role/onprem-submitter"]}


class Synthesized:
    """An app built from cdk.json context plus overrides, checked by cdk-nag (AwsSolutions and NIST 800-53
    rev 5) and CDK's template validation (its reports kept by content: tests/kept_template_validation.py),
    synthesized once, and its cluster config validated by ParallelCluster in the simulated account (as `cdk synth`
    does)."""

    def __init__(self, overrides: dict[str, Any]) -> None:
        from aws_cdk import Aspects
        from aws_cdk.assertions import Template
        from cdk_nag import AwsSolutionsChecks, NIST80053R5Checks

        from stacks.app_builder import synthesize
        from tests.kept_template_validation import validated_app

        context = {**shipped_context(), **overrides}
        self.app = validated_app(context)
        Aspects.of(self.app).add(AwsSolutionsChecks(verbose=True))
        Aspects.of(self.app).add(NIST80053R5Checks(verbose=True))
        synthesis = self.synthesis = synthesize(self.app)
        self.stacks: dict[str, Stack] = synthesis.stacks
        self.assembly = synthesis.assembly
        self.deployment = synthesis.deployment
        self.templates = {name: Template.from_stack(stack) for name, stack in self.stacks.items()}

    def template(self, name: str) -> Template:
        return self.templates[name]


def installed_command(name: str) -> str:
    """The console script `make install` puts beside this venv's python (pyproject.toml's [project.scripts])."""
    import sys
    from pathlib import Path

    path = Path(sys.executable).parent / name
    assert path.exists(), f"{path} is missing: run `make install` (it installs this project's commands)"
    return str(path)


@lru_cache(maxsize=None)
def _synth(frozen: tuple[tuple[str, str], ...]) -> Synthesized:
    """Under `make test` each worker builds the variants its files use, and several often start on the same one at
    once (the defaults, first of all). One at a time per variant: the others wait, and find ParallelCluster's answers
    in the validation cache instead of computing them again."""
    import fcntl
    import hashlib
    import json

    from cluster_yaml.sidecar import CACHE_DIR

    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    lock = CACHE_DIR / f"synth-{hashlib.sha256(repr(frozen).encode()).hexdigest()[:16]}.lock"
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        return Synthesized({k: json.loads(v) for k, v in frozen})


def synth(**overrides: Any) -> Synthesized:
    """Cached synthesis for a given set of context overrides (values as JSON-able objects)."""
    import json
    return _synth(tuple(sorted((k, json.dumps(v)) for k, v in overrides.items())))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The files that start real servers take longest and run serially inside (one cluster per file): they go
    first, then the files marked long (few tests, but long ones), then the rest, the largest first in each, so that
    under `make test` (pytest-xdist, one file per worker) they overlap the rest instead of trailing it."""
    from collections import Counter

    per_file = Counter(item.path for item in items)
    items.sort(key=lambda item: (item.get_closest_marker("servers") is None, item.get_closest_marker("long") is None,
                                 -per_file[item.path]))


# The files that synthesize every compliance variant (test_compliance.VARIANTS). Each worker builds the variants its
# own files use, so with one file per worker these three built the same nine three times.
COMPLIANCE_VARIANT_FILES = ("tests/test_compliance.py", "tests/test_provider_contract.py",
                            "tests/test_lifecycle_reports.py")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadfile`, except that the files of COMPLIANCE_VARIANT_FILES are one unit: one worker runs them all and
    synthesizes each variant once."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class SharedVariants(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            file = super()._split_scope(nodeid)
            return COMPLIANCE_VARIANT_FILES[0] if file in COMPLIANCE_VARIANT_FILES else file

    return SharedVariants(config, log)


@pytest.fixture(scope="session")
def default_app() -> Synthesized:
    return synth()


@pytest.fixture(scope="session")
def prereq(default_app: Synthesized) -> Template:
    return default_app.template("PrereqStack")


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch):
    """moto-backed AWS in us-east-1 with fake credentials; nothing leaves the process."""
    from moto import mock_aws

    for key, value in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        yield


@pytest.fixture
def no_aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """No credentials anywhere boto3 looks (environment, files, instance metadata)."""
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
