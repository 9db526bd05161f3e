"""Job bridge wiring in ClusterStack, its cluster-config changes, and the client's clear errors."""

from __future__ import annotations

import io
import json
from pathlib import Path

import boto3
import pytest

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
    [role] = template.find_resources("AWS::IAM::Role").values()
    assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "events.amazonaws.com"}
    [policy] = template.find_resources("AWS::IAM::Policy").values()
    [statement] = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Action"] == "ssm:SendCommand"
    resources = json.dumps(statement["Resource"])
    assert "document/AWS-RunShellScript" in resources and "instance/" in resources and '"*"' not in resources


def test_cluster_config_gets_the_installer_write_access_and_epilog(bridged: Synthesized):
    config = cluster_config(bridged)
    assert config["Scheduling"]["SlurmSettings"]["CustomSlurmSettings"] == [
        {"EpilogSlurmctld": "/opt/job-bridge/epilog"}]
    install = config["HeadNode"]["CustomActions"]["OnNodeConfigured"]["Sequence"][-1]
    assert install["Args"][0] == "install" and install["Args"][2:] == ["jobs/", "ubuntu"]
    write = [a for a in config["HeadNode"]["Iam"]["S3Access"] if a.get("KeyName") == "jobs/*"]
    assert write and write[0]["EnableWriteAccess"] == "true"


def test_prefix_and_user_from_context():
    config = cluster_config(synth(job_bridge=True, job_bridge_prefix="onprem/batch/", job_bridge_user="hpcuser"))
    install = config["HeadNode"]["CustomActions"]["OnNodeConfigured"]["Sequence"][-1]
    assert install["Args"][2:] == ["onprem/batch/", "hpcuser"]


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
