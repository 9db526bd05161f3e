"""Destroy plan and deploy critical path, computed from the synthesized templates."""

from __future__ import annotations

import copy

import boto3

import pytest

from lifecycle.critical_path import critical_path
from lifecycle.destroy_plan import deployed_physical_ids, rules, simulate, to_text
from lifecycle.templates import references
from settings.context import REPO_ROOT
from tests.conftest import BRIDGE, Synthesized, synth
from tests.test_compliance import VARIANTS

ACCOUNTING = {"slurm_accounting": True, "secondary_availability_zone": "us-east-1b"}


def templates_of(app: Synthesized) -> dict:
    return {name: app.template(name).to_json() for name in app.stacks}


# Every context variant that changes which resources exist (the compliance variants), and the combinations of
# accounting, job bridge and destroy_data_on_delete they leave out.
DESTROY_VARIANTS = {**VARIANTS,
                    "accounting-throwaway": {**ACCOUNTING, "destroy_data_on_delete": True},
                    "accounting-job-bridge": {**ACCOUNTING, **BRIDGE},
                    "job-bridge-throwaway": {**BRIDGE, "destroy_data_on_delete": True}}


@pytest.mark.parametrize("variant", list(DESTROY_VARIANTS))
def test_destroy_completes_and_keeps_what_holds_data_unless_opted_in(variant: str):
    overrides = DESTROY_VARIANTS[variant]
    outcome = simulate(templates_of(synth(**overrides)))
    assert outcome.completes, to_text(outcome)
    if overrides.get("destroy_data_on_delete"):
        assert outcome.remaining == []
    else:
        assert outcome.data_deleted() == [], to_text(outcome)
        kept = {i.type for i in outcome.remaining}
        assert {"AWS::FSx::FileSystem", "AWS::S3::Bucket", "AWS::S3::BucketPolicy", "AWS::EC2::VPC"} <= kept
    text = to_text(outcome)
    assert "completes." in text.splitlines()[0]
    assert ("ParallelCluster's bucket parallelcluster-<hash>-v1-do-not-delete" in text and
            "the ParallelCluster provider's function log group" in text)
    # multi-queue sets Monitoring.Logs.CloudWatch.DeletionPolicy: Delete; ParallelCluster's default is Retain.
    assert ("the cluster's CloudWatch log group" in text) == (overrides.get("cluster_config") != "multi-queue")
    assert ("Aurora's exported log groups" in text) == bool(overrides.get("slurm_accounting"))


def test_a_kept_file_system_keeps_its_network_and_the_rest_goes(default_app: Synthesized):
    outcome = simulate(templates_of(default_app))
    kept = {i.logical_id for i in outcome.remaining}
    prereq = default_app.template("PrereqStack").to_json()["Resources"]
    lustre = next(k for k, r in prereq.items() if r["Type"] == "AWS::FSx::FileSystem" and "Lustre" in k)
    held = references(prereq[lustre]["Properties"]["SubnetIds"]) | references(
        prereq[lustre]["Properties"]["SecurityGroupIds"])
    assert held <= kept
    cluster_group = next(k for k in prereq if k.startswith("SecurityGroupsCluster") and
                         prereq[k]["Type"] == "AWS::EC2::SecurityGroup")
    assert cluster_group not in kept
    deleted = {i.type for i in outcome.items if not i.kept}
    assert {"Custom::PclusterCluster", "AWS::FSx::DataRepositoryAssociation", "AWS::EC2::NatGateway",
            "AWS::EC2::KeyPair"} <= deleted
    text = to_text(outcome)
    # Removal in an order that works: the file systems before the groups and subnets they use, the VPC last.
    keeps = text.split("and KEEPS", 1)[1]
    assert keeps.index(": AWS::FSx::FileSystem") < keeps.index(": AWS::EC2::SecurityGroup") < keeps.index(
        ": AWS::EC2::Subnet") < keeps.index(": AWS::EC2::VPC")
    assert "aws fsx delete-file-system --file-system-id <physical id of LustreFileSystem" in text


