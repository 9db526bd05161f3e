"""`hpc-ops verify`: proves a deployed cluster works, from the stack outputs and the deployed
cluster config, through SSM Run Command on the head node (no SSH, no open ports).

The checks that run on the cluster live in scripts/checks/verify_cluster.sh (tested against a real
local Slurm); what needs the AWS side is done here with the operator's credentials: the S3 half of the
Lustre data-repository round trip, and a job through the job bridge.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import secrets
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from botocore.exceptions import ClientError

from cluster_yaml.sections import action_steps, instance_types, queues
from cluster_yaml.stack_values import DATA_BUCKET_NAME, HEAD_NODE_INSTANCE_ID, HEAD_NODE_USER, JOB_BRIDGE_PREFIX
from ops.cluster import OpsError, Session, _required, outputs, run_shell

CHECK_SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "checks" / "verify_cluster.sh"
# How each ParallelCluster StorageType shows in findmnt on the nodes (OpenZFS, ONTAP and EFS are NFS mounts).
FSTYPES = {"FsxLustre": "lustre", "FsxOpenZfs": "nfs", "FsxOntap": "nfs", "FsxFileCache": "lustre", "Efs": "nfs",
           "Ebs": "ext4"}
# Per run, a name nobody can guess: root on the head node creates the export file, and must never find a
# link a cluster user planted there (nor an import file someone made to fake a pass).
EXPORT_FILE, IMPORT_FILE = ".verify-export-{token}", ".verify-import-{token}"


@dataclass
class CheckResult:
    check: str
    status: str  # PASS, FAIL or SKIP
    seconds: int
    evidence: str


@dataclass
class Options:
    timeout: int = 900  # per check: covers the cold start of a dynamic node
    image: str = "docker://public.ecr.aws/docker/library/alpine:latest"
    nccl_min_busbw: float = 0.0  # GB/s; 0 reports the bandwidth without a threshold
    dra_timeout: int = 600
    job_bridge: bool = True


# -- what to check, from the deployed config -----------------------------------------------------------
def resolve(value: Any, stack_outputs: dict[str, str], refs: dict[str, str] | None = None) -> Any:
    """The intrinsics CDK leaves in the deployed ClusterStack template (cross-stack outputs, Refs to its own
    resources, joins), resolved against PrereqStack's outputs and ClusterStack's physical ids."""
    if isinstance(value, list):
        return [resolve(v, stack_outputs, refs) for v in value]
    if not isinstance(value, dict):
        return value
    if "Fn::GetStackOutput" in value:
        return stack_outputs.get(value["Fn::GetStackOutput"]["OutputName"], "")
    if "Ref" in value and len(value) == 1:
        return (refs or {}).get(value["Ref"], "")
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(str(resolve(p, stack_outputs, refs)) for p in parts)
    return {k: resolve(v, stack_outputs, refs) for k, v in value.items()}


def _instance_types(queue: dict[str, Any]) -> list[str]:
    return [t for resource in queue.get("ComputeResources") or [] for _, t in instance_types(resource)]


def gpus_per_node(aws: Session, types: list[str]) -> dict[str, int]:
    """GPUs of each instance type, as EC2 describes it (0 for none)."""
    if not types:
        return {}
    described = aws.client("ec2").describe_instance_types(InstanceTypes=sorted(set(types)))["InstanceTypes"]
    return {t["InstanceType"]: sum(g.get("Count", 0) for g in (t.get("GpuInfo") or {}).get("Gpus", []))
            for t in described}


def plan_lines(config: dict[str, Any], user: str, exports: list[str], options: Options,
               gpus: dict[str, int] | None = None) -> list[str]:
    """The plan verify_cluster.sh reads (its header documents the format)."""
    lines = [f"user {user}", f"timeout {options.timeout}", f"image {options.image}",
             f"nccl {options.nccl_min_busbw:g}"]
    for queue in queues(config):
        resources = queue.get("ComputeResources") or []
        static = sum(int(r.get("MinCount", 0)) for r in resources)
        maximum = sum(int(r.get("MaxCount", 10)) for r in resources)
        efa = any(str((r.get("Efa") or {}).get("Enabled", "false")).lower() == "true" for r in resources)
        # The fewest GPUs of the queue's types: a job of that many tasks per node fits on any of them.
        gpu = min((gpus or {}).get(t, 0) for t in _instance_types(queue) or [""])
        pyxis = any(str(step.get("Script", "")).endswith("/enable_pyxis.sh") for _, step in action_steps(queue))
        lines.append(f"queue {queue['Name']} {static} {maximum} {int(efa)} {gpu} {int(pyxis)}")
    for storage in config.get("SharedStorage") or []:
        if storage.get("StorageType") in FSTYPES:
            lines.append(f"mount {storage['MountDir']} {FSTYPES[storage['StorageType']]}")
    lines += [f"export {file}" for file in exports]
    return lines


@dataclass
class Association:
    file_system_path: str  # on the Lustre file system
    s3_url: str  # s3://bucket/prefix/
    imports: bool
    exports: bool

    @property
    def bucket_and_prefix(self) -> tuple[str, str]:
        bucket, _, prefix = self.s3_url.removeprefix("s3://").partition("/")
        return bucket, prefix if not prefix or prefix.endswith("/") else prefix + "/"


def associations(prereq_template: dict[str, Any], prereq_ids: dict[str, str]) -> list[Association]:
    """The data repository associations PrereqStack declares, with its physical ids filled in."""
    found = []
    for resource in prereq_template.get("Resources", {}).values():
        if resource.get("Type") != "AWS::FSx::DataRepositoryAssociation":
            continue
        props = resolve(resource["Properties"], {}, prereq_ids)
        policies = props.get("S3") or {}
        found.append(Association(props["FileSystemPath"], props["DataRepositoryPath"],
                                 "AutoImportPolicy" in policies, "AutoExportPolicy" in policies))
    return found


# -- running on the head node --------------------------------------------------------------------------
Runner = Callable[[list[str]], str]  # plan lines -> the script's output


def ssm_command(plan: list[str]) -> list[str]:
    """The AWS-RunShellScript commands that run verify_cluster.sh with PLAN on stdin. The script travels
    compressed inside the command (no copy on S3 or the node to keep in sync with this checkout)."""
    encoded = base64.b64encode(gzip.compress(CHECK_SCRIPT.read_bytes(), mtime=0)).decode()
    return ["set -e", "script=$(mktemp)", "trap 'rm -f \"$script\"' EXIT",
            f"echo '{encoded}' | base64 -d | gunzip > \"$script\"",
            "bash \"$script\" <<'VERIFY_PLAN'", *plan, "VERIFY_PLAN"]


def ssm_runner(aws: Session, instance_id: str, timeout: int, poll: float = 5.0,
               sleep: Callable[[float], None] = time.sleep) -> Runner:
    """Runs verify_cluster.sh on the head node through SSM Run Command (as root; it drops to the user)."""

    def run(plan: list[str]) -> str:
        status, output, errors = run_shell(aws, instance_id, ssm_command(plan), timeout * 12, "hpc-ops verify",
                                           poll, sleep)
        if status != "Success" and "RESULT\t" not in output:
            raise OpsError(f"the checks did not run on {instance_id} ({status}): {errors[-500:]}")
        return output

    return run


def parse(output: str) -> list[CheckResult]:
    results = []
    for line in output.splitlines():
        parts = line.split("\t", 4)
        if len(parts) == 5 and parts[0] == "RESULT":
            results.append(CheckResult(parts[1], parts[2], int(parts[3]), parts[4]))
    return results


# -- the whole verification ---------------------------------------------------------------------------
@dataclass
class DeployedCluster:
    """What verify reads from CloudFormation: both stacks' outputs, templates and physical ids."""
    cluster_outputs: dict[str, str]
    prereq_outputs: dict[str, str]
    template: dict[str, Any]  # the cluster stack's
    physical_ids: dict[str, str]
    prereq_template: dict[str, Any]
    prereq_ids: dict[str, str]

    @property
    def config(self) -> dict[str, Any]:
        """The cluster config as deployed (the custom resource's ClusterConfiguration, resolved)."""
        [resource] = [r for r in self.template["Resources"].values() if r["Type"] == "Custom::PclusterCluster"]
        return resolve(resource["Properties"]["ClusterConfiguration"], self.prereq_outputs, self.physical_ids)


