"""The user's real entry points: app.py and the pinned CDK CLI, offline, without credentials."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from settings.context import REPO_ROOT

pytestmark = pytest.mark.long  # the CDK CLI and app.py, whole

CDK = REPO_ROOT / "node_modules" / ".bin" / "cdk"


def offline_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    # No credentials at all, and a HOME without ~/.aws: synth must not need an account.
    # jsii's package cache (unpacked aws-cdk-lib, not an AWS file) stays the user's: under a fresh HOME each run
    # unpacked the library again, two thirds of this file's CPU.
    jsii_cache = os.environ.get("JSII_RUNTIME_PACKAGE_CACHE_ROOT") or str(Path.home() / ".cache/aws/jsii/package-cache")
    env.update(HOME=str(tmp_path), AWS_EC2_METADATA_DISABLED="true", JSII_RUNTIME_PACKAGE_CACHE_ROOT=jsii_cache,
               JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20", CDK_DISABLE_VERSION_CHECK="1")
    return env


def run(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=REPO_ROOT, env={**offline_env(tmp_path), **env}, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.skipif(not CDK.exists(), reason="run `make test`: it installs the pinned CDK CLI")
def test_pinned_cli_synthesizes_both_stacks_offline(tmp_path: Path):
    result = run([str(CDK), "synth", "ClusterStack", "--output", str(tmp_path / "cdk.out")], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Type: Custom::PclusterCluster" in result.stdout  # the selected stack's template is printed
    prereq = (tmp_path / "cdk.out" / "PrereqStack.template.json").read_text()
    assert '"DeploymentType": "PERSISTENT_2"' in prereq
    assert '"Type": "AWS::FSx::DataRepositoryAssociation"' in prereq


@pytest.mark.slow
@pytest.mark.skipif(not CDK.exists(), reason="run `make test`: it installs the pinned CDK CLI")
def test_pinned_cli_reports_every_bad_input_without_a_stack_trace(tmp_path: Path):
    result = run([str(CDK), "synth", "PrereqStack", "-c", "availability_zone=tokyo",
                  "-c", "lustre_per_unit_storage_throughput=200", "-c", "cluster_config=nope",
                  "--output", str(tmp_path / "cdk.out")], tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "-c (command line or cdk.context.json): context 'availability_zone' = 'tokyo'" in result.stderr
    assert "context 'lustre_per_unit_storage_throughput' = '200'" in result.stderr
    assert "use one of: 125, 250, 500, 1000" in result.stderr


def test_every_command_module_is_an_installed_console_script_and_every_script_a_module():
    """docs/layout.md: a user command is commands/<name>.py with main() and a line in pyproject.toml."""
    import importlib
    import tomllib

    from tests.conftest import installed_command

    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    modules = {p.stem for p in (REPO_ROOT / "commands").glob("*.py")} - {"__init__"}
    assert {target.split(":")[0].removeprefix("commands.") for target in scripts.values()} == modules
    for name, target in scripts.items():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function)) and installed_command(name)
