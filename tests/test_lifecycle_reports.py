"""Destroy plan and deploy critical path, computed from the synthesized templates."""

from __future__ import annotations

import copy

import boto3

from lifecycle.critical_path import critical_path
from lifecycle.destroy_plan import deployed_physical_ids, plan, to_text
from tests.conftest import Synthesized, synth


def templates_of(app: Synthesized) -> dict:
    return {name: app.template(name).to_json() for name in app.stacks}


def test_destroy_deletes_the_cluster_and_keeps_the_data(default_app: Synthesized):
    items = plan(templates_of(default_app))
    kept = sorted((i.type for i in items if i.kept))
    assert kept == ["AWS::FSx::FileSystem", "AWS::FSx::FileSystem", "AWS::S3::Bucket", "AWS::S3::Bucket"]
    deleted = {i.type for i in items if not i.kept}
    assert {"Custom::PclusterCluster", "AWS::FSx::DataRepositoryAssociation", "AWS::EC2::VPC",
            "AWS::EC2::KeyPair"} <= deleted
    text = to_text(items)
    assert text.index("ClusterStack: the ParallelCluster cluster") < text.index("PrereqStack: AWS::EC2::VPC")
    assert "aws fsx delete-file-system --file-system-id <physical id of LustreFileSystem" in text


def test_throwaway_environment_keeps_nothing():
    items = plan(templates_of(synth(destroy_data_on_delete=True)))
    assert [i for i in items if i.kept] == []
    assert "nothing (destroy_data_on_delete=true)" in to_text(items)


def test_removal_commands_use_the_deployed_physical_ids(aws):
    client = boto3.client("cloudformation", region_name="us-east-1")
    client.create_stack(StackName="PrereqStack", TemplateBody='{"Resources": {"DataBucketBD860FE1": '
                        '{"Type": "AWS::S3::Bucket", "Properties": {"BucketName": "my-data"}}}}')
    ids = deployed_physical_ids()
    assert ids == {"PrereqStack": {"DataBucketBD860FE1": "my-data"}}
    [bucket] = [i for i in plan({"PrereqStack": {"Resources": {"DataBucketBD860FE1": {
        "Type": "AWS::S3::Bucket", "DeletionPolicy": "Retain"}}}}, ids) if i.kept]
    assert bucket.removal_command().startswith("aws s3 rb s3://my-data --force")


def test_no_more_than_two_slow_resources_in_series(default_app: Synthesized):
    path = critical_path(templates_of(default_app))
    assert [type_ for _, type_, _ in path.chain] == ["AWS::FSx::FileSystem", "Custom::PclusterCluster"]
    assert path.minutes == 32


def test_report_would_catch_dras_back_in_the_file_systems_stack(default_app: Synthesized):
    templates = copy.deepcopy(templates_of(default_app))
    lustre = next(k for k in templates["PrereqStack"]["Resources"] if k.startswith("LustreFileSystem"))
    templates["PrereqStack"]["Resources"]["Dra"] = {"Type": "AWS::FSx::DataRepositoryAssociation",
                                                    "Properties": {"FileSystemId": {"Ref": lustre}}}
    path = critical_path(templates)
    assert path.slow_in_series == 3 and path.minutes == 42
