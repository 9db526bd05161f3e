"""Destructive-change guard: would this change replace or delete a resource that holds data?

A resource is replaced when a create-only property changes (from the CloudFormation resource
schemas that cfn-lint ships), or when such a property points at a resource that is itself replaced:
moving a subnet to another zone replaces the subnet, and with it every file system in that subnet.
Stateful resources (file systems, exporting DRAs, buckets, the key pair) may only be replaced or
deleted when the change is acknowledged in cdk.json (``acknowledged_replacements``).

A resource behind an export another stack imports (ClusterStack's PrereqExportsInUse) cannot be replaced
or deleted at all while that stack exists: CloudFormation refuses to change the export
(lifecycle/deletion_rules.yaml, exports_in_use). No acknowledgement helps; the report says what does.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from lifecycle.templates import exports, exports_in_use, references, stack_outputs

STATEFUL_TYPES = ("AWS::FSx::FileSystem", "AWS::S3::Bucket", "AWS::EC2::KeyPair")
# Create-only per the FSx user guide, though the legacy FSx schema does not list them.
EXTRA_CREATE_ONLY = {
    "AWS::FSx::FileSystem": ("/properties/StorageType", "/properties/FileSystemTypeVersion",
                             "/properties/LustreConfiguration/DeploymentType",
                             "/properties/OpenZFSConfiguration/DeploymentType"),
}


@dataclass(frozen=True)
class Replacement:
    stack: str
    logical_id: str
    type: str
    reason: str
    stateful: bool
    refused: str = ""  # why CloudFormation refuses it outright (an export another stack imports)

    @property
    def key(self) -> str:
        return f"{self.stack}/{self.logical_id}"


@lru_cache(maxsize=None)
def create_only_paths(resource_type: str) -> tuple[str, ...]:
    from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

    try:
        schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema("us-east-1", resource_type).schema
        paths = tuple(schema.get("createOnlyProperties", []))
    except Exception:  # noqa: BLE001 - custom resources and unknown types have no schema
        paths = ()
    return paths + EXTRA_CREATE_ONLY.get(resource_type, ())


def _at(properties: dict[str, Any], path: str) -> Any:
    value: Any = {"properties": properties}
    for part in path.strip("/").split("/"):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def is_stateful(resource: dict[str, Any]) -> bool:
    if resource["Type"] == "AWS::FSx::DataRepositoryAssociation":
        # Only an exporting association writes file-system data to S3: losing it loses that link.
        return "AutoExportPolicy" in resource.get("Properties", {}).get("S3", {})
    return resource["Type"] in STATEFUL_TYPES


def targets(value: Any, stack: str, templates: dict[str, dict[str, Any]]) -> set[str]:
    """``Stack/LogicalId`` keys a value points at, following CDK's cross-stack Fn::GetStackOutput."""
    found = {f"{stack}/{rid}" for rid in references(value)}
    for other, name in stack_outputs(value):
        output = (templates.get(other) or {}).get("Outputs", {}).get(name, {})
        found |= targets(output.get("Value"), other, templates)
    return found


def replacements(old: dict[str, dict[str, Any] | None], new: dict[str, dict[str, Any] | None]) -> list[Replacement]:
    """Resources of the ``old`` templates (by stack) that ``new`` deletes or replaces, with the reason. A stack
    ``new`` does not have is left out: `cdk deploy` does not touch a stack gone from the app (a cluster removed
    from the clusters knob is deleted by `cdk destroy <its stack>`, which hpc-destroy-plan describes)."""
    new_templates = {k: v for k, v in new.items() if v}
    old_resources = {f"{stack}/{rid}": r for stack, t in old.items() if stack in new_templates
                     for rid, r in (t or {}).get("Resources", {}).items()}
    new_resources = {f"{stack}/{rid}": r for stack, t in new_templates.items() for rid, r in t.get("Resources", {}).items()}
    found: dict[str, str] = {}
    for key, resource in old_resources.items():
        if key not in new_resources:
            found[key] = "deleted (its logical id is gone from the template)"
        elif new_resources[key]["Type"] != resource["Type"]:
            found[key] = f"type changes to {new_resources[key]['Type']}"
    changed = True
    while changed:  # until no more replacements propagate through references
        changed = False
        for key, resource in old_resources.items():
            if key in found or key not in new_resources:
                continue
            stack = key.split("/", 1)[0]
            before, after = resource.get("Properties", {}), new_resources[key].get("Properties", {})
            for path in create_only_paths(resource["Type"]):
                old_value, new_value = _at(before, path), _at(after, path)
                name = path.removeprefix("/properties/")
                if old_value != new_value:
                    found[key] = f"create-only {name} changes"
                else:
                    upstream = sorted(targets(new_value, stack, new_templates) & set(found))
                    if upstream:
                        found[key] = f"create-only {name} refers to {upstream[0]}, which is replaced"
                if key in found:
                    changed = True
                    break
    refused = _refused(old, found)
    return [Replacement(*key.split("/", 1), old_resources[key]["Type"], reason, is_stateful(old_resources[key]),
                        refused.get(key, "")) for key, reason in found.items()]


def _refused(old: dict[str, dict[str, Any] | None], found: dict[str, str]) -> dict[str, str]:
    """Replaced or deleted resources whose value an imported export carries: ``Stack/LogicalId`` -> why."""
    from lifecycle.destroy_plan import rules

    templates = {k: v for k, v in old.items() if v}
    refused: dict[str, str] = {}
    for (stack, name), importers in exports_in_use(templates).items():
        output = templates[stack]["Outputs"][exports(templates[stack])[name]]
        for key in sorted(targets(output.get("Value"), stack, templates) & set(found)):
            refused.setdefault(key, f"{rules()['exports_in_use']['because']} ({name}, imported by "
                                    f"{', '.join(sorted(importers))})")
    return refused


def unacknowledged(found: list[Replacement], acknowledged: list[str]) -> list[Replacement]:
    return [r for r in found if r.refused or (r.stateful and r.key not in acknowledged)]


def report(found: list[Replacement], acknowledged: list[str]) -> str:
    lines = []
    for item in sorted(found, key=lambda r: (not r.refused, not r.stateful, r.key)):
        status = ("acknowledged" if item.key in acknowledged else "BLOCKED") if item.stateful else "replaced"
        status = "REFUSED" if item.refused else status
        lines.append(f"{status:12} {item.key} ({item.type}): {item.reason}"
                     + (f"; {item.refused}" if item.refused else ""))
    refused = [r for r in found if r.refused]
    if refused:
        lines.append(f"\n{len(refused)} resource(s) a deployed cluster uses would be replaced or deleted: CloudFormation "
                     "refuses that while the cluster's stack exists, whatever is acknowledged (a failed deploy, rolled "
                     "back after the new resources were made). Take the cluster off them first: `cdk destroy "
                     "ClusterStack` (data on /fsx and /home stays), deploy this change, then deploy ClusterStack again.")
    blocked = [r for r in unacknowledged(found, acknowledged) if not r.refused]
    if blocked:
        keys = ", ".join(f'"{r.key}"' for r in blocked)
        lines.append(f"\n{len(blocked)} resource(s) holding data would be replaced or deleted. If that is intended, "
                     f"acknowledge them in cdk.json: \"acknowledged_replacements\": [{keys}]")
    return "\n".join(lines) if lines else "No resource is replaced or deleted."
