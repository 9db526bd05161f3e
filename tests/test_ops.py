"""Ops commands against moto: the stack outputs lead to the head node, the fleet table, the key, the logs."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import boto3
import pytest

from commands import ops

CLUSTER = "hpc-cluster"
PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nfake\n-----END OPENSSH PRIVATE KEY-----"


def stack_with_outputs(name: str, outputs: dict[str, str]) -> None:
    template = {"Resources": {"Placeholder": {"Type": "AWS::SNS::Topic"}},
                "Outputs": {k: {"Value": v} for k, v in outputs.items()}}
    boto3.client("cloudformation").create_stack(StackName=name, TemplateBody=json.dumps(template))


def amazon_linux_image() -> str:
    """An image moto knows, by its public parameter (listing all of moto's 1,300 images costs 2 s per test)."""
    return boto3.client("ssm").get_parameter(
        Name="/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64")["Parameter"]["Value"]


@pytest.fixture
def deployed(aws) -> dict[str, str]:
    """What `cdk deploy` and ParallelCluster leave behind, as far as the ops commands look."""
    ec2 = boto3.client("ec2")
    image = amazon_linux_image()
    instance = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="c5.9xlarge")["Instances"][0]
    boto3.client("s3").create_bucket(Bucket="data-bucket")
    boto3.client("ssm").put_parameter(Name="/ec2/keypair/key-0abc", Value=PRIVATE_KEY, Type="SecureString")
    stack_with_outputs("PrereqStack", {"KeyPairName": "PrereqStack-cluster", "DataBucketName": "data-bucket",
                                       "PrivateKeySsmParameter": "/ec2/keypair/key-0abc"})
    stack_with_outputs("ClusterStack", {"ClusterName": CLUSTER, "HeadNodeInstanceId": instance["InstanceId"],
                                        "HeadNodeUser": "ubuntu"})
    stack_with_outputs(CLUSTER, {})  # ParallelCluster's own stack
    dynamodb = boto3.client("dynamodb")
    dynamodb.create_table(TableName=f"parallelcluster-{CLUSTER}", BillingMode="PAY_PER_REQUEST",
                          KeySchema=[{"AttributeName": "Id", "KeyType": "HASH"}],
                          AttributeDefinitions=[{"AttributeName": "Id", "AttributeType": "S"}])
    dynamodb.put_item(TableName=f"parallelcluster-{CLUSTER}", Item={"Id": {"S": "COMPUTE_FLEET"}, "Data": {"M": {
        "status": {"S": "RUNNING"}, "lastStatusUpdatedTime": {"S": "2026-11-23 00:00:00+00:00"}}}})
    boto3.client("logs").create_log_group(logGroupName=f"/aws/parallelcluster/{CLUSTER}-202611230000")
    return {"instance": instance["InstanceId"]}


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = ops.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_status(deployed, capsys):
    code, out, _ = run(capsys, "status")
    assert code == 0
    assert f"cluster                {CLUSTER}" in out
    assert "cluster stack          CREATE_COMPLETE" in out
    assert f"head node              {deployed['instance']} running" in out
    assert "compute fleet          RUNNING" in out


def test_stop_then_start_the_fleet(deployed, capsys):
    assert run(capsys, "stop-fleet")[1] == f"compute fleet of {CLUSTER}: RUNNING -> STOP_REQUESTED (ParallelCluster moves it to STOPPED)\n"
    item = boto3.client("dynamodb").get_item(TableName=f"parallelcluster-{CLUSTER}", Key={"Id": {"S": "COMPUTE_FLEET"}})
    assert item["Item"]["Data"]["M"]["status"]["S"] == "STOP_REQUESTED"
    assert "already STOP_REQUESTED" in run(capsys, "stop-fleet")[1]
    assert "STOP_REQUESTED -> START_REQUESTED" in run(capsys, "start-fleet")[1]