def deployed_cluster(aws: Session, stack: str = "ClusterStack") -> DeployedCluster:
    cloudformation = aws.client("cloudformation")

    def template_and_ids(name: str) -> tuple[dict[str, Any], dict[str, str]]:
        body = cloudformation.get_template(StackName=name, TemplateStage="Original")["TemplateBody"]
        ids = {r["LogicalResourceId"]: r.get("PhysicalResourceId", "") for page in
               cloudformation.get_paginator("list_stack_resources").paginate(StackName=name)
               for r in page["StackResourceSummaries"]}
        return body if isinstance(body, dict) else json.loads(body), ids

    return DeployedCluster(outputs(aws, stack), outputs(aws, "PrereqStack"), *template_and_ids(stack),
                           *template_and_ids("PrereqStack"))


def verify(aws: Session, options: Options, runner: Runner | None = None,
           sleep: Callable[[float], None] = time.sleep, deployed: DeployedCluster | None = None,
           stack: str = "ClusterStack") -> list[CheckResult]:
    deployed = deployed or deployed_cluster(aws, stack)
    instance_id = _required(deployed.cluster_outputs, HEAD_NODE_INSTANCE_ID, stack)
    user = deployed.cluster_outputs.get(HEAD_NODE_USER, "ec2-user")
    config = deployed.config
    gpus = gpus_per_node(aws, [t for q in queues(config) for t in _instance_types(q)])
    run = runner or ssm_runner(aws, instance_id, options.timeout, sleep=sleep)
    lustre = next((s["MountDir"] for s in config.get("SharedStorage") or [] if s.get("StorageType") == "FsxLustre"),
                  None)
    links = associations(deployed.prereq_template, deployed.prereq_ids) if lustre else []
    token = secrets.token_hex(8)
    exports = [f"{lustre}{a.file_system_path}/{EXPORT_FILE.format(token=token)}" for a in links if a.exports]
    results = parse(run(plan_lines(config, user, exports, options, gpus)))
    results += _data_repositories(aws, links, lustre, config, user, options, run, sleep, token)
    if options.job_bridge:
        results.append(_job_bridge(aws, deployed.cluster_outputs, deployed.prereq_outputs, options, sleep))
    return results


