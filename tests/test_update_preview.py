"""Update preview: ParallelCluster's own ConfigPatch on two synthesized ClusterStack templates."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from cluster_yaml import NODE_ACTIONS_DIR
from cluster_yaml.node_actions import script_digest
from lifecycle.update_preview import REPLACE_PATH, preview, to_markdown, to_terminal
from tests.conftest import BRIDGE, Synthesized, installed_command, synth


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


def test_a_preview_asked_again_is_answered_by_content_without_a_worker(base: dict, monkeypatch):
    """ParallelCluster's ConfigPatch answers are cached by content, as the validation's are (the key holds the
    request, the worker's sources and the version's lock): hpc-deploy after hpc-update-preview starts no worker for
    the same change, and any other change still asks ParallelCluster."""
    from cluster_yaml import sidecar

    first = preview(base, target(NUM_INSTANCES=4))

    def no_worker(*args, **kwargs):
        raise AssertionError("a ParallelCluster worker was started")

    monkeypatch.setattr(sidecar, "PclusterProcess", no_worker)
    assert preview(base, target(NUM_INSTANCES=4)).changes == first.changes
    with pytest.raises(AssertionError, match="worker was started"):
        preview(base, target(NUM_INSTANCES=4), running=False)


def test_renaming_the_cluster_replaces_it(base: dict):
    result = preview(base, target(cluster_name="hpc-cluster-2"))
    assert result.replaced and result.has_errors
    assert "CloudFormation replaces the cluster" in to_markdown(result)


def test_first_deploy_and_removal_are_reported(base: dict):
    assert preview(None, base).notes == ["cluster hpc-cluster will be created"]
    assert "is no longer in the app: `cdk deploy` leaves it running; delete it with `hpc-upgrade remove hpc-cluster`" \
           in preview(base, None).notes[0]


@pytest.mark.slow
def test_command_compares_template_files_and_fails_on_unsupported(base: dict, tmp_path: Path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "ClusterStack.template.json").write_text(json.dumps(base))
    (tmp_path / "head.json").write_text(json.dumps(target(HEAD_NODE_INSTANCE_TYPE="c5.18xlarge")))
    result = subprocess.run([installed_command("hpc-update-preview"), "--base",
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


def synth_with_edited_script(tmp_path: Path, monkeypatch, script: str = "enable_pyxis.sh", **context) -> dict:
    """The ClusterStack template after an edit of one node-action script (in a copy of scripts/node_actions)."""
    import shutil

    import cluster_yaml
    import stacks.cluster_stack
    from tests.conftest import Synthesized

    directory = tmp_path / "node_actions"
    shutil.copytree(cluster_yaml.NODE_ACTIONS_DIR, directory)
    (directory / script).write_text((directory / script).read_text() + "# edited: one more line\n")
    monkeypatch.setattr(cluster_yaml, "NODE_ACTIONS_DIR", directory)
    monkeypatch.setattr(stacks.cluster_stack, "NODE_ACTIONS_DIR", directory)
    return Synthesized(context).template("ClusterStack").to_json()


def test_editing_a_head_node_script_is_an_in_place_update(base: dict, tmp_path: Path, monkeypatch):
    result = preview(base, synth_with_edited_script(tmp_path, monkeypatch))
    changes = by_key(result)
    assert not result.has_errors, to_terminal(result)
    updated = [c for path, c in changes.items() if path.startswith("HeadNode.CustomActions.OnNodeUpdated")]
    assert updated and all(c.policy == "SUPPORTED" and c.category == "applied live" for c in updated)
    assert not [p for p in changes if p.startswith("HeadNode.CustomActions.OnNodeConfigured")]  # stable URL
    queue = [c for path, c in changes.items() if path.startswith("Scheduling.SlurmQueues[compute].CustomActions")]
    assert queue and all(c.policy == "QUEUE_UPDATE_STRATEGY" for c in queue)  # DRAIN replaces the nodes


@pytest.mark.slow
def test_command_shows_a_script_edit_and_exits_0(base: dict, tmp_path: Path, monkeypatch):
    (tmp_path / "base.json").write_text(json.dumps(base))
    (tmp_path / "edited.json").write_text(json.dumps(synth_with_edited_script(tmp_path, monkeypatch)))
    result = subprocess.run([installed_command("hpc-update-preview"), "--base",
                             str(tmp_path / "base.json"), "--target", str(tmp_path / "edited.json")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "HeadNode.CustomActions.OnNodeUpdated" in result.stdout and "SUPPORTED: applied live" in result.stdout
    digest = script_digest(NODE_ACTIONS_DIR / "enable_pyxis.sh")
    assert digest[:8] in result.stdout  # the old content hash, where the URLs differ


def test_turning_the_job_bridge_on_and_off_is_an_in_place_update(base: dict):
    bridged = target(**BRIDGE)
    for before, after in ((base, bridged), (bridged, base)):
        result = preview(before, after)
        assert result.changes and not result.has_errors, to_terminal(result)
    # Off again: the head node's uninstall step arrives through OnNodeUpdated, applied live.
    off = [c for c in preview(bridged, base).changes if c.path.startswith("HeadNode.CustomActions.OnNodeUpdated")]
    assert off and all(c.policy == "SUPPORTED" and c.category == "applied live" for c in off), off


def test_a_parallelcluster_version_change_needs_a_new_cluster_and_says_how():
    """ParallelCluster updates a cluster only with the version that created it: an upgrade is never an update."""
    from lifecycle.update_preview import provider_version

    old, new = synth(parallelcluster_version="3.15.1"), synth()
    assert provider_version(old.template("ClusterStack").to_json()) == "3.15.1"
    result = preview(old.template("ClusterStack").to_json(), new.template("ClusterStack").to_json())
    assert result.versions == ("3.15.1", "3.16.1") and result.has_errors and result.changes == []
    text = to_terminal(result)
    assert "ParallelCluster 3.15.1 -> 3.16.1: needs a new cluster" in text
    assert "next: keep parallelcluster_version=3.15.1 for this cluster, or move to 3.16.1 with a new cluster" in text
    assert "blue/green): `hpc-upgrade plan --to-version 3.16.1` prints the cdk.json edit and each step" in text
    assert "ParallelCluster 3.15.1 -> 3.16.1" in to_markdown(result)


def test_a_version_whose_update_policies_cannot_be_read_is_one_line_not_a_trace(default_app: Synthesized, tmp_path):
    """A deployed cluster of a version this app has no lock for (made by an older checkout, say): the preview says so
    and how to go on, instead of a worker's traceback."""
    template = json.dumps(default_app.template("ClusterStack").to_json()).replace("/parallelcluster/3.16.1/",
                                                                                  "/parallelcluster/3.14.0/")
    for side, edit in (("base", template), ("target", template.replace("c5.9xlarge", "c5.4xlarge"))):
        (tmp_path / side).mkdir()
        (tmp_path / side / "ClusterStack.template.json").write_text(edit)
    result = subprocess.run([installed_command("hpc-update-preview"), "--base", str(tmp_path / "base"), "--target",
                             str(tmp_path / "target")], capture_output=True, text=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ParallelCluster 3.14.0 has no lock in this app "
                                    "(requirements-pcluster-3.14.0.txt)") and "supported: 3.15.1, 3.16.1" in result.stderr