def test_fetch_key_writes_0600(deployed, capsys, tmp_path: Path):
    code, out, _ = run(capsys, "fetch-key", "--dir", str(tmp_path / "ssh"))
    key = tmp_path / "ssh" / "PrereqStack-cluster.pem"
    assert code == 0 and out == f"wrote {key}\n"
    assert key.read_text() == PRIVATE_KEY + "\n"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_connect_prints_the_ssm_session(deployed, capsys):
    code, out, _ = run(capsys, "connect", "--print")
    assert code == 0 and out == f"aws ssm start-session --region us-east-1 --target {deployed['instance']}\n"


@pytest.fixture(scope="module")
def login_node_tags() -> list[dict[str, str]]:
    """The instance tags of multi-queue's login pool, from the template ParallelCluster itself generates."""
    from tests.conftest import synth
    from tests.corpus import _objects
    from tests.node_permissions import cluster_templates

    app = synth(cluster_config="multi-queue")
    templates = cluster_templates({name: app.synthesis.template(name) for name in app.stacks}, _objects(app), CLUSTER)
    [specs] = [r["Properties"]["LaunchTemplateData"]["TagSpecifications"] for t in templates.values()
               for r in t["Resources"].values()
               if r["Type"] == "AWS::EC2::LaunchTemplate" and r["Properties"].get("LaunchTemplateName") == f"{CLUSTER}-login"]
    [instance] = [spec["Tags"] for spec in specs if spec["ResourceType"] == "instance"]
    return [tag for tag in instance if isinstance(tag["Value"], str)]


def test_connect_to_a_login_node_by_the_tags_parallelcluster_gives_it(deployed, login_node_tags, capsys):
    code, _, err = run(capsys, "connect", "--login", "--print")
    assert code == 1 and "no running login node of hpc-cluster in any pool: the cluster config needs LoginNodes" in err
    ec2 = boto3.client("ec2")
    image = amazon_linux_image()
    other = [{"Key": t["Key"], "Value": "other-cluster" if t["Key"] == "parallelcluster:cluster-name" else t["Value"]}
             for t in login_node_tags]
    for tags in (other, login_node_tags):
        ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="m5.xlarge",
                          TagSpecifications=[{"ResourceType": "instance", "Tags": tags}])
    [mine] = [i["InstanceId"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]
              if {"Key": "parallelcluster:cluster-name", "Value": CLUSTER} in i.get("Tags", [])]
    code, out, err = run(capsys, "connect", "--login", "--print")
    assert code == 0, err
    assert out == f"aws ssm start-session --region us-east-1 --target {mine}\n"
    assert run(capsys, "connect", "--pool", "login", "--print")[1] == out
    code, _, err = run(capsys, "connect", "--pool", "gpu-login", "--print")
    assert code == 1 and "no running login node of hpc-cluster in pool gpu-login" in err


def test_connect_over_ssh_needs_the_key_first(deployed, capsys, monkeypatch, tmp_path: Path):
    monkeypatch.setenv("HOME", str(tmp_path))
    code, _, err = run(capsys, "connect", "--ssh", "--print")
    assert code == 1 and "run `hpc-ops fetch-key` first" in err
    run(capsys, "fetch-key", "--dir", str(tmp_path / ".ssh"))
    code, out, _ = run(capsys, "connect", "--ssh", "--print")
    assert code == 0 and out.startswith(f"ssh -i {tmp_path}/.ssh/PrereqStack-cluster.pem ubuntu@")


def test_export_logs_to_the_data_bucket(deployed, capsys):
    code, out, err = run(capsys, "export-logs", "--hours", "2")
    assert code == 0, err
    assert f"/aws/parallelcluster/{CLUSTER}-202611230000 -> s3://data-bucket/cluster-logs/{CLUSTER}/" in out


def test_stacks_not_deployed(aws, capsys):
    code, _, err = run(capsys, "status")
    assert code == 1
    assert err == ("error: stack ClusterStack is not deployed in us-east-1: deploy first: "
                   "npx cdk deploy PrereqStack ClusterStack\n")


