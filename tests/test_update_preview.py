"""Update preview: ParallelCluster's own ConfigPatch on two synthesized ClusterStack templates."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lifecycle.update_preview import REPLACE_PATH, preview, to_markdown, to_terminal
from settings.context import REPO_ROOT
from tests.conftest import Synthesized, synth


@pytest.fixture(scope="module")
def base(default_app: Synthesized) -> dict:
    return default_app.template("ClusterStack").to_json()


def target(**context) -> dict:
    return synth(**context).template("ClusterStack").to_json()


def by_key(result) -> dict:
    return {c.path: c for c in result.changes}


def test_no_change_means_no_rows(base: dict):
    result = preview(base, base)
    assert result.changes == [] and not result.has_errors
    assert "No cluster configuration change." in to_terminal(result)


def test_head_node_instance_type_is_unsupported_with_the_recommended_path(base: dict):
    result = preview(base, target(HEAD_NODE_INSTANCE_TYPE="c5.18xlarge"))
    change = by_key(result)["HeadNode.InstanceType"]
    assert (change.old, change.new, change.policy) == ("c5.9xlarge", "c5.18xlarge", "UNSUPPORTED")
    assert change.is_error and result.has_errors
    markdown = to_markdown(result)
    assert "| `HeadNode.InstanceType` | `c5.9xlarge` | `c5.18xlarge` | UNSUPPORTED | **unsupported" in markdown
    assert REPLACE_PATH in markdown
    assert ":x: This update cannot be applied" in markdown


def test_static_fleet_resize_needs_queue_update_strategy_or_a_stop(base: dict):
    result = preview(base, target(NUM_INSTANCES=4))
    changes = by_key(result)
    resource = "Scheduling.SlurmQueues[compute].ComputeResources[c5n]"
    assert {f"{resource}.MinCount", f"{resource}.MaxCount"} <= set(changes)
    assert changes[f"{resource}.MinCount"].category in ("needs QueueUpdateStrategy", "needs compute fleet stop")
    assert not result.has_errors


def test_renaming_the_cluster_replaces_it(base: dict):
    result = preview(base, target(cluster_name="hpc-cluster-2"))
    assert result.replaced and result.has_errors
    assert "CloudFormation replaces the cluster" in to_markdown(result)


def test_first_deploy_and_removal_are_reported(base: dict):
    assert preview(None, base).notes == ["cluster hpc-cluster will be created"]
    assert "will be deleted" in preview(base, None).notes[0]


@pytest.mark.slow
def test_command_compares_template_files_and_fails_on_unsupported(base: dict, tmp_path: Path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "ClusterStack.template.json").write_text(json.dumps(base))
    (tmp_path / "head.json").write_text(json.dumps(target(HEAD_NODE_INSTANCE_TYPE="c5.18xlarge")))
    result = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "update_preview.py"), "--base",
                             str(tmp_path / "base"), "--target", str(tmp_path / "head.json"), "--markdown"],
                            capture_output=True, text=True)
    assert result.returncode == 1, result.stderr
    assert result.stdout.startswith("### Cluster update preview")
    assert "`HeadNode.InstanceType`" in result.stdout


def test_baseline_from_the_deployed_stack(aws, base: dict, monkeypatch):
    import boto3
    from botocore.stub import Stubber

    from lifecycle.templates import load_template

    assert load_template("deployed", "ClusterStack") is None  # moto: not deployed yet, so it will be created
    # moto would try to run the provider Lambda on create; the read path only needs GetTemplate.
    client = boto3.client("cloudformation")
    stub = Stubber(client)
    stub.add_response("get_template", {"TemplateBody": json.dumps(base)},
                      {"StackName": "ClusterStack", "TemplateStage": "Original"})
    stub.activate()
    monkeypatch.setattr(boto3, "client", lambda service, **kwargs: client)
    result = preview(load_template("deployed", "ClusterStack"), target(NUM_INSTANCES=4))
    assert {c.path.rsplit(".", 1)[1] for c in result.changes} == {"MinCount", "MaxCount"}
