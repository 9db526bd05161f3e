"""What `cdk destroy` does, simulated on the synthesized templates with the rules of deletion_rules.yaml:
CloudFormation's delete order and DeletionPolicy, what a remaining resource holds (a kept file system's
network interfaces hold its subnets and security groups), what refuses deletion (a protected database, a
bucket with objects), and what a deploy creates outside the templates. The plan printed to users and the
docs/deploy.md's destroy section are this simulation's output."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from lifecycle.templates import cluster_stacks, exports_in_use, references

# Deleted first: the cluster stacks depend on PrereqStack (they import its exports), so the CLI destroys them first.
DESTROY_ORDER = ("ClusterStack", "PrereqStack")
RULES_FILE = Path(__file__).with_name("deletion_rules.yaml")

REMOVE_BY_HAND = {
    "AWS::S3::Bucket": "aws s3 rb s3://{id} --force   (deletes every object version)",
    "AWS::FSx::FileSystem": "aws fsx delete-file-system --file-system-id {id}   (Lustre: add --lustre-configuration "
                            "SkipFinalBackup=false to keep a final backup; OpenZFS: --open-zfs-configuration "
                            "SkipFinalBackup=false)",
    "AWS::FSx::DataRepositoryAssociation": "aws fsx delete-data-repository-association --association-id {id} "
                                           "--no-delete-data-in-file-system",
    "AWS::S3::BucketPolicy": "goes with its bucket",
    "AWS::EC2::SecurityGroup": "aws ec2 delete-security-group --group-id {id}",
    "AWS::EC2::Subnet": "aws ec2 delete-subnet --subnet-id {id}",
    "AWS::EC2::VPC": "aws ec2 delete-vpc --vpc-id {id}",
    "AWS::SecretsManager::Secret": "aws secretsmanager delete-secret --secret-id {id}",
    "AWS::Logs::LogGroup": "aws logs delete-log-group --log-group-name {id}",
    "AWS::EC2::KeyPair": "aws ec2 delete-key-pair --key-name {id}",
}
LABELS = {"Custom::PclusterCluster": "the ParallelCluster cluster (ParallelCluster deletes its head and compute "
                                     "nodes and its own stack)",
          "AWS::CloudFormation::Stack": "nested stack (the ParallelCluster provider)"}
DELETED, KEPT, SNAPSHOT, FAILED = "deleted", "kept", "deleted after a final snapshot", "DELETE_FAILED"


@lru_cache(maxsize=1)
def rules() -> dict[str, Any]:
    return yaml.safe_load(RULES_FILE.read_text())


@dataclass(frozen=True)
class Item:
    stack: str
    logical_id: str
    type: str
    outcome: str
    reason: str = ""
    physical_id: str | None = None

    @property
    def kept(self) -> bool:
        """Still in the account after the destroy (kept by its DeletionPolicy, or failed to delete)."""
        return self.outcome in (KEPT, FAILED)

    def describe(self) -> str:
        return f"{self.stack}/{self.logical_id}: {LABELS.get(self.type, self.type)}"

    def removal_command(self) -> str | None:
        template = REMOVE_BY_HAND.get(self.type)
        return template.format(id=self.physical_id or f"<physical id of {self.logical_id}>") if template else None


@dataclass
class Outcome:
    items: list[Item]
    outside: list[dict[str, str]] = field(default_factory=list)
    order: tuple[str, ...] = DESTROY_ORDER  # the stacks, in the order `cdk destroy` deletes them

    @property
    def completes(self) -> bool:
        return not [i for i in self.items if i.outcome == FAILED]

    @property
    def remaining(self) -> list[Item]:
        return [i for i in self.items if i.kept]

    def data_deleted(self) -> list[Item]:
        """Resources holding what users stored that the destroy deletes (a final snapshot keeps the data)."""
        holds = rules()["holds_data"]
        return [i for i in self.items if i.outcome == DELETED and i.type in holds["types"]
                and not i.logical_id.startswith(tuple(holds["rebuilt_by_deploy"]))]


def simulate(templates: dict[str, dict[str, Any] | None],
             physical_ids: dict[str, dict[str, str]] | None = None) -> Outcome:
    """The destroy of the app's stacks, stack by stack, each resource after everything that references it."""
    items: list[Item] = []
    order = destroy_order(templates)
    for stack in order:
        resources = (templates.get(stack) or {}).get("Resources", {})
        remaining: dict[str, dict[str, Any]] = {}
        for logical in _deletion_order(resources):
            resource = resources[logical]
            outcome, reason = _delete(logical, resource, resources, remaining)
            if outcome in (KEPT, FAILED):
                remaining[logical] = resource
            items.append(Item(stack, logical, resource["Type"], outcome, reason,
                              (physical_ids or {}).get(stack, {}).get(logical)))
    return Outcome(items, _outside(templates), order)


