"""What `cdk destroy` deletes and what it keeps, read from the synthesized templates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Deleted first: ClusterStack depends on PrereqStack, so the CLI destroys it first.
DESTROY_ORDER = ("ClusterStack", "PrereqStack")

REMOVE_BY_HAND = {
    "AWS::S3::Bucket": "aws s3 rb s3://{id} --force   (deletes every object version)",
    "AWS::FSx::FileSystem": "aws fsx delete-file-system --file-system-id {id}   (Lustre: add --lustre-configuration "
                            "SkipFinalBackup=false to keep a final backup; OpenZFS: --open-zfs-configuration "
                            "SkipFinalBackup=false)",
    "AWS::FSx::DataRepositoryAssociation": "aws fsx delete-data-repository-association --association-id {id} "
                                           "--no-delete-data-in-file-system",
    "AWS::Logs::LogGroup": "aws logs delete-log-group --log-group-name {id}",
    "AWS::EC2::KeyPair": "aws ec2 delete-key-pair --key-name {id}",
}
LABELS = {"Custom::PclusterCluster": "the ParallelCluster cluster (ParallelCluster deletes its head and compute "
                                     "nodes and its own stack)",
          "AWS::CloudFormation::Stack": "nested stack (the ParallelCluster provider)"}


@dataclass(frozen=True)
class Item:
    stack: str
    logical_id: str
    type: str
    kept: bool
    physical_id: str | None = None

    def describe(self) -> str:
        label = LABELS.get(self.type, self.type)
        return f"{self.stack}/{self.logical_id}: {label}"

    def removal_command(self) -> str | None:
        template = REMOVE_BY_HAND.get(self.type)
        return template.format(id=self.physical_id or f"<physical id of {self.logical_id}>") if template else None


def plan(templates: dict[str, dict[str, Any] | None],
         physical_ids: dict[str, dict[str, str]] | None = None) -> list[Item]:
    items = []
    for stack in DESTROY_ORDER:
        for logical_id, resource in ((templates.get(stack) or {}).get("Resources", {})).items():
            if resource["Type"] in ("AWS::CDK::Metadata",):
                continue
            kept = resource.get("DeletionPolicy") in ("Retain", "RetainExceptOnCreate", "Snapshot")
            physical = (physical_ids or {}).get(stack, {}).get(logical_id)
            items.append(Item(stack, logical_id, resource["Type"], kept, physical))
    return items


def to_text(items: list[Item]) -> str:
    kept = [i for i in items if i.kept]
    deleted = [i for i in items if not i.kept]
    lines = ["`cdk destroy ClusterStack PrereqStack` (ClusterStack first) will DELETE:"]
    for stack in DESTROY_ORDER:
        summary: dict[str, int] = {}
        for item in deleted:
            if item.stack == stack:
                label = LABELS.get(item.type, item.type)
                summary[label] = summary.get(label, 0) + 1
        lines += [f"  {stack}: {label}" + (f" x{n}" if n > 1 else "") for label, n in summary.items()]
    lines.append("and KEEP (DeletionPolicy Retain: data and cost stay until you remove them):")
    for item in kept:
        lines.append(f"  {item.describe()}")
        command = item.removal_command()
        if command:
            lines.append(f"      remove by hand: {command}")
    if not kept:
        lines.append("  nothing (destroy_data_on_delete=true)")
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