def test_no_credentials(capsys, no_aws_credentials):
    code, _, err = run(capsys, "--region", "us-east-1", "status")
    assert code == 1 and err.startswith("error: no AWS credentials found: run `aws configure`")


def test_every_command_has_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        ops.main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for command in ("status", "connect", "fetch-key", "stop-fleet", "start-fleet", "export-logs"):
        assert command in text


def test_cluster_picks_the_stack_of_another_cluster_of_the_clusters_knob(deployed, capsys, monkeypatch):
    """With two clusters on one PrereqStack, --cluster NAME reads ClusterStack-NAME's outputs and fleet."""
    import settings
    from settings.context import shipped_context

    monkeypatch.setattr(settings, "shipped_context", lambda: {
        **shipped_context(), "clusters": {CLUSTER: {}, "hpc-cluster-2": {"parallelcluster_version": "3.15.1"}}})
    stack_with_outputs("ClusterStack-hpc-cluster-2", {"ClusterName": "hpc-cluster-2",
                                                      "HeadNodeInstanceId": deployed["instance"]})
    dynamodb = boto3.client("dynamodb")
    dynamodb.create_table(TableName="parallelcluster-hpc-cluster-2", BillingMode="PAY_PER_REQUEST",
                          KeySchema=[{"AttributeName": "Id", "KeyType": "HASH"}],
                          AttributeDefinitions=[{"AttributeName": "Id", "AttributeType": "S"}])
    dynamodb.put_item(TableName="parallelcluster-hpc-cluster-2", Item={"Id": {"S": "COMPUTE_FLEET"}, "Data": {"M": {
        "status": {"S": "STOPPED"}}}})
    code, out, _ = run(capsys, "--cluster", "hpc-cluster-2", "status")
    assert code == 0 and "cluster                hpc-cluster-2" in out and "compute fleet          STOPPED" in out
    assert "cluster                hpc-cluster\n" in run(capsys, "status")[1]  # the default stays ClusterStack
    assert "hpc-cluster-2: STOPPED -> START_REQUESTED" in run(capsys, "--cluster", "hpc-cluster-2", "start-fleet")[1]
    code, _, err = run(capsys, "--cluster", "nope", "status")
    assert code == 1 and err == "error: no cluster named nope in cdk.json (clusters: hpc-cluster, hpc-cluster-2)\n"


def test_after_an_upgrade_the_one_cluster_left_is_the_default(deployed, capsys, monkeypatch):
    """The old cluster (in ClusterStack) removed, cdk.json's clusters holds the new one only: no --cluster needed."""
    import settings
    from settings.context import shipped_context

    monkeypatch.setattr(settings, "shipped_context", lambda: {**shipped_context(), "clusters": {"hpc-cluster-2": {}}})
    stack_with_outputs("ClusterStack-hpc-cluster-2", {"ClusterName": "hpc-cluster-2",
                                                      "HeadNodeInstanceId": deployed["instance"]})
    assert "cluster                hpc-cluster-2" in run(capsys, "status")[1]
    monkeypatch.setattr(settings, "shipped_context", lambda: {**shipped_context(), "clusters": {"a": {}, "b": {}}})
    code, _, err = run(capsys, "status")
    assert code == 1 and "several clusters (a, b) and none in ClusterStack: pass --cluster NAME" in err


def test_a_missing_cluster_stack_is_named_in_the_hint(aws, capsys, monkeypatch):
    import settings
    from settings.context import shipped_context

    monkeypatch.setattr(settings, "shipped_context", lambda: {**shipped_context(), "clusters": {"a": {}, "b": {}}})
    code, _, err = run(capsys, "--cluster", "b", "status")
    assert code == 1 and err == ("error: stack ClusterStack-b is not deployed in us-east-1: deploy first: "
                                 "npx cdk deploy PrereqStack ClusterStack-b\n")
