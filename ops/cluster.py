"""Day-to-day cluster operations (the pcluster CLI habits the hands-on guides teach), from the stack outputs.

Everything is found through the outputs of PrereqStack and the cluster's stack (ClusterStack, or
ClusterStack-<name> for another cluster of the ``clusters`` knob), so no ids are typed by hand.
Errors are OpsError with a sentence a user can act on; nothing here raises a botocore trace.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import boto3
from botocore.exceptions import ClientError, NoCredentialsError, NoRegionError

from cluster_yaml.stack_values import (CLUSTER_NAME, DATA_BUCKET_NAME, HEAD_NODE_INSTANCE_ID, HEAD_NODE_USER,
                                         KEY_PAIR_NAME, PRIVATE_KEY_SSM_PARAMETER)
from settings.prereq import CLUSTER_LOGS_PREFIX

FLEET_TABLE_PREFIX = "parallelcluster-"  # ParallelCluster's table; its COMPUTE_FLEET item drives slurm
FLEET_KEY = {"Id": "COMPUTE_FLEET"}
FLEET_STATES = {  # request -> (in progress, done)
    "STOP_REQUESTED": ("STOPPING", "STOPPED"),
    "START_REQUESTED": ("STARTING", "RUNNING"),
}
DEPLOY_HINT = "deploy first: npx cdk deploy PrereqStack {stack}"
CLUSTER_STACK = "ClusterStack"


class OpsError(Exception):
    """A problem the user can fix, in one sentence."""


@dataclass
class Session:
    region: str
    session: Any

    def client(self, service: str) -> Any:
        return self.session.client(service, region_name=self.region)


def connect(region: str | None = None, profile: str | None = None) -> Session:
    session = boto3.Session(profile_name=profile, region_name=region)
    if session.get_credentials() is None:
        raise OpsError("no AWS credentials found: run `aws configure` (or `aws sso login`), or set AWS_PROFILE")
    if not session.region_name:
        raise OpsError("no AWS region: pass --region or set AWS_DEFAULT_REGION")
    return Session(session.region_name, session)


def default_region() -> str | None:
    """The region when none is passed: AWS_DEFAULT_REGION or AWS_REGION, else the one the app deploys to."""
    if os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION"):
        return None  # boto3 reads them itself
    from settings import ConfigError, ConfigErrors, PrereqSettings, read

    try:
        return read(PrereqSettings).network.region or None
    except (ConfigError, ConfigErrors):
        return None  # cdk.json is broken: boto3's own default applies, and `cdk synth` says what to fix


def outputs(aws: Session, stack: str) -> dict[str, str]:
    try:
        described = aws.client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0]
    except (NoCredentialsError, NoRegionError) as error:
        raise OpsError(f"cannot call AWS: {error}") from None
    except ClientError as error:
        if "does not exist" in str(error):
            raise OpsError(f"stack {stack} is not deployed in {aws.region}: {_deploy_hint(stack)}") from None
        raise OpsError(f"cannot read stack {stack}: {error.response['Error']['Message']}") from None
    return {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}


def stack_status(aws: Session, stack: str) -> str | None:
    """The stack's status; None when it does not exist (any other error is not read as "absent")."""
    try:
        return aws.client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"]
    except ClientError as error:
        if "does not exist" in str(error):
            return None
        raise OpsError(f"cannot read {stack}: {error.response['Error']['Message']}") from None


def _required(values: dict[str, str], key: str, stack: str) -> str:
    if not values.get(key):
        raise OpsError(f"stack {stack} has no output {key}: is it fully deployed? {_deploy_hint(stack)}")
    return values[key]


def _deploy_hint(stack: str) -> str:
    return DEPLOY_HINT.format(stack=CLUSTER_STACK if stack == "PrereqStack" else stack)


def cluster_stack(cluster: str | None) -> str:
    """The stack of the cluster named ``cluster``, from cdk.json's clusters. None: ClusterStack, or the one cluster
    when ``clusters`` has only one (after a blue/green upgrade the new cluster has a stack of its own)."""
    from settings import ConfigError, ConfigErrors, read
    from settings.cluster import Clusters

    try:
        known = {c.cluster_name: c.stack_name for c in read(Clusters).clusters}
    except (ConfigError, ConfigErrors) as error:
        if cluster is None:
            return CLUSTER_STACK  # cdk.json is broken: `cdk synth` says what to fix
        raise OpsError(f"cdk.json does not read: {str(error).splitlines()[0]}") from None
    if cluster is None:
        if CLUSTER_STACK in known.values() or not known:
            return CLUSTER_STACK
        if len(known) == 1:
            return next(iter(known.values()))
        raise OpsError(f"cdk.json has several clusters ({', '.join(known)}) and none in {CLUSTER_STACK}: pass "
                       "--cluster NAME")
    if cluster not in known:
        raise OpsError(f"no cluster named {cluster} in cdk.json (clusters: {', '.join(known)})")
    return known[cluster]


def cluster_name(aws: Session, stack: str = CLUSTER_STACK) -> str:
    return _required(outputs(aws, stack), CLUSTER_NAME, stack)


