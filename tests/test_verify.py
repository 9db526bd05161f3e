"""`hpc-ops verify`, the AWS side, on moto: the plan comes from the synthesized ClusterStack template (as
CloudFormation returns it) and the stack outputs; EC2's instance-type data gives GPU counts; the S3 half
of the Lustre round trip and the job bridge go through moto's S3; SSM Run Command is stubbed with
botocore's Stubber against the real SSM API model. The head-node script itself runs on a real Slurm in
test_verify_slurm.py; here a stand-in head node answers, with FSx's data repository associations
played by copying between the file system and the bucket.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from cluster_yaml.simulation import Templates
from ops.cluster import OpsError, Session
from ops.verify import (CHECK_SCRIPT, CheckResult, DeployedCluster, Options, as_json, deployed_cluster, parse,
                        plan_lines, ssm_runner, table, verify)
from tests.conftest import BRIDGE, synth

REGION = "us-east-1"
HEAD_NODE = "i-0123456789abcdef0"


def deployed(config: str, **context: Any) -> DeployedCluster:
    """A synthesized app as CloudFormation would hold it: PrereqStack's outputs with simulated values."""
    app = synth(cluster_config=config, **context)
    templates = {name: app.synthesis.template(name) for name in app.stacks}
    resolver = Templates(templates, REGION)
    prereq = {key: str(resolver.resolve("PrereqStack", output["Value"]))
              for key, output in templates["PrereqStack"]["Outputs"].items()}
    cluster = {"ClusterName": "hpc-cluster", "HeadNodeInstanceId": HEAD_NODE, "HeadNodeUser": "ubuntu"}
    if "JobBridgePrefix" in templates["ClusterStack"]["Outputs"]:
        cluster["JobBridgePrefix"] = templates["ClusterStack"]["Outputs"]["JobBridgePrefix"]["Value"]
    ids = {logical: f"{logical.lower()}-physical" for logical in templates["ClusterStack"]["Resources"]}
    prereq_ids = {logical: str(resolver.resolve("PrereqStack", {"Ref": logical}))
                  for logical in templates["PrereqStack"]["Resources"]}
    return DeployedCluster(cluster, prereq, templates["ClusterStack"], ids, templates["PrereqStack"], prereq_ids)


class HeadNode:
    """Stands in for the head node and FSx: answers each plan the way verify_cluster.sh reports, copies
    files written under exporting associations to S3, and finds imported objects when S3 has them."""

    def __init__(self, cluster: DeployedCluster, exports_reach_s3: bool = True) -> None:
        self.plans: list[list[str]] = []
        self.exports_reach_s3 = exports_reach_s3
        self.links = {f"/fsx{a['FileSystemPath']}": a for a in self._associations(cluster)}

    @staticmethod
    def _associations(cluster: DeployedCluster) -> list[dict[str, Any]]:
        from ops.verify import resolve

        return [resolve(r["Properties"], {}, cluster.prereq_ids) for r in cluster.prereq_template["Resources"].values()
                if r["Type"] == "AWS::FSx::DataRepositoryAssociation"]

    def _s3_location(self, path: str) -> tuple[str, str]:
        directory, name = path.rsplit("/", 1)
        bucket, _, prefix = self.links[directory]["DataRepositoryPath"].removeprefix("s3://").partition("/")
        return bucket, prefix + name

    def __call__(self, plan: list[str]) -> str:
        self.plans.append(plan)
        s3, lines = boto3.client("s3"), []
        for kind, _, rest in (line.partition(" ") for line in plan):
            if kind == "queue":
                lines.append(f"RESULT\tsrun:{rest.split()[0]}\tPASS\t3\t1 node(s): queue-st-1")
            elif kind == "export":
                lines.append(f"RESULT\texport-write:{rest.rsplit('/', 1)[0]}\tPASS\t0\twrote {rest}")
                if self.exports_reach_s3:
                    bucket, key = self._s3_location(rest)
                    s3.put_object(Bucket=bucket, Key=key, Body=b"now")
            elif kind == "await":
                bucket, key = self._s3_location(rest)
                found = key in [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
                lines.append(f"RESULT\timport:{rest}\t{'PASS' if found else 'FAIL'}\t1\tawaited")
        if "only awaits,removes" in plan:
            lines = [line for line in lines if line.startswith("RESULT\timport:")]
        return "\n".join(lines) + "\n"


class JobBridgeOnTheHeadNode:
    """A sleep that lets the head node's bridge move every submitted job to FINAL_STATE meanwhile."""

    def __init__(self, bucket: str, prefix: str, final_state: str = "JOB_COMPLETE") -> None:
        self.bucket, self.prefix, self.final_state, self.calls = bucket, prefix, final_state, 0

    def __call__(self, seconds: float) -> None:
        self.calls += 1
        s3 = boto3.client("s3")
        for item in s3.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix).get("Contents", []):
            if item["Key"].endswith("/job-aws-stat.txt"):
                s3.put_object(Bucket=self.bucket, Key=item["Key"], Body=f"{self.final_state}\n".encode())