# Run in a ParallelCluster venv: its own update controller, for a cluster whose stack says it was created by
# sys.argv[1] (the rest of the cluster is a stand-in: only the version check is asked).
SAME_VERSION_CHECK = """
import json, sys
from types import SimpleNamespace
import pcluster.api.controllers.cluster_operations_controller as controller
from pcluster.api.errors import BadRequestException
controller.Cluster = lambda name: SimpleNamespace(name=name, stack=SimpleNamespace(version=sys.argv[1]))
try:
    controller.update_cluster({"clusterConfiguration": "HeadNode: {}"}, "hpc-cluster", region="us-east-1", dryrun=True)
except BadRequestException as error:
    print(json.dumps(str(error.content.message)))
except Exception:
    print(json.dumps(None))  # past the version check (the stand-in cluster has nothing more to give)
"""


@pytest.mark.parametrize("created,running", [("3.15.1", "3.16.1"), ("3.16.1", "3.15.1"), ("3.16.1", "3.16.1"),
                                             ("3.15.1", "3.15.1")])
def test_parallelcluster_itself_refuses_an_update_from_another_version(created, running):
    """What "needs a new cluster" rests on, judged by ParallelCluster's own update controller of each version."""
    import json
    import subprocess

    from cluster_yaml.sidecar import pcluster_python

    done = subprocess.run([str(pcluster_python(running)), "-c", SAME_VERSION_CHECK, created], capture_output=True,
                          text=True, env={"AWS_DEFAULT_REGION": "us-east-1", "PATH": "/usr/bin:/bin"}, timeout=120)
    message = json.loads(done.stdout.strip().splitlines()[-1])
    if created == running:
        assert message is None or "same ParallelCluster version" not in message
    else:
        assert message == (f"Bad Request: the update can be performed only with the same ParallelCluster version "
                           f"({created}) used to create the cluster.")
