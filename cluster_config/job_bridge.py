"""Adds the job bridge (seed 004) to a cluster config: the head node may write and list the job
prefix and use SSM, and slurmctld runs the bridge's epilog. Applied to the YAML data before
rendering, so the rendered snapshot and every check see exactly what is deployed.

The bridge is installed by an SSM association (hpc_constructs/job_bridge.py), not by a node action:
a head node's OnNodeConfigured cannot change on update, and every change made here can.
"""

from __future__ import annotations

import copy
from typing import Any

from cluster_config.document import ConfigDocument

EPILOG = "/opt/job-bridge/epilog"
SSM_POLICY = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"  # Run Command reaches the head node
LIST_POLICY = "${JobBridgeListPolicy}"  # hpc_constructs.job_bridge: s3:ListBucket on the job prefix
# The login user ParallelCluster's official AMIs create, by Image.Os prefix.
OS_USERS = (("ubuntu", "ubuntu"), ("rocky", "rocky"), ("alinux", "ec2-user"), ("rhel", "ec2-user"))


def default_user(config: dict[str, Any]) -> str:
    os_name = str((config.get("Image") or {}).get("Os", ""))
    return next((user for prefix, user in OS_USERS if os_name.startswith(prefix)), "ec2-user")


def with_job_bridge(document: ConfigDocument, prefix: str) -> ConfigDocument:
    data = copy.deepcopy(document.data)
    iam = data.setdefault("HeadNode", {}).setdefault("Iam", {})
    access = iam.setdefault("S3Access", [])
    if not any(a.get("BucketName") == "${ScriptsBucket}" for a in access):
        access.append({"BucketName": "${ScriptsBucket}"})  # the SSM association fetches job_bridge.sh there
    access.append({"BucketName": "${DataBucketName}", "KeyName": f"{prefix}*", "EnableWriteAccess": True})
    policies = iam.setdefault("AdditionalIamPolicies", [])
    for policy in (SSM_POLICY, LIST_POLICY):
        if not any(p.get("Policy") == policy for p in policies):
            policies.append({"Policy": policy})
    slurm = data.setdefault("Scheduling", {}).setdefault("SlurmSettings", {})
    slurm.setdefault("CustomSlurmSettings", []).append({"EpilogSlurmctld": EPILOG})
    return ConfigDocument(source=document.source, data=data, lines=document.lines)