def session() -> Session:
    return Session(REGION, boto3.Session(region_name=REGION))


def submitter_session() -> Session:
    """The caller as the job bridge's submitter role: its jobs go to <prefix><role name>/."""
    credentials = boto3.client("sts", region_name=REGION).assume_role(
        RoleArn=BRIDGE["job_bridge_submitters"][0], RoleSessionName="verify")["Credentials"]
    return Session(REGION, boto3.Session(region_name=REGION, aws_access_key_id=credentials["AccessKeyId"],
                                         aws_secret_access_key=credentials["SecretAccessKey"],
                                         aws_session_token=credentials["SessionToken"]))


def with_buckets(cluster: DeployedCluster) -> str:
    bucket = cluster.prereq_outputs["DataBucketName"]
    boto3.client("s3").create_bucket(Bucket=bucket)
    return bucket


# -- the plan, from each shipped config ----------------------------------------------------------------
def test_the_plan_of_the_gpu_config_names_gpus_efa_pyxis_and_both_file_systems(aws):
    cluster = deployed("gpu-p5", CAPACITY_RESERVATION_ID="cr-0123456789abcdef0")
    plan = verify_plan(cluster)
    [gpu] = [line for line in plan if line.startswith("queue ")]
    name, static, maximum, efa, gpus, pyxis = gpu.split()[1:]
    assert (efa, gpus, pyxis) == ("1", "8", "1")  # 8 H100 per p5.48xlarge, as EC2 describes it
    assert "mount /fsx lustre" in plan and "mount /home nfs" in plan
    assert "export /fsx/data" in plan and "export /fsx/containers" not in plan  # /containers only imports
    assert plan[:2] == ["user ubuntu", "timeout 900"]


def test_the_plan_of_multi_queue_covers_every_queue(aws):
    cluster = deployed("multi-queue")
    queues = [line.split()[1] for line in verify_plan(cluster) if line.startswith("queue ")]
    assert queues == [q["Name"] for q in cluster.config["Scheduling"]["SlurmQueues"]] and len(queues) == 3
    assert all(line.split()[5] == "0" for line in verify_plan(cluster) if line.startswith("queue "))  # no GPUs


def verify_plan(cluster: DeployedCluster) -> list[str]:
    from ops.verify import _instance_types, gpus_per_node

    queues = cluster.config["Scheduling"]["SlurmQueues"]
    gpus = gpus_per_node(session(), [t for q in queues for t in _instance_types(q)])
    exports = [f"/fsx{a['FileSystemPath']}" for a in HeadNode._associations(cluster) if "AutoExportPolicy" in a["S3"]]
    return plan_lines(cluster.config, "ubuntu", exports, Options(), gpus)


def test_the_deployed_config_is_resolved_against_the_outputs_and_physical_ids(aws):
    cluster = deployed("vanilla")
    head = cluster.config["HeadNode"]
    assert head["Networking"]["SubnetId"].startswith("subnet-")
    assert not any(isinstance(v, dict) and set(v) & {"Ref", "Fn::GetStackOutput", "Fn::Join"}
                   for v in _leaves(cluster.config))


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [value] + [x for v in value.values() for x in _leaves(v)]
    if isinstance(value, list):
        return [x for v in value for x in _leaves(v)]
    return [value]