def _data_repositories(aws: Session, links: list[Association], lustre: str | None, config: dict[str, Any],
                       user: str, options: Options, run: Runner, sleep: Callable[[float], None],
                       token: str) -> list[CheckResult]:
    """The S3 half of the round trip: the files the head node wrote under exporting associations reach S3;
    objects put under importing prefixes reach /fsx (the head node waits for them). Then both are removed."""
    if not links:
        return [CheckResult("data-repository", "SKIP", 0, "no Lustre data repository association")]
    s3 = aws.client("s3")
    results = []
    for link in (a for a in links if a.exports):
        bucket, prefix = link.bucket_and_prefix
        key = f"{prefix}{EXPORT_FILE.format(token=token)}"
        started = time.monotonic()
        while True:
            try:
                s3.head_object(Bucket=bucket, Key=key)
                results.append(CheckResult(f"export:{lustre}{link.file_system_path}", "PASS",
                                           int(time.monotonic() - started), f"s3://{bucket}/{key} arrived"))
                break
            except ClientError as error:
                if error.response["Error"]["Code"] not in ("404", "NoSuchKey", "NotFound"):
                    results.append(CheckResult(f"export:{lustre}{link.file_system_path}", "FAIL", 0,
                                               f"cannot read s3://{bucket}/{key}: {error}"))
                    break
            if time.monotonic() - started >= options.dra_timeout:
                results.append(CheckResult(f"export:{lustre}{link.file_system_path}", "FAIL",
                                           int(time.monotonic() - started),
                                           f"s3://{bucket}/{key} did not appear within {options.dra_timeout}s"))
                break
            sleep(5)
    awaits, removes, objects = [], [], []
    for link in links:
        bucket, prefix = link.bucket_and_prefix
        names = ([EXPORT_FILE] if link.exports else []) + ([IMPORT_FILE] if link.imports else [])
        for name in (n.format(token=token) for n in names):
            removes.append(f"remove {lustre}{link.file_system_path}/{name}")
            objects.append((bucket, f"{prefix}{name}"))
        if link.imports:
            name = IMPORT_FILE.format(token=token)
            s3.put_object(Bucket=bucket, Key=f"{prefix}{name}", Body=b"written by hpc-ops verify\n")
            awaits.append(f"await {lustre}{link.file_system_path}/{name}")
    base = plan_lines(config, user, [], Options(timeout=options.dra_timeout))
    results += parse(run([*base, *awaits, *removes, "only awaits,removes"]))
    for bucket, key in objects:  # what the associations did not delete already
        try:
            s3.delete_object(Bucket=bucket, Key=key)
        except ClientError:
            pass  # cleanup only: a leftover marker file is harmless
    return results