def status(aws: Session, stack: str = CLUSTER_STACK) -> dict[str, str]:
    """Cluster stack status, head node state and compute fleet status."""
    cluster = outputs(aws, stack)
    name = _required(cluster, CLUSTER_NAME, stack)
    result = {"cluster": name, "region": aws.region}
    try:
        described = aws.client("cloudformation").describe_stacks(StackName=name)["Stacks"][0]
        result["cluster stack"] = described["StackStatus"]
    except ClientError:
        result["cluster stack"] = "NOT FOUND"
    instance_id = cluster.get(HEAD_NODE_INSTANCE_ID)
    if instance_id:
        reservations = aws.client("ec2").describe_instances(InstanceIds=[instance_id])["Reservations"]
        instance = reservations[0]["Instances"][0] if reservations else {}
        result["head node"] = f"{instance_id} {instance.get('State', {}).get('Name', 'unknown')}"
        result["head node private ip"] = instance.get("PrivateIpAddress", "-")
    result["compute fleet"] = fleet_status(aws, name)
    return result


def fleet_status(aws: Session, name: str) -> str:
    try:
        item = aws.client("dynamodb").get_item(TableName=FLEET_TABLE_PREFIX + name,
                                               Key={"Id": {"S": "COMPUTE_FLEET"}}).get("Item")
    except ClientError:
        return "UNKNOWN (no fleet table yet)"
    return item["Data"]["M"]["status"]["S"] if item else "UNKNOWN"


def set_fleet(aws: Session, request: str, stack: str = CLUSTER_STACK) -> str:
    """Asks ParallelCluster to stop or start the compute fleet, as `pcluster update-compute-fleet` does."""
    name = cluster_name(aws, stack)
    current = fleet_status(aws, name)
    in_progress, done = FLEET_STATES[request]
    if current in (request, in_progress, done):
        return f"compute fleet of {name} is already {current}"
    if current.startswith("UNKNOWN"):
        raise OpsError(f"compute fleet status of {name} is unknown: is the cluster still being created?")
    try:
        aws.client("dynamodb").update_item(
            TableName=FLEET_TABLE_PREFIX + name, Key={"Id": {"S": "COMPUTE_FLEET"}},
            UpdateExpression="set #dt.#st = :s, #dt.#lut = :t",
            ConditionExpression="#dt.#st = :current",
            ExpressionAttributeNames={"#dt": "Data", "#st": "status", "#lut": "lastStatusUpdatedTime"},
            ExpressionAttributeValues={":s": {"S": request}, ":t": {"S": str(datetime.now(tz=timezone.utc))},
                                       ":current": {"S": current}})
    except ClientError as error:
        if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
            raise OpsError("the fleet status changed meanwhile; run `status` and try again") from None
        raise
    return f"compute fleet of {name}: {current} -> {request} (ParallelCluster moves it to {done})"


def fetch_key(aws: Session, directory: Path) -> Path:
    """Writes the key pair's private key from SSM Parameter Store to DIR/<key name>.pem, mode 0600."""
    prereq = outputs(aws, "PrereqStack")
    key_name = _required(prereq, KEY_PAIR_NAME, "PrereqStack")
    parameter = prereq.get(PRIVATE_KEY_SSM_PARAMETER)
    if not parameter:
        raise OpsError(f"key pair {key_name} was not created by this app (context key_pair_name): use your own "
                       "private key")
    try:
        value = aws.client("ssm").get_parameter(Name=parameter, WithDecryption=True)["Parameter"]["Value"]
    except ClientError as error:
        raise OpsError(f"cannot read {parameter}: {error.response['Error']['Message']}") from None
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / f"{key_name}.pem"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(value if value.endswith("\n") else value + "\n")
    os.chmod(path, 0o600)  # also when the file existed with wider permissions
    return path


# The tags ParallelCluster puts on login nodes (its login-nodes launch template); they run in an
# Auto Scaling group, so their ids are not in any stack output.
CLUSTER_TAG, NODE_TYPE_TAG, POOL_TAG = ("parallelcluster:cluster-name", "parallelcluster:node-type",
                                        "parallelcluster:login-nodes-pool-name")


def login_node(aws: Session, pool: str | None = None, stack: str = CLUSTER_STACK) -> str:
    """The id of a running login node of the cluster (of POOL if given), the longest-running first."""
    name = cluster_name(aws, stack)
    filters = [{"Name": f"tag:{CLUSTER_TAG}", "Values": [name]}, {"Name": f"tag:{NODE_TYPE_TAG}", "Values": ["LoginNode"]},
               {"Name": "instance-state-name", "Values": ["running"]}]
    if pool:
        filters.append({"Name": f"tag:{POOL_TAG}", "Values": [pool]})
    reservations = aws.client("ec2").describe_instances(Filters=filters)["Reservations"]
    instances = sorted((i for r in reservations for i in r["Instances"]), key=lambda i: (i["LaunchTime"], i["InstanceId"]))
    if not instances:
        where = f"in pool {pool}" if pool else "in any pool"
        raise OpsError(f"no running login node of {name} {where}: the cluster config needs LoginNodes.Pools with "
                       "Count > 0 (cluster_configs/multi-queue.yaml has one), and new login nodes take a few minutes")
    return instances[0]["InstanceId"]