def test_deployed_cluster_reads_the_template_and_ids_cloudformation_holds(aws):
    template = {"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}, "Outputs": {
        "HeadNodeInstanceId": {"Value": HEAD_NODE}}}
    cloudformation = boto3.client("cloudformation")
    cloudformation.create_stack(StackName="ClusterStack", TemplateBody=json.dumps(template))
    cloudformation.create_stack(StackName="PrereqStack", TemplateBody=json.dumps(
        {"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}, "Outputs": {"DataBucketName": {"Value": "data"}}}))
    found = deployed_cluster(session())
    assert found.template == template and found.prereq_outputs == {"DataBucketName": "data"}
    assert found.prereq_template["Resources"] == {"Topic": {"Type": "AWS::SNS::Topic"}}
    assert found.cluster_outputs == {"HeadNodeInstanceId": HEAD_NODE}
    assert found.physical_ids["Topic"].startswith("arn:aws:sns:")


# -- the whole verification ----------------------------------------------------------------------------
def test_a_healthy_cluster_passes_every_aws_side_check(aws):
    cluster = deployed("gpu-p5", CAPACITY_RESERVATION_ID="cr-0123456789abcdef0", **BRIDGE)
    bucket = with_buckets(cluster)
    head = HeadNode(cluster)
    results = verify(submitter_session(), Options(), runner=head, deployed=cluster,
                     sleep=JobBridgeOnTheHeadNode(bucket, cluster.cluster_outputs["JobBridgePrefix"]))
    by_check = {r.check: r for r in results}
    assert by_check["export:/fsx/data"].status == "PASS"
    assert re.fullmatch(f"s3://{bucket}/data/\\.verify-export-[0-9a-f]{{16}} arrived", by_check["export:/fsx/data"].evidence)
    [token] = re.findall(r"export-([0-9a-f]{16})", by_check["export:/fsx/data"].evidence)
    assert by_check[f"import:/fsx/data/.verify-import-{token}"].status == "PASS"
    assert by_check[f"import:/fsx/containers/.verify-import-{token}"].status == "PASS"
    assert by_check["job-bridge"].status == "PASS" and by_check["job-bridge"].evidence.endswith(": JOB_COMPLETE")
    assert f"s3://{bucket}/jobs/onprem-submitter/verify-" in by_check["job-bridge"].evidence  # the role's own folder
    assert not [r for r in results if r.status == "FAIL"]
    assert head.plans[1][-1] == "only awaits,removes" and len(head.plans) == 2  # one SSM command for the checks, one to await
    assert sorted(line for line in head.plans[1] if line.startswith("remove ")) == [
        f"remove /fsx/containers/.verify-import-{token}", f"remove /fsx/data/.verify-export-{token}",
        f"remove /fsx/data/.verify-import-{token}"]
    assert "Contents" not in boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix="data/.verify")  # cleaned up


def test_an_export_that_never_reaches_s3_fails(aws):
    cluster = deployed("vanilla")
    with_buckets(cluster)
    results = verify(session(), Options(dra_timeout=0, job_bridge=False), runner=HeadNode(cluster, False),
                     deployed=cluster, sleep=lambda _: None)
    [export] = [r for r in results if r.check == "export:/fsx/data"]
    assert export.status == "FAIL" and re.search(r"/data/\.verify-export-[0-9a-f]{16} did not appear within 0s$",
                                                 export.evidence)


def test_the_job_bridge_is_skipped_when_off_and_fails_when_the_job_fails(aws):
    cluster = deployed("vanilla")
    with_buckets(cluster)
    results = verify(session(), Options(), runner=HeadNode(cluster), deployed=cluster, sleep=lambda _: None)
    assert results[-1] == CheckResult("job-bridge", "SKIP", 0, "the job bridge is off (context job_bridge)")
    cluster = deployed("vanilla", **BRIDGE)
    bucket = cluster.prereq_outputs["DataBucketName"]
    results = verify(submitter_session(), Options(), runner=HeadNode(cluster), deployed=cluster,
                     sleep=JobBridgeOnTheHeadNode(bucket, cluster.cluster_outputs["JobBridgePrefix"], "JOB_FAILED"))
    assert results[-1].check == "job-bridge" and results[-1].status == "FAIL"
    assert results[-1].evidence.endswith(": JOB_FAILED")
    # An IAM user is no submitter: it has no folder of its own, and verify says so instead of trying.
    results = verify(session(), Options(), runner=HeadNode(cluster), deployed=cluster, sleep=lambda _: None)
    assert results[-1].status == "FAIL" and "not an IAM role" in results[-1].evidence


# -- SSM Run Command ------------------------------------------------------------------------------------
def test_the_checks_run_through_ssm_run_command_and_are_followed_until_done(aws):
    aws_session = session()
    ssm = boto3.client("ssm", region_name=REGION)
    aws_session.client = lambda service: ssm  # type: ignore[method-assign]
    output = "RESULT\tslurm\tPASS\t0\tpartitions up: gpu\n"
    with Stubber(ssm) as stub:
        stub.add_response("send_command", {"Command": {"CommandId": "8b6c1e2a-0000-4000-8000-000000000001"}}, {
            "InstanceIds": [HEAD_NODE], "DocumentName": "AWS-RunShellScript", "Comment": "hpc-ops verify",
            "TimeoutSeconds": 60, "Parameters": {"commands": _Any(), "executionTimeout": ["1200"]}})
        stub.add_client_error("get_command_invocation", "InvocationDoesNotExist")
        stub.add_response("get_command_invocation", {"Status": "InProgress"})
        stub.add_response("get_command_invocation", {"Status": "Success", "StandardOutputContent": output})
        results = parse(ssm_runner(aws_session, HEAD_NODE, 100, sleep=lambda _: None)(["user ubuntu"]))
        stub.assert_no_pending_responses()
    assert results == [CheckResult("slurm", "PASS", 0, "partitions up: gpu")]


def test_a_command_that_could_not_run_says_why(aws):
    aws_session = session()
    ssm = boto3.client("ssm", region_name=REGION)
    aws_session.client = lambda service: ssm  # type: ignore[method-assign]
    with Stubber(ssm) as stub:
        stub.add_client_error("send_command", "InvalidInstanceId", "Instances not in a valid state for account")
        with pytest.raises(OpsError, match="cannot run commands on the head node .*is its SSM agent online"):
            ssm_runner(aws_session, HEAD_NODE, 100, sleep=lambda _: None)(["user ubuntu"])
        stub.add_response("send_command", {"Command": {"CommandId": "8b6c1e2a-0000-4000-8000-000000000002"}})
        stub.add_response("get_command_invocation", {"Status": "Failed", "StandardErrorContent": "bash: no such file"})
        with pytest.raises(OpsError, match=r"the checks did not run on .* \(Failed\): bash: no such file"):
            ssm_runner(aws_session, HEAD_NODE, 100, sleep=lambda _: None)(["user ubuntu"])


def test_the_command_carries_this_checkouts_script(aws):
    from ops.verify import ssm_command

    commands = ssm_command(["user ubuntu"])
    [unpack] = [c for c in commands if "base64 -d" in c]
    encoded = unpack.split("'")[1]
    assert gzip.decompress(base64.b64decode(encoded)) == CHECK_SCRIPT.read_bytes()
    assert commands[-3:] == ["bash \"$script\" <<'VERIFY_PLAN'", "user ubuntu", "VERIFY_PLAN"]


class _Any:
    def __eq__(self, other: object) -> bool:
        return True


# -- the command line --------------------------------------------------------------------------------------
def test_verify_prints_a_table_and_exits_1_on_a_failure(aws, capsys, monkeypatch):
    from commands import ops

    failing = [CheckResult("slurm", "PASS", 0, "partitions up: debug"), CheckResult("srun:debug", "FAIL", 901,
                                                                                   "srun -p debug -N 2 failed")]
    monkeypatch.setattr(ops, "verify", lambda aws_session, options, stack: failing)
    assert ops.main(["verify"]) == 1
    out = capsys.readouterr().out
    assert "srun:debug  FAIL     901s  srun -p debug -N 2 failed" in out and "2 checks: 1 passed, 1 failed" in out
    assert ops.main(["verify", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)[1] == {"check": "srun:debug", "status": "FAIL", "seconds": 901,
                                                      "evidence": "srun -p debug -N 2 failed"}
    monkeypatch.setattr(ops, "verify", lambda aws_session, options, stack: failing[:1])
    assert ops.main(["verify"]) == 0


def test_table_and_json_agree(aws):
    results = [CheckResult("slurm", "PASS", 1, "ok"), CheckResult("efa:gpu", "SKIP", 0, "no EFA")]
    assert "2 checks: 1 passed, 0 failed, 1 skipped" in table(results)
    assert [CheckResult(**r) for r in json.loads(as_json(results))] == results


def test_the_check_script_is_part_of_the_repository():
    assert CHECK_SCRIPT.is_file() and Path(CHECK_SCRIPT).read_text().startswith("#!/usr/bin/env bash")