def _job_bridge(aws: Session, cluster: dict[str, str], prereq: dict[str, str], options: Options,
                sleep: Callable[[float], None]) -> CheckResult:
    from job_bridge.client import JobBridgeError, JobStore, submitter_prefix

    if not cluster.get(JOB_BRIDGE_PREFIX):
        return CheckResult("job-bridge", "SKIP", 0, "the job bridge is off (context job_bridge)")
    try:  # as the caller's role: its own folder under the prefix
        prefix = submitter_prefix(cluster[JOB_BRIDGE_PREFIX], aws.client("sts"))
    except JobBridgeError as error:
        return CheckResult("job-bridge", "FAIL", 0, f"cannot submit: {error}")
    store = JobStore(aws.client("s3"), _required(prereq, DATA_BUCKET_NAME, "PrereqStack"), prefix)
    name = f"verify-{int(time.time())}"
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / name
        folder.mkdir()
        (folder / "job-aws-run.sh").write_text("#!/bin/bash\nhostname > verified.txt\n")
        try:
            with open(os.devnull, "w") as quiet:
                store.submit(folder, name, stream=quiet)
        except JobBridgeError as error:
            return CheckResult("job-bridge", "FAIL", 0, f"cannot submit (is your role in job_bridge_submitters?): "
                                                        f"{error}")
    state = "FILE_UPLOAD"
    while time.monotonic() - started < options.timeout:
        state = store.status(name)["state"]
        if state in ("JOB_COMPLETE", "JOB_FAILED", "JOB_ERROR"):
            break
        sleep(5)
    status = "PASS" if state == "JOB_COMPLETE" else "FAIL"
    return CheckResult("job-bridge", status, int(time.monotonic() - started),
                       f"s3://{store.bucket}/{store.key(name)}: {state}")


def table(results: list[CheckResult]) -> str:
    width = max([len(r.check) for r in results] + [5])
    lines = [f"{'check':{width}}  result  time   evidence", f"{'-' * width}  ------  -----  --------"]
    lines += [f"{r.check:{width}}  {r.status:6}  {r.seconds:4}s  {r.evidence}" for r in results]
    failed = sum(r.status == "FAIL" for r in results)
    lines.append(f"{len(results)} checks: {sum(r.status == 'PASS' for r in results)} passed, {failed} failed, "
                 f"{sum(r.status == 'SKIP' for r in results)} skipped")
    return "\n".join(lines)


def as_json(results: list[CheckResult]) -> str:
    return json.dumps([asdict(r) for r in results], indent=2)
