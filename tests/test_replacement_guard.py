"""The destructive-change guard catches replacements of resources that hold data, and only those."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

from lifecycle.replacement_guard import replacements, report, unacknowledged
from lifecycle.templates import STACKS, load_template
from tests.conftest import Synthesized, installed_command, synth


def found_for(app: Synthesized) -> list:
    return replacements({s: load_template("snapshot", s) for s in STACKS},
                        {s: app.template(s).to_json() for s in STACKS})


def guard(app: Synthesized, acknowledged: list[str] = ()) -> list:
    return unacknowledged(found_for(app), list(acknowledged))


def blocked_types(blocked: list) -> dict[str, str]:
    return {r.logical_id: r.type for r in blocked}


def test_committed_state_passes(default_app: Synthesized):
    assert guard(default_app) == []


def test_moving_the_subnets_to_another_zone_replaces_both_file_systems():
    blocked = guard(synth(availability_zone="us-east-1b"))
    types = sorted(blocked_types([r for r in blocked if r.stateful]).values())
    assert types == ["AWS::FSx::DataRepositoryAssociation", "AWS::FSx::FileSystem", "AWS::FSx::FileSystem"]
    # The deployed cluster imports the subnets and both file systems: CloudFormation refuses to replace them.
    refused = {r.type for r in blocked if r.refused}
    assert refused == {"AWS::EC2::Subnet", "AWS::FSx::FileSystem"}
    lustre = next(r for r in blocked if r.logical_id.startswith("LustreFileSystem"))
    assert lustre.reason.startswith("create-only SubnetIds refers to PrereqStack/NetworkVpcPrivateSubnet1Subnet")
    # Only the exporting association holds data that exists nowhere else; the import-only one is not blocked.
    dra = next(r for r in blocked if r.type == "AWS::FSx::DataRepositoryAssociation")
    assert dra.key.startswith("PrereqStack/DataRepositoriesAssociation0")  # beside its file system
    assert dra.reason.startswith("create-only FileSystemId refers to PrereqStack/LustreFileSystem")


def test_a_security_group_change_on_a_file_system_is_caught(default_app: Synthesized):
    old = load_template("snapshot", "PrereqStack")
    new = copy.deepcopy(old)
    [sg_id] = [k for k, r in new["Resources"].items() if r["Properties"].get("GroupDescription", "").startswith(
        "FSx for Lustre")]
    new["Resources"][sg_id]["Properties"]["GroupDescription"] = "Lustre servers"  # create-only: SG replaced
    blocked = unacknowledged(replacements({"PrereqStack": old}, {"PrereqStack": new}), [])
    lustre = next(r for r in blocked if r.type == "AWS::FSx::FileSystem")
    assert lustre.reason == f"create-only SecurityGroupIds refers to PrereqStack/{sg_id}, which is replaced"


def test_renaming_an_exporting_association_path_is_caught():
    blocked = guard(synth(lustre_data_repository_associations=[
        {"file_system_path": "/datasets", "data_repository_path": "s3://${DataBucket}/data/", "auto_export": True},
        {"file_system_path": "/containers", "data_repository_path": "s3://${DataBucket}/containers/"}]))
    assert [r.reason for r in blocked] == ["create-only FileSystemPath changes"]


def test_harmless_changes_pass():
    assert guard(synth(lustre_per_unit_storage_throughput=500, NUM_INSTANCES=4)) == []


def test_acknowledged_replacements_pass_and_are_reported():
    """Without a deployed cluster (nothing imports PrereqStack's exports), an acknowledged replacement passes."""
    app = synth(availability_zone="us-east-1b")
    found = replacements({"PrereqStack": load_template("snapshot", "PrereqStack")},
                         {"PrereqStack": app.template("PrereqStack").to_json()})
    keys = [r.key for r in unacknowledged(found, [])]
    assert keys and unacknowledged(found, keys) == []
    text = report(found, keys)
    assert "acknowledged PrereqStack/LustreFileSystem" in text.replace("  ", " ")
    assert "BLOCKED" not in text and "REFUSED" not in text
    # With the cluster deployed, acknowledging the same keys does not make CloudFormation accept them.
    # (The associations are no export the cluster imports: CloudFormation would replace them.)
    exported = {k for k in keys if not k.startswith("PrereqStack/DataRepositories")}
    assert exported and {r.key for r in guard(app, keys) if r.refused} >= exported


def test_command_fails_and_names_the_acknowledgement(tmp_path: Path):
    app = synth(availability_zone="us-east-1b")
    for stack in STACKS:
        (tmp_path / f"{stack}.template.json").write_text(json.dumps(app.template(stack).to_json()))
    result = subprocess.run([installed_command("hpc-replacement-guard"), "--target",
                             str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 1, result.stderr
    assert "REFUSED      PrereqStack/LustreFileSystem" in result.stdout and "`cdk destroy ClusterStack`" in result.stdout
    assert "BLOCKED" in result.stdout and '"acknowledged_replacements": ["PrereqStack/DataRepositories' in result.stdout
