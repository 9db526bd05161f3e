"""Adds the job bridge (seed 004) to a cluster config: the head node installs it, may write the
job prefix, and slurmctld runs its epilog. Applied to the YAML data before rendering, so the
rendered snapshot, the schema check and the project rules all see exactly what is deployed."""

from __future__ import annotations

import copy
from typing import Any

from cluster_config.document import ConfigDocument

EPILOG = "/opt/job-bridge/epilog"
SSM_POLICY = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"  # Run Command reaches the head node
# The login user ParallelCluster's official AMIs create, by Image.Os prefix.
OS_USERS = (("ubuntu", "ubuntu"), ("rocky", "rocky"), ("alinux", "ec2-user"), ("rhel", "ec2-user"))


def default_user(config: dict[str, Any]) -> str:
    os_name = str((config.get("Image") or {}).get("Os", ""))
    return next((user for prefix, user in OS_USERS if os_name.startswith(prefix)), "ec2-user")


def with_job_bridge(document: ConfigDocument, prefix: str, user: str = "") -> ConfigDocument:
    data = copy.deepcopy(document.data)
    head = data.setdefault("HeadNode", {})
    actions = head.setdefault("CustomActions", {}).setdefault("OnNodeConfigured", {})
    if "Script" in actions:  # a single script becomes the first step of a sequence
        actions["Sequence"] = [{k: actions.pop(k) for k in ("Script", "Args") if k in actions}]
    actions.setdefault("Sequence", []).append(
        {"Script": "${NodeAction:job_bridge.sh}",
         "Args": ["install", "${DataBucketName}", prefix, user or default_user(data)]})
    iam = head.setdefault("Iam", {})
    access = iam.setdefault("S3Access", [])
    if not any(a.get("BucketName") == "${ScriptsBucket}" for a in access):
        access.append({"BucketName": "${ScriptsBucket}"})
    access.append({"BucketName": "${DataBucketName}", "KeyName": f"{prefix}*", "EnableWriteAccess": True})
    policies = iam.setdefault("AdditionalIamPolicies", [])
    if not any(p.get("Policy") == SSM_POLICY for p in policies):
        policies.append({"Policy": SSM_POLICY})
    slurm = data.setdefault("Scheduling", {}).setdefault("SlurmSettings", {})
    slurm.setdefault("CustomSlurmSettings", []).append({"EpilogSlurmctld": EPILOG})
    return ConfigDocument(source=document.source, data=data, lines=document.lines)