def connect_command(aws: Session, ssh: bool, key_dir: Path, login: bool = False, pool: str | None = None,
                    stack: str = CLUSTER_STACK) -> list[str]:
    """The command that opens a shell on the head node (or a login node): SSM by default, SSH with --ssh."""
    cluster = outputs(aws, stack)
    instance_id = login_node(aws, pool, stack) if login else _required(cluster, HEAD_NODE_INSTANCE_ID, stack)
    if not ssh:
        return ["aws", "ssm", "start-session", "--region", aws.region, "--target", instance_id]
    key = key_dir / f"{_required(outputs(aws, 'PrereqStack'), KEY_PAIR_NAME, 'PrereqStack')}.pem"
    if not key.exists():
        raise OpsError(f"no private key at {key}: run `hpc-ops fetch-key` first")
    reservations = aws.client("ec2").describe_instances(InstanceIds=[instance_id])["Reservations"]
    instance = reservations[0]["Instances"][0]
    address = instance.get("PublicIpAddress") or instance.get("PrivateIpAddress")
    user = cluster.get(HEAD_NODE_USER, "ec2-user")
    return ["ssh", "-i", str(key), f"{user}@{address}"]


def export_logs(aws: Session, since_hours: int = 24, stack: str = CLUSTER_STACK) -> str:
    """Starts a CloudWatch Logs export of the cluster's log group into the data bucket."""
    name = cluster_name(aws, stack)
    bucket = _required(outputs(aws, "PrereqStack"), DATA_BUCKET_NAME, "PrereqStack")
    logs = aws.client("logs")
    groups = logs.describe_log_groups(logGroupNamePrefix=f"/aws/parallelcluster/{name}")["logGroups"]
    if not groups:
        raise OpsError(f"no log group /aws/parallelcluster/{name}*: is Monitoring.Logs.CloudWatch enabled?")
    now = datetime.now(tz=timezone.utc)
    prefix = f"{CLUSTER_LOGS_PREFIX}/{name}/{now:%Y%m%dT%H%M%SZ}"
    task = logs.create_export_task(
        taskName=f"{name}-{now:%Y%m%d%H%M%S}", logGroupName=groups[0]["logGroupName"],
        fromTime=int((now.timestamp() - since_hours * 3600) * 1000), to=int(now.timestamp() * 1000),
        destination=bucket, destinationPrefix=prefix)
    return f"export task {task['taskId']}: {groups[0]['logGroupName']} -> s3://{bucket}/{prefix}/"


SSM_ACTIVE = ("Pending", "InProgress", "Delayed")
SLURM_PATH = "export PATH=/opt/slurm/bin:$PATH"  # ParallelCluster's Slurm; SSM's shell does not have it


def run_shell(aws: Session, instance_id: str, commands: list[str], timeout: int, comment: str, poll: float = 5.0,
              sleep: Callable[[float], None] = time.sleep) -> tuple[str, str, str]:
    """Runs COMMANDS on an instance through SSM Run Command (AWS-RunShellScript, as root) and waits:
    (status, stdout, stderr). SSM returns the first 24,000 characters of each stream."""
    ssm = aws.client("ssm")
    try:
        command = ssm.send_command(InstanceIds=[instance_id], DocumentName="AWS-RunShellScript", Comment=comment,
                                   TimeoutSeconds=60, Parameters={"commands": commands,
                                                                  "executionTimeout": [str(timeout)]})
    except ClientError as error:
        raise OpsError(f"cannot run commands on the head node {instance_id}: {error.response['Error']['Message']} "
                       "(is its SSM agent online? `aws ssm describe-instance-information`)") from None
    command_id = command["Command"]["CommandId"]
    while True:
        sleep(poll)
        try:
            invocation = ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
        except ClientError as error:
            if error.response["Error"]["Code"] == "InvocationDoesNotExist":
                continue  # not registered yet, right after send_command
            raise OpsError(f"cannot follow the command on {instance_id}: {error.response['Error']['Message']}") from None
        if invocation["Status"] not in SSM_ACTIVE:
            return (invocation["Status"], invocation.get("StandardOutputContent", ""),
                    invocation.get("StandardErrorContent", ""))


def on_head_node(aws: Session, stack: str, commands: list[str], comment: str,
                 sleep: Callable[[float], None] = time.sleep) -> str:
    """COMMANDS as root on the head node of the cluster in ``stack``, with ParallelCluster's Slurm on PATH: stdout.
    Raises OpsError when they fail."""
    instance = _required(outputs(aws, stack), HEAD_NODE_INSTANCE_ID, stack)
    status, stdout, stderr = run_shell(aws, instance, [SLURM_PATH, *commands], 600, comment, sleep=sleep)
    if status != "Success":
        raise OpsError(f"`{'; '.join(commands)}` on the head node of {stack}: {status}: {stderr[-300:]}")
    return stdout