def destroy_order(templates: dict[str, Any]) -> tuple[str, ...]:
    """Every cluster stack (ClusterStack first, then by name), then PrereqStack."""
    return (*cluster_stacks(templates), "PrereqStack")


def refused_stack_deletions(templates: dict[str, dict[str, Any] | None], destroyed: tuple[str, ...]) -> list[str]:
    """Why CloudFormation refuses to delete each of ``destroyed`` (e.g. ``cdk destroy --exclusively PrereqStack``, or
    a delete from the console): an export a stack that stays imports (deletion_rules.yaml, exports_in_use)."""
    staying = {name: t for name, t in templates.items() if name not in destroyed}
    refused = []
    for (stack, export), importers in sorted(exports_in_use(templates).items()):
        kept_importers = sorted(importers & set(staying))
        if stack in destroyed and kept_importers:
            refused.append(f"{stack}: {rules()['exports_in_use']['because']} ({export}, imported by "
                           f"{', '.join(kept_importers)})")
    return refused


def _dependencies(resource: dict[str, Any]) -> set[str]:
    depends = resource.get("DependsOn", [])
    found = references(resource.get("Properties", {})) | set([depends] if isinstance(depends, str) else depends)
    for text in _sub_strings(resource.get("Properties", {})):
        found |= {name.split(".")[0] for name in re.findall(r"\$\{([^}!]+)\}", text) if not name.startswith("AWS::")}
    return found


def _sub_strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        found = []
        if "Fn::Sub" in value:
            sub = value["Fn::Sub"]
            found.append(sub if isinstance(sub, str) else sub[0])
        for item in value.values():
            found += _sub_strings(item)
        return found
    if isinstance(value, list):
        return [text for item in value for text in _sub_strings(item)]
    return []


def _deletion_order(resources: dict[str, Any]) -> list[str]:
    """Reverse of creation order: a resource comes after every resource that references it."""
    created: list[str] = []
    seen: set[str] = set()

    def visit(logical: str) -> None:
        if logical in seen or logical not in resources:
            return
        seen.add(logical)
        for dependency in sorted(_dependencies(resources[logical])):
            visit(dependency)
        created.append(logical)

    for logical in resources:
        visit(logical)
    return [logical for logical in reversed(created) if resources[logical]["Type"] != "AWS::CDK::Metadata"]


def _delete(logical: str, resource: dict[str, Any], resources: dict[str, Any],
            remaining: dict[str, dict[str, Any]]) -> tuple[str, str]:
    policies = rules()["deletion_policies"]
    policy = resource.get("DeletionPolicy", "Delete")
    if policy in policies["kept"]:
        return KEPT, f"DeletionPolicy {policy}"
    for holder_id, holder in remaining.items():
        for rule in rules()["holds"]:
            if holder["Type"] == rule["type"] and any(
                    logical in references(value) for path in rule["through"]
                    for value in _values(holder.get("Properties", {}), path)):
                return FAILED, f"still held by {holder_id}: {rule['because']}"
    for rule in rules()["refuses"]:
        if resource["Type"] != rule["type"]:
            continue
        when = rule.get("when", {})
        if when and all(str(resource.get("Properties", {}).get(k)).lower() == str(v).lower() for k, v in when.items()):
            return FAILED, rule["because"]
        emptier = rule.get("unless_emptied_by")
        if emptier and not any(r["Type"] == emptier and logical in references(r.get("Properties", {}))
                               for r in resources.values()):
            return FAILED, rule["because"]
    if policy == "Snapshot" and resource["Type"] in policies["snapshot_types"]:
        return SNAPSHOT, "DeletionPolicy Snapshot"
    return DELETED, ""


