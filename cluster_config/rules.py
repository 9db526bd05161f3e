"""Project rules: what ParallelCluster only checks online (after calling EC2/FSx), checked offline.

ParallelCluster's schema catches unknown keys, types and id formats; these rules catch the rest of
what would otherwise fail 20 minutes into a deploy. Each returns errors naming the file, line, key
and fix. Limits and name patterns are ParallelCluster's own (pcluster/constants.py, cluster_validators.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

from cluster_config.document import ConfigDocument, YamlPath
from settings.errors import ConfigError

MAX_QUEUES = 50
MAX_COMPUTE_RESOURCES_PER_QUEUE = 50
MAX_COMPUTE_RESOURCES_PER_CLUSTER = 50
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,24}$")
CLUSTER_NAME_PATTERN = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]*$")
CLUSTER_NAME_MAX, CLUSTER_NAME_MAX_WITH_ACCOUNTING = 60, 40
# The custom resource must finish within CloudFormation's 1 h; ParallelCluster needs ~10 min
# around the head node's bootstrap (its own stack, the wait condition, compute fleet start).
MAX_HEAD_NODE_BOOTSTRAP_SECONDS = 2700
ENROOT_SCRIPT = "enable_pyxis.sh"
S3_READ_POLICIES = ("AmazonS3ReadOnlyAccess", "AmazonS3FullAccess")
EFA_TYPES_FILE = Path(__file__).with_name("efa_instance_types.txt")


@lru_cache(maxsize=1)
def efa_instance_types() -> frozenset[str]:
    lines = EFA_TYPES_FILE.read_text().splitlines()
    return frozenset(line.strip() for line in lines if line.strip() and not line.startswith("#"))


@dataclass(frozen=True)
class RuleContext:
    cluster_security_group: str
    scripts_bucket: str
    region: str
    cluster_name: str


def truthy(value: Any) -> bool:
    return str(value).strip().lower() == "true"


def as_int(value: Any, default: int) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return default  # the schema reports non-integers


def _dig(data: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(data, dict):
            data = data.get(key)
        elif isinstance(data, list) and isinstance(key, int) and key < len(data):
            data = data[key]
        else:
            return None
    return data


def _queues(config: dict[str, Any]) -> list[dict[str, Any]]:
    queues = _dig(config, "Scheduling", "SlurmQueues")
    return [q for q in queues if isinstance(q, dict)] if isinstance(queues, list) else []


def _compute_resources(queue: dict[str, Any]) -> list[dict[str, Any]]:
    resources = queue.get("ComputeResources")
    return [c for c in resources if isinstance(c, dict)] if isinstance(resources, list) else []


def _instance_types(resource: dict[str, Any]) -> list[str]:
    if resource.get("InstanceType"):
        return [str(resource["InstanceType"])]
    return [str(i.get("InstanceType")) for i in resource.get("Instances") or [] if isinstance(i, dict)]


QUEUES: YamlPath = ("Scheduling", "SlurmQueues")


def check_rules(document: ConfigDocument, config: dict[str, Any], context: RuleContext) -> list[ConfigError]:
    """All project rules on a config rendered with validation dummies."""
    errors: list[ConfigError] = []
    for rule in (_limits, _names, _counts, _efa, _placement_groups, _security_groups, _mount_dirs,
                 _enroot_paths, _node_action_access, _bootstrap_timeout, _cluster_name, _region):
        errors.extend(rule(document, config, context))
    return errors


def _limits(doc: ConfigDocument, config: dict[str, Any], _: RuleContext) -> Iterator[ConfigError]:
    queues = _queues(config)
    if len(queues) > MAX_QUEUES:
        yield doc.error(QUEUES, f"has {len(queues)} queues; ParallelCluster allows {MAX_QUEUES}",
                        "merge queues or split the workload across clusters")
    total = 0
    for qi, queue in enumerate(queues):
        count = len(_compute_resources(queue))
        total += count
        if count > MAX_COMPUTE_RESOURCES_PER_QUEUE:
            yield doc.error((*QUEUES, qi, "ComputeResources"),
                            f"has {count} compute resources; ParallelCluster allows {MAX_COMPUTE_RESOURCES_PER_QUEUE}"
                            " per queue", "use Instances: [...] lists (flexible instance types) or more queues")
    if total > MAX_COMPUTE_RESOURCES_PER_CLUSTER:
        yield doc.error(QUEUES, f"has {total} compute resources in all; ParallelCluster allows "
                        f"{MAX_COMPUTE_RESOURCES_PER_CLUSTER} per cluster",
                        "group instance types with Instances: [...] in fewer compute resources")


def _names(doc: ConfigDocument, config: dict[str, Any], _: RuleContext) -> Iterator[ConfigError]:
    fix = "use up to 25 lowercase letters, digits and hyphens, starting with a letter (e.g. compute-gpu)"
    seen_queues: dict[str, int] = {}
    for qi, queue in enumerate(_queues(config)):
        name = str(queue.get("Name", ""))
        path = (*QUEUES, qi, "Name")
        if not NAME_PATTERN.match(name) or name == "default":
            yield doc.error(path, "is not a valid Slurm queue name", fix, value=name, has_value=True)
        if name in seen_queues:
            yield doc.error(path, f"duplicates the name of queue {seen_queues[name]}", "give every queue its own Name",
                            value=name, has_value=True)
        seen_queues.setdefault(name, qi)
        seen_resources: dict[str, int] = {}
        for ci, resource in enumerate(_compute_resources(queue)):
            cr_name = str(resource.get("Name", ""))
            cr_path = (*QUEUES, qi, "ComputeResources", ci, "Name")
            if not NAME_PATTERN.match(cr_name):
                yield doc.error(cr_path, "is not a valid compute resource name", fix, value=cr_name, has_value=True)
            if cr_name in seen_resources:
                yield doc.error(cr_path, f"duplicates compute resource {seen_resources[cr_name]} of queue {name}",
                                "give every compute resource of a queue its own Name", value=cr_name, has_value=True)
            seen_resources.setdefault(cr_name, ci)


def _counts(doc: ConfigDocument, config: dict[str, Any], _: RuleContext) -> Iterator[ConfigError]:
    for qi, queue in enumerate(_queues(config)):
        for ci, resource in enumerate(_compute_resources(queue)):
            low, high = as_int(resource.get("MinCount", 0), 0), as_int(resource.get("MaxCount", 10), 10)
            if low > high:
                yield doc.error((*QUEUES, qi, "ComputeResources", ci, "MinCount"),
                                f"MinCount {low} is greater than MaxCount {high}",
                                "set MinCount <= MaxCount (equal values keep a static fleet)")


def _efa(doc: ConfigDocument, config: dict[str, Any], _: RuleContext) -> Iterator[ConfigError]:
    capable = efa_instance_types()
    for qi, queue in enumerate(_queues(config)):
        for ci, resource in enumerate(_compute_resources(queue)):
            if not truthy(_dig(resource, "Efa", "Enabled")):
                continue
            for instance_type in _instance_types(resource):
                if instance_type not in capable:
                    yield doc.error((*QUEUES, qi, "ComputeResources", ci, "Efa", "Enabled"),
                                    f"EFA is enabled but {instance_type} has no EFA interface",
                                    "use an EFA-capable type (e.g. c5n.18xlarge, hpc7a.96xlarge, p5.48xlarge; list in "
                                    "cluster_config/efa_instance_types.txt) or set Efa.Enabled: false")


def _placement_groups(doc: ConfigDocument, config: dict[str, Any], _: RuleContext) -> Iterator[ConfigError]:
    for qi, queue in enumerate(_queues(config)):
        queue_pg = _dig(queue, "Networking", "PlacementGroup") or {}
        capacity_block = str(queue.get("CapacityType", "")).upper() == "CAPACITY_BLOCK"
        for ci, resource in enumerate(_compute_resources(queue)):
            resource_pg = _dig(resource, "Networking", "PlacementGroup")
            pg = resource_pg if isinstance(resource_pg, dict) else queue_pg
            enabled = truthy(pg.get("Enabled")) or bool(pg.get("Id") or pg.get("Name"))
            if not enabled:
                continue
            path = (*QUEUES, qi, "ComputeResources", ci) if resource_pg else (*QUEUES, qi, "Networking",
                                                                                  "PlacementGroup")
            if capacity_block:
                yield doc.error(path, "enables a placement group on a CAPACITY_BLOCK queue",
                                "capacity blocks are already placed together: set PlacementGroup.Enabled: false")
            reservation = resource.get("CapacityReservationTarget") or queue.get("CapacityReservationTarget")
            if reservation and not capacity_block and not (pg.get("Id") or pg.get("Name")):
                yield doc.error(path, "creates a new placement group for a capacity reservation",
                                "the reserved instances cannot join a new group: set PlacementGroup.Enabled: false, "
                                "or give the Name of the group the reservation was made in")


def _has_security_group(networking: Any, group: str) -> bool:
    if not isinstance(networking, dict):
        return False
    listed = list(networking.get("SecurityGroups") or []) + list(networking.get("AdditionalSecurityGroups") or [])
    return group in listed


def _security_groups(doc: ConfigDocument, config: dict[str, Any], ctx: RuleContext) -> Iterator[ConfigError]:
    fix = ("add ${SecurityGroup} to Networking.AdditionalSecurityGroups: the file systems admit only that "
           "group, and EFA needs it on every node")
    if "HeadNode" in config and not _has_security_group(_dig(config, "HeadNode", "Networking"),
                                                        ctx.cluster_security_group):
        yield doc.error(("HeadNode", "Networking"), "does not attach the cluster security group", fix)
    for qi, queue in enumerate(_queues(config)):
        if not _has_security_group(queue.get("Networking"), ctx.cluster_security_group):
            yield doc.error((*QUEUES, qi, "Networking"),
                            f"queue {queue.get('Name')} does not attach the cluster security group", fix)


def _mount_dirs(doc: ConfigDocument, config: dict[str, Any], _: RuleContext) -> Iterator[ConfigError]:
    storage = config.get("SharedStorage") or []
    seen: dict[str, int] = {}
    for si, item in enumerate(storage if isinstance(storage, list) else []):
        mount = str(_dig(item, "MountDir") or "")
        path = ("SharedStorage", si, "MountDir")
        if not mount.startswith("/"):
            yield doc.error(path, "is not an absolute path", "use an absolute mount point such as /fsx",
                            value=mount, has_value=True)
        normalized = mount.rstrip("/") or "/"
        if normalized in seen:
            yield doc.error(path, f"is also the MountDir of SharedStorage[{seen[normalized]}]",
                            "give every shared storage its own mount point", value=mount, has_value=True)
        seen.setdefault(normalized, si)


def _custom_action_sections(config: dict[str, Any]) -> Iterator[tuple[YamlPath, dict[str, Any]]]:
    """(path, section) for the head node and each queue: the places with CustomActions and Iam."""
    if isinstance(config.get("HeadNode"), dict):
        yield ("HeadNode",), config["HeadNode"]
    for qi, queue in enumerate(_queues(config)):
        yield (*QUEUES, qi), queue


def _scripts(section: dict[str, Any]) -> Iterator[tuple[YamlPath, dict[str, Any]]]:
    actions = section.get("CustomActions") or {}
    for event, action in (actions.items() if isinstance(actions, dict) else []):
        if not isinstance(action, dict):
            continue
        if "Script" in action:
            yield ("CustomActions", event), action
        for index, step in enumerate(action.get("Sequence") or []):
            if isinstance(step, dict):
                yield ("CustomActions", event, "Sequence", index), step


def _enroot_paths(doc: ConfigDocument, config: dict[str, Any], _: RuleContext) -> Iterator[ConfigError]:
    mounts = [str(_dig(s, "MountDir") or "").rstrip("/") for s in config.get("SharedStorage") or []
              if isinstance(s, dict)]
    for section_path, section in _custom_action_sections(config):
        for step_path, step in _scripts(section):
            if not str(step.get("Script", "")).endswith(f"/{ENROOT_SCRIPT}"):
                continue
            for ai, arg in enumerate(step.get("Args") or []):
                text = str(arg)
                shared = next((m for m in mounts if m and (text == m or text.startswith(m + "/"))), None)
                if shared:
                    yield doc.error((*section_path, *step_path, "Args", ai),
                                    f"puts Enroot's runtime/cache paths on shared storage {shared}",
                                    "use node-local storage such as /var/enroot or /scratch/enroot: containers "
                                    "unpacked on Lustre or NFS are slow and collide between nodes",
                                    value=text, has_value=True)


def _node_action_access(doc: ConfigDocument, config: dict[str, Any], ctx: RuleContext) -> Iterator[ConfigError]:
    for section_path, section in _custom_action_sections(config):
        uses_scripts = any(str(step.get("Script", "")).startswith(f"s3://{ctx.scripts_bucket}/")
                           for _, step in _scripts(section))
        if not uses_scripts:
            continue
        iam = section.get("Iam") or {}
        buckets = [str(a.get("BucketName")) for a in iam.get("S3Access") or [] if isinstance(a, dict)]
        policies = [str(p.get("Policy", "")) for p in iam.get("AdditionalIamPolicies") or [] if isinstance(p, dict)]
        if ctx.scripts_bucket in buckets or any(p.endswith(S3_READ_POLICIES) for p in policies):
            continue
        yield doc.error((*section_path, "Iam"), "runs ${NodeAction:...} scripts but cannot read them from S3",
                        "add Iam: {S3Access: [{BucketName: ${ScriptsBucket}}]} to this section")


def _bootstrap_timeout(doc: ConfigDocument, config: dict[str, Any], _: RuleContext) -> Iterator[ConfigError]:
    path = ("DevSettings", "Timeouts", "HeadNodeBootstrapTimeout")
    seconds = as_int(_dig(config, *path), 0)
    if seconds > MAX_HEAD_NODE_BOOTSTRAP_SECONDS:
        yield doc.error(path, f"{seconds} s cannot fit in CloudFormation's 1 h custom-resource limit",
                        f"keep it at most {MAX_HEAD_NODE_BOOTSTRAP_SECONDS} s; move slow set-up into a custom AMI")


def _cluster_name(doc: ConfigDocument, config: dict[str, Any], ctx: RuleContext) -> Iterator[ConfigError]:
    accounting = _dig(config, "Scheduling", "SlurmSettings", "Database") is not None
    limit = CLUSTER_NAME_MAX_WITH_ACCOUNTING if accounting else CLUSTER_NAME_MAX
    if len(ctx.cluster_name) > limit:
        why = " with Slurm accounting (SlurmSettings.Database)" if accounting else ""
        yield ConfigError(source="cdk.json or -c", key="context 'cluster_name'", value=ctx.cluster_name,
                          problem=f"is {len(ctx.cluster_name)} characters; ParallelCluster allows {limit}{why}",
                          fix=f"use a name of at most {limit} characters")


def _region(doc: ConfigDocument, config: dict[str, Any], ctx: RuleContext) -> Iterator[ConfigError]:
    if "Region" in config and str(config["Region"]) != ctx.region:
        yield doc.error(("Region",), f"is not the region of the stacks ({ctx.region}, from availability_zone)",
                        "write Region: ${Region} or remove it", value=config["Region"], has_value=True)