def test_the_simulation_catches_what_made_the_old_destroy_fail(default_app: Synthesized):
    """Today's fixes undone one at a time: each makes the simulated destroy fail or lose data."""
    templates = copy.deepcopy(templates_of(default_app))
    prereq = templates["PrereqStack"]["Resources"]
    for resource in prereq.values():  # the network no longer kept with the file systems
        if resource["Type"] in ("AWS::EC2::VPC", "AWS::EC2::Subnet", "AWS::EC2::SecurityGroup"):
            resource.pop("DeletionPolicy", None)
    outcome = simulate(templates)
    failed = {i.type for i in outcome.items if i.outcome == "DELETE_FAILED"}
    assert not outcome.completes and {"AWS::EC2::Subnet", "AWS::EC2::SecurityGroup", "AWS::EC2::VPC"} <= failed
    assert "still held by LustreFileSystem" in to_text(outcome)

    accounting = copy.deepcopy(templates_of(synth(**ACCOUNTING)))
    [database] = [r for r in accounting["PrereqStack"]["Resources"].values() if r["Type"] == "AWS::RDS::DBCluster"]
    database["Properties"]["DeletionProtection"] = True
    outcome = simulate(accounting)
    assert not outcome.completes and "RDS refuses DeleteDBCluster" in to_text(outcome)

    policies = copy.deepcopy(templates_of(default_app))
    for resource in policies["PrereqStack"]["Resources"].values():
        if resource["Type"] == "AWS::S3::BucketPolicy":
            resource.pop("DeletionPolicy", None)
    kept_policies = [i for i in simulate(policies).remaining if i.type == "AWS::S3::BucketPolicy"]
    assert kept_policies == []


def test_the_readme_destroy_section_is_the_simulated_plan(default_app: Synthesized):
    readme = (REPO_ROOT / "docs" / "deploy.md").read_text()
    block = readme.split("<!-- destroy-plan:start -->\n```text\n", 1)[1].split("```\n<!-- destroy-plan:end -->", 1)[0]
    assert block == to_text(simulate(templates_of(default_app))), (
        "docs/deploy.md's destroy plan is stale: paste the output of hpc-destroy-plan")


def test_every_rule_names_its_source():
    for section in ("holds", "refuses", "outside_templates"):
        for row in rules()[section]:
            assert row["source"] and row["because"], row
    assert rules()["deletion_policies"]["source"].startswith("https://docs.aws.amazon.com/")


def test_removal_commands_use_the_deployed_physical_ids(aws):
    client = boto3.client("cloudformation", region_name="us-east-1")
    client.create_stack(StackName="PrereqStack", TemplateBody='{"Resources": {"DataBucketBD860FE1": '
                        '{"Type": "AWS::S3::Bucket", "Properties": {"BucketName": "my-data"}}}}')
    ids = deployed_physical_ids()
    assert ids == {"PrereqStack": {"DataBucketBD860FE1": "my-data"}}
    [bucket] = [i for i in simulate({"PrereqStack": {"Resources": {"DataBucketBD860FE1": {
        "Type": "AWS::S3::Bucket", "DeletionPolicy": "Retain"}}}}, ids).items if i.kept]
    assert bucket.removal_command().startswith("aws s3 rb s3://my-data --force")


def test_the_associations_are_on_the_critical_path(default_app: Synthesized):
    """The price of DRAs that outlive every cluster: the first create waits for them (docs/deploy.md)."""
    path = critical_path(templates_of(default_app))
    assert [type_ for _, type_, _ in path.chain] == ["AWS::FSx::FileSystem", "AWS::FSx::DataRepositoryAssociation",
                                                     "Custom::PclusterCluster"]
    assert path.minutes == 42


def test_report_would_see_dras_beside_a_cluster_run_in_parallel_with_it(default_app: Synthesized):
    templates = copy.deepcopy(templates_of(default_app))
    for logical_id in [k for k, r in templates["PrereqStack"]["Resources"].items()
                       if r["Type"] == "AWS::FSx::DataRepositoryAssociation"]:
        del templates["PrereqStack"]["Resources"][logical_id]
    templates["ClusterStack"]["Resources"]["Dra"] = {"Type": "AWS::FSx::DataRepositoryAssociation", "Properties": {}}
    path = critical_path(templates)
    assert path.slow_in_series == 2 and path.minutes == 32