def _values(properties: dict[str, Any], path: str) -> list[Any]:
    """Values at ``A.B`` (B of every item of the list A, or of the mapping A)."""
    current: list[Any] = [properties]
    for step in path.split("."):
        following = []
        for node in current:
            for item in (node if isinstance(node, list) else [node]):
                if isinstance(item, dict) and step in item:
                    following.append(item[step])
        current = following
    return current


def _outside(templates: dict[str, dict[str, Any] | None]) -> list[dict[str, str]]:
    all_resources = [r for t in templates.values() for r in (t or {}).get("Resources", {}).values()]
    databases = [r for r in all_resources if r["Type"] == "AWS::RDS::DBCluster"]
    configs = [r.get("Properties", {}).get("ClusterConfiguration", {}) for r in all_resources
               if r["Type"] == "Custom::PclusterCluster"]
    conditions = {
        "always": bool(configs),
        "cluster_logs": any(_cluster_logs_kept(c) for c in configs),
        "slurm_accounting": bool(databases),
        "slurm_accounting_kept": any(r.get("DeletionPolicy") == "Snapshot" for r in databases),
    }
    return [row for row in rules()["outside_templates"] if conditions[row["when"]]]


def _cluster_logs_kept(config: Any) -> bool:
    """ParallelCluster's CloudWatch logs: on unless disabled, kept on delete unless DeletionPolicy Delete."""
    cloudwatch = ((config.get("Monitoring") or {}).get("Logs") or {}).get("CloudWatch") or {} \
        if isinstance(config, dict) else {}
    return str(cloudwatch.get("Enabled", "true")).lower() != "false" and \
        str(cloudwatch.get("DeletionPolicy", "Retain")) == "Retain"


def to_text(items: list[Item] | Outcome) -> str:
    outcome = items if isinstance(items, Outcome) else Outcome(items)
    first = "ClusterStack first" if outcome.order == DESTROY_ORDER else "the cluster stacks first"
    lines = [f"`cdk destroy {' '.join(outcome.order)}` ({first}) "
             + ("completes." if outcome.completes else "FAILS (DELETE_FAILED):")]
    for item in outcome.items:
        if item.outcome == FAILED:
            lines.append(f"  {item.describe()}: {item.reason}")
    lines.append("It DELETES:")
    for stack in outcome.order:
        summary: dict[str, int] = {}
        for item in outcome.items:
            if item.stack == stack and item.outcome in (DELETED, SNAPSHOT):
                label = LABELS.get(item.type, item.type) + (f" ({SNAPSHOT})" if item.outcome == SNAPSHOT else "")
                summary[label] = summary.get(label, 0) + 1
        lines += [f"  {stack}: {label}" + (f" x{n}" if n > 1 else "") for label, n in summary.items()]
    lines.append("and KEEPS (data and cost stay until you remove them, in this order):")
    kept = [i for i in outcome.items if i.outcome == KEPT]
    for number, item in enumerate(kept, 1):
        lines.append(f"  {number}. {item.describe()}")
        command = item.removal_command()
        if command:
            lines.append(f"      remove: {command}")
    if not kept:
        lines.append("  nothing from the templates (destroy_data_on_delete=true)")
    if outcome.outside:
        lines.append("and, outside the templates:")
        for row in outcome.outside:
            lines.append(f"  - {row['what']}")
            lines.append(f"      remove: {row['remove']}")
    return "\n".join(lines) + "\n"


def deployed_physical_ids(stacks: tuple[str, ...] = DESTROY_ORDER) -> dict[str, dict[str, str]]:
    import boto3
    from botocore.exceptions import ClientError

    client = boto3.client("cloudformation")
    result: dict[str, dict[str, str]] = {}
    for stack in stacks:
        try:
            resources = client.describe_stack_resources(StackName=stack)["StackResources"]
        except ClientError:
            continue
        result[stack] = {r["LogicalResourceId"]: r.get("PhysicalResourceId", "") for r in resources}
    return result
