"""Job bridge wiring in ClusterStack, its cluster-config changes, and the client's clear errors."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import boto3
import pytest
from aws_cdk.assertions import Match

from job_bridge.client import JobBridgeError, JobStore
from tests.conftest import Synthesized, synth


@pytest.fixture(scope="module")
def bridged() -> Synthesized:
    return synth(job_bridge=True)


def cluster_config(app: Synthesized) -> dict:
    [resource] = app.template("ClusterStack").find_resources("Custom::PclusterCluster").values()
    return resource["Properties"]["ClusterConfiguration"]


def test_off_by_default(default_app: Synthesized):
    default_app.template("ClusterStack").resource_count_is("AWS::Events::Rule", 0)
    assert "CustomSlurmSettings" not in cluster_config(default_app)["Scheduling"]["SlurmSettings"]


def test_rule_matches_state_file_uploads_in_the_data_bucket(bridged: Synthesized):
    [rule] = bridged.template("ClusterStack").find_resources("AWS::Events::Rule").values()
    pattern = rule["Properties"]["EventPattern"]
    assert pattern["source"] == ["aws.s3"] and pattern["detail-type"] == ["Object Created"]
    assert "DataBucket" in json.dumps(pattern["detail"]["bucket"]["name"])
    assert pattern["detail"]["object"]["key"] == [{"wildcard": "jobs/*/job-aws-stat.txt"}]


def test_target_is_run_command_on_the_head_node(bridged: Synthesized):
    template = bridged.template("ClusterStack")
    [rule] = template.find_resources("AWS::Events::Rule").values()
    [target] = rule["Properties"]["Targets"]
    assert "document/AWS-RunShellScript" in json.dumps(target["Arn"])
    [instance_target] = target["RunCommandParameters"]["RunCommandTargets"]
    assert instance_target["Key"] == "InstanceIds"
    assert instance_target["Values"][0]["Fn::GetAtt"][1] == "headNode.instanceId"
    assert json.loads(target["Input"]) == {"commands": ["/opt/job-bridge/job_bridge.sh submit"],
                                           "executionTimeout": ["600"]}


def test_eventbridge_may_send_that_command_and_nothing_else(bridged: Synthesized):
    template = bridged.template("ClusterStack")
    roles = {k: r for k, r in template.find_resources("AWS::IAM::Role").items()
             if r["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
                 "Service": "events.amazonaws.com"}}
    [role_id] = roles
    [policy] = [p for p in template.find_resources("AWS::IAM::Policy").values()
                if p["Properties"]["Roles"] == [{"Ref": role_id}]]
    [statement] = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Action"] == "ssm:SendCommand"
    resources = json.dumps(statement["Resource"])
    assert "document/AWS-RunShellScript" in resources and "instance/" in resources and '"*"' not in resources


def test_cluster_config_gets_list_and_write_access_and_the_epilog(bridged: Synthesized):
    config = cluster_config(bridged)
    assert config["Scheduling"]["SlurmSettings"]["CustomSlurmSettings"] == [
        {"EpilogSlurmctld": "/opt/job-bridge/epilog"}]
    write = [a for a in config["HeadNode"]["Iam"]["S3Access"] if a.get("KeyName") == "jobs/*"]
    assert write and write[0]["EnableWriteAccess"] == "true"
    policies = [p["Policy"] for p in config["HeadNode"]["Iam"]["AdditionalIamPolicies"]]
    [list_policy] = [p for p in policies if isinstance(p, dict)]
    [(policy_id, policy)] = bridged.template("ClusterStack").find_resources(
        "AWS::IAM::ManagedPolicy", {"Properties": {"Description": Match.string_like_regexp("job prefix")}}).items()
    assert list_policy == {"Ref": policy_id}
    [statement] = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Action"] == "s3:ListBucket" and statement["Condition"] == {"StringLike": {"s3:prefix": ["jobs/*"]}}
    assert policy["Properties"]["ManagedPolicyName"]["Fn::Join"][1][0] == "parallelcluster-hpc-cluster-"


def test_installed_by_an_ssm_association_not_a_node_action(bridged: Synthesized):
    """A head node's OnNodeConfigured cannot change on update: the bridge is installed beside it, so turning it
    on, off, or editing job_bridge.sh is an in-place update (tests/test_update_preview.py)."""
    config = cluster_config(bridged)
    assert "job_bridge" not in json.dumps(config["HeadNode"].get("CustomActions", {}))
    [association] = bridged.template("ClusterStack").find_resources("AWS::SSM::Association").values()
    props = association["Properties"]
    assert props["WaitForSuccessTimeoutSeconds"] == 600
    assert props["Targets"][0]["Values"][0]["Fn::GetAtt"][1] == "headNode.instanceId"
    assert re.fullmatch(r"[0-9a-f]{16}/job_bridge\.sh", props["Parameters"]["ScriptKey"][0])
    assert props["Parameters"]["Prefix"] == ["jobs/"] and props["Parameters"]["User"] == ["ubuntu"]
    [document] = bridged.template("ClusterStack").find_resources("AWS::SSM::Document").values()
    content = document["Properties"]["Content"]
    assert all("allowedPattern" in p for p in content["parameters"].values())
    assert "install '{{Bucket}}' '{{Prefix}}' '{{User}}'" in " ".join(content["mainSteps"][0]["inputs"]["runCommand"])


def test_prefix_and_user_from_context():
    app = synth(job_bridge=True, job_bridge_prefix="onprem/batch/", job_bridge_user="hpcuser")
    [association] = app.template("ClusterStack").find_resources("AWS::SSM::Association").values()
    assert association["Properties"]["Parameters"]["Prefix"] == ["onprem/batch/"]
    assert association["Properties"]["Parameters"]["User"] == ["hpcuser"]
    write = [a for a in cluster_config(app)["HeadNode"]["Iam"]["S3Access"] if a.get("EnableWriteAccess")]
    assert write[0]["KeyName"] == "onprem/batch/*"


# -- client errors (moto) -------------------------------------------------------------------------
@pytest.fixture
def store(aws) -> JobStore:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="data-bucket")
    return JobStore(s3, "data-bucket", "jobs/")


def folder(tmp_path: Path, name: str = "job1") -> Path:
    path = tmp_path / name
    path.mkdir()
    (path / "job-aws-run.sh").write_text("#!/bin/bash\nhostname\n")
    (path / "data.bin").write_bytes(b"x" * 300_000)
    return path


def test_submit_uploads_everything_then_the_state_with_progress(store: JobStore, tmp_path: Path):
    progress = io.StringIO()
    assert store.submit(folder(tmp_path), stream=progress) == "job1"
    keys = [o["Key"] for o in store.s3.list_objects_v2(Bucket="data-bucket")["Contents"]]
    assert sorted(keys) == ["jobs/job1/data.bin", "jobs/job1/job-aws-run.sh", "jobs/job1/job-aws-stat.txt"]
    assert "100% 0.3/0.3 MB job1 (2 files)" in progress.getvalue()
    assert store.status("job1") == {"job": "job1", "state": "FILE_UPLOAD"}


def test_existing_prefix_is_refused(store: JobStore, tmp_path: Path):
    store.submit(folder(tmp_path), stream=io.StringIO())
    with pytest.raises(JobBridgeError, match="s3://data-bucket/jobs/job1/ already exists: choose another --name"):
        store.submit(tmp_path / "job1", stream=io.StringIO())


def test_missing_bucket(aws, tmp_path: Path):
    with pytest.raises(JobBridgeError, match="bucket nope does not exist"):
        JobStore(boto3.client("s3"), "nope").submit(folder(tmp_path), stream=io.StringIO())


def test_missing_job_script_and_bad_name(store: JobStore, tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(JobBridgeError, match="job-aws-run.sh is missing"):
        store.submit(empty)
    with pytest.raises(JobBridgeError, match="job name 'my job' is not allowed"):
        store.submit(folder(tmp_path), name="my job")


def test_status_shows_the_sbatch_error(store: JobStore):
    store.s3.put_object(Bucket="data-bucket", Key="jobs/j/job-aws-stat.txt", Body=b"JOB_ERROR\n")
    store.s3.put_object(Bucket="data-bucket", Key="jobs/j/job-aws-sbatch.out", Body=b"sbatch failed: bad\n")
    assert store.status("j") == {"job": "j", "state": "JOB_ERROR", "error": "sbatch failed: bad"}
    with pytest.raises(JobBridgeError, match="no job other under s3://data-bucket/jobs/"):
        store.status("other")


def test_client_without_credentials(capsys, no_aws_credentials):
    from scripts import job_client

    assert job_client.main(["--region", "us-east-1", "--bucket", "b", "status", "j"]) == 1
    assert capsys.readouterr().err.startswith("error: no AWS credentials found")
