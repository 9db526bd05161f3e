"""PrereqStack and ClusterStack stay consistent through a PrereqStack change (issue 15, part 2).

The cluster reads PrereqStack's values through weak references (Fn::GetStackOutput), and imports the exports of
what it stands on (Fn::ImportValue), so that CloudFormation itself refuses to delete or replace them under it.
The case of the issue: openzfs_deployment_type=SINGLE_AZ_HA_2 replaces the /home file system.
"""

from __future__ import annotations

import json

import pytest

from lifecycle.destroy_plan import refused_stack_deletions
from lifecycle.replacement_guard import replacements, report, unacknowledged
from lifecycle.templates import exports, imports
from lifecycle.update_preview import preview, to_terminal
from tests.conftest import BRIDGE, Synthesized, synth

HA_HOME = {"openzfs_deployment_type": "SINGLE_AZ_HA_2", "openzfs_throughput_mbps": 160}
STACKS = ("PrereqStack", "ClusterStack")


def templates(app: Synthesized) -> dict[str, dict]:
    return {stack: app.template(stack).to_json() for stack in STACKS}


@pytest.fixture(scope="module")
def before() -> dict[str, dict]:
    return templates(synth())


@pytest.fixture(scope="module")
def after() -> dict[str, dict]:
    return templates(synth(**HA_HOME))


def test_a_prereq_change_changes_the_cluster_template_in_the_same_synth(before, after):
    """Before: ClusterStack's template stayed byte-identical, so `cdk deploy` skipped it and the cluster kept the old
    volume until some unrelated deploy."""
    assert before["ClusterStack"] != after["ClusterStack"]
    revision = before["ClusterStack"]["Outputs"]["PrereqRevision"]["Value"]
    assert revision != after["ClusterStack"]["Outputs"]["PrereqRevision"]["Value"]
    assert synth().template("ClusterStack").to_json()["Outputs"]["PrereqRevision"]["Value"] == revision  # stable


@pytest.mark.parametrize("context", [{}, BRIDGE, {"slurm_accounting": True, "secondary_availability_zone": "us-east-1b"}, HA_HOME,
                                     {"cluster_config": "gpu-p5", "CAPACITY_RESERVATION_ID": "cr-0123456789abcdef0"}])
def test_the_cluster_imports_what_it_stands_on_from_exports_every_prereqstack_declares(context):
    """Imports of exports PrereqStack declares whatever its settings are: no setting can remove an export the cluster
    imports (CloudFormation would refuse that PrereqStack update: the deadly embrace)."""
    variant = templates(synth(**context))
    imported = imports(variant["ClusterStack"])
    assert {"PrereqStack-VPC", "PrereqStack-PublicSubnet", "PrereqStack-PrimaryPrivateSubnet",
            "PrereqStack-FSxLustreFilesystemId", "PrereqStack-FSxORootVolumeId"} <= imported
    for settings in ({}, {"slurm_accounting": True, "secondary_availability_zone": "us-east-1b"}, HA_HOME, {"destroy_data_on_delete": True}):
        assert imported <= set(exports(templates(synth(**settings))["PrereqStack"])), settings
    assert "Fn::ImportValue" not in json.dumps(variant["ClusterStack"]["Resources"])  # values stay weak references


def test_the_guard_refuses_replacing_a_file_system_a_deployed_cluster_uses_whatever_is_acknowledged(before, after):
    found = replacements(before, after)
    [home] = [r for r in found if r.type == "AWS::FSx::FileSystem"]
    assert "OpenZFSConfiguration/DeploymentType" in home.reason
    assert "PrereqStack-FSxORootVolumeId, imported by ClusterStack" in home.refused
    assert unacknowledged(found, [home.key]) == [home]  # acknowledging does not make CloudFormation accept it
    text = report(found, [home.key])
    assert text.startswith(f"REFUSED      {home.key}") and "`cdk destroy ClusterStack`" in text
    # Without a deployed cluster (no ClusterStack importing), an acknowledged replacement goes through.
    alone = replacements({"PrereqStack": before["PrereqStack"]}, {"PrereqStack": after["PrereqStack"]})
    assert unacknowledged(alone, [home.key]) == []


def test_the_update_preview_shows_the_cluster_change_with_parallelclusters_policy(before, after):
    """Before: "No cluster configuration change". Now the /home volume the cluster mounts changes, judged by
    ParallelCluster's own update policy, and the preview says CloudFormation refuses the PrereqStack change."""
    result = preview(before["ClusterStack"], after["ClusterStack"],
                     prereq=(before["PrereqStack"], after["PrereqStack"]))
    [volume] = [c for c in result.changes if c.path.startswith("SharedStorage") and c.path.endswith("VolumeId")]
    assert "{PrereqStack." in str(volume.old) and "of the new HomeFileSystem" in str(volume.new)
    assert volume.policy  # ParallelCluster's, from its schema
    assert result.refused and result.has_errors
    text = to_terminal(result)
    assert "PrereqStack replaces HomeFileSystem" in text and "refused by CloudFormation while ClusterStack exists" in text
    # Without the PrereqStack templates (as before), nothing is visible: the reason to pass them.
    assert not preview(before["ClusterStack"], before["ClusterStack"]).changes


def test_prereqstack_cannot_be_deleted_while_the_cluster_stack_stays(before):
    refused = refused_stack_deletions(before, ("PrereqStack",))
    assert refused and all(line.startswith("PrereqStack: CloudFormation refuses") for line in refused)
    assert any("PrereqStack-FSxORootVolumeId" in line for line in refused)
    assert refused_stack_deletions(before, ("ClusterStack", "PrereqStack")) == []  # `cdk destroy` takes both, cluster first
