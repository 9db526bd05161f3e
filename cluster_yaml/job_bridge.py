"""Adds the job bridge (on-premises job submission through S3) to a cluster config: the head node may
write and list the job prefix and use SSM, slurmctld runs the bridge's epilog, and every queue's nodes
create the submitters' job users (``job_users.sh``, first in OnNodeStart: ParallelCluster's
documentation names that event for creating users, it runs before the scheduler is configured).
Applied to the YAML data before rendering, so the rendered snapshot and every check see exactly what is
deployed.

The bridge is installed on the head node by an SSM association (hpc_constructs/job_bridge.py), which
also creates the job users there, not by a node action: a head node's OnNodeConfigured cannot change
on update. A queue's custom actions can (QueueUpdateStrategy). A login pool's OnNodeConfigured cannot
either, and jobs never run on login nodes, so login nodes do not get the job users (their uids are in
a range no login user holds: job_bridge/submitters.py).
"""

from __future__ import annotations

import copy
from typing import Any

from cluster_yaml.document import ConfigDocument
from cluster_yaml.node_actions import event_steps
from job_bridge.submitters import Submitter

EPILOG = "/opt/job-bridge/epilog"
SSM_POLICY = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"  # Run Command reaches the head node
LIST_POLICY = "${JobBridgeListPolicy}"  # hpc_constructs.job_bridge: s3:ListBucket on the job prefix
USERS_SCRIPT = "job_users.sh"
# The login user ParallelCluster's official AMIs create, by Image.Os prefix.
OS_USERS = (("ubuntu", "ubuntu"), ("rocky", "rocky"), ("alinux", "ec2-user"), ("rhel", "ec2-user"))


def default_user(config: dict[str, Any]) -> str:
    os_name = str((config.get("Image") or {}).get("Os", ""))
    return next((user for prefix, user in OS_USERS if os_name.startswith(prefix)), "ec2-user")


UNINSTALL_STEP = {"Script": "${NodeAction:job_bridge.sh}", "Args": ["uninstall"]}


def without_job_bridge(document: ConfigDocument) -> ConfigDocument:
    """A cluster without the bridge: its head node's OnNodeUpdated (run live on every update) removes what an earlier
    install put there (sweep timer, sudoers rule, epilog wrapper), so turning the bridge off leaves nothing behind.
    Idempotent and a no-op where the bridge never ran; the app cannot know offline whether it ever did."""
    data = copy.deepcopy(document.data)
    head = data.setdefault("HeadNode", {})
    actions = head.setdefault("CustomActions", {})
    steps = event_steps(actions.get("OnNodeUpdated"))
    if UNINSTALL_STEP not in steps:
        actions["OnNodeUpdated"] = {"Sequence": [*steps, copy.deepcopy(UNINSTALL_STEP)]}
    _readable_scripts(head)
    return ConfigDocument(source=document.source, data=data, lines=document.lines)


def _readable_scripts(section: dict[str, Any]) -> None:
    """The section's nodes may read the node-action scripts (unless the config grants it already)."""
    iam = section.setdefault("Iam", {})
    readable = [a.get("BucketName") for a in iam.get("S3Access") or []]
    readable += [p.get("Policy") for p in iam.get("AdditionalIamPolicies") or []]
    if "${ScriptsBucket}" not in readable and "${NodeActionsReadPolicy}" not in readable:
        iam.setdefault("S3Access", []).append({"BucketName": "${ScriptsBucket}"})


def users_step(submitters: tuple[Submitter, ...]) -> dict[str, Any]:
    return {"Script": f"${{NodeAction:{USERS_SCRIPT}}}", "Args": [s.spec for s in submitters]}


def _add_users_step(queue: dict[str, Any], step: dict[str, Any]) -> None:
    """First in the queue's OnNodeStart: the users exist before slurmd and anything else on the node runs."""
    actions = queue.setdefault("CustomActions", {})
    actions["OnNodeStart"] = {"Sequence": [step, *event_steps(actions.get("OnNodeStart"))]}
    _readable_scripts(queue)


def with_job_bridge(document: ConfigDocument, prefix: str, submitters: tuple[Submitter, ...] = ()) -> ConfigDocument:
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
    for queue in data["Scheduling"].get("SlurmQueues") or []:
        if isinstance(queue, dict):
            _add_users_step(queue, users_step(submitters))
    return ConfigDocument(source=document.source, data=data, lines=document.lines)
