"""What a cluster update will do, per changed key, with ParallelCluster's own update policies (offline).

The two sides are ClusterConfiguration values taken from CloudFormation templates: a synthesized
cdk.out (this branch, or the base branch for a PR) or the template of the deployed ClusterStack.
Intrinsics are replaced by stable symbols (``{PrereqStack.PublicSubnet…}``), so a value that comes
from PrereqStack compares equal on both sides unless what it points at changed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from cluster_yaml.sidecar import PCLUSTER_PYTHON, ask_once, installed_python

# ParallelCluster update policy name -> what it means for the person running `cdk deploy`.
CATEGORIES = {
    "SUPPORTED": "applied live",
    "IGNORED": "applied live",
    "EXTRA_CHEF_ATTRIBUTES": "applied live",
    "QUEUE_UPDATE_STRATEGY": "needs QueueUpdateStrategy",
    "RESIZE_UPDATE_STRATEGY_ON_REMOVE": "needs QueueUpdateStrategy",
    "MANAGED_PLACEMENT_GROUP": "needs QueueUpdateStrategy",
    "SHARED_STORAGE_UPDATE_POLICY": "needs compute fleet stop",
    "MANAGED_FSX": "needs compute fleet stop",
    "COMPUTE_FLEET_STOP": "needs compute fleet stop",
    "COMPUTE_FLEET_STOP_ON_REMOVE": "needs compute fleet stop",
    "COMPUTE_AND_LOGIN_NODES_STOP": "needs compute fleet stop",
    "LOGIN_NODES_STOP": "needs login nodes stop",
    "LOGIN_NODES_POOL_STOP": "needs login nodes stop",
    "LOGIN_NODES_POOLS": "needs login nodes stop",
    "HEAD_NODE_STOP": "needs head node stop",
    "SUPPORTED_UNLESS_ADC": "applied live",
}
UNSUPPORTED = "unsupported: new cluster needed"
REPLACE_PATH = ("create a new cluster: set -c cluster_name=<new name> (CloudFormation creates it, then deletes the old "
                "one; data on /fsx and /home stays in PrereqStack), or `cdk destroy ClusterStack` and deploy again")
STOP_FLEET_PATH = "stop the fleet first (hpc-ops stop-fleet), deploy, then start it (hpc-ops start-fleet)"
# ParallelCluster refuses to update a cluster created by another version (pcluster/api/controllers/
# cluster_operations_controller.py: "the update can be performed only with the same ParallelCluster version ... used
# to create the cluster"); its documented upgrade is a new cluster.
UPGRADE_PATH = ("keep parallelcluster_version={old} for this cluster, or move to {new} with a new cluster beside it "
                "on the same storage, no job lost (blue/green): `hpc-upgrade plan --to-version {new}` prints the "
                "cdk.json edit and each step (docs/day2.md)")
PROVIDER_TEMPLATE = re.compile(r"/parallelcluster/([^/]+)/templates/custom_resource/cluster\.yaml")


@dataclass
class ClusterSide:
    cluster_name: str
    configuration: dict[str, Any]
    logical_id: str = ""


@dataclass
class Change:
    path: str
    old: Any
    new: Any
    policy: str
    check: str
    reason: str
    action: str

    @property
    def category(self) -> str:
        return CATEGORIES.get(self.policy, UNSUPPORTED)

    @property
    def is_error(self) -> bool:
        return self.category == UNSUPPORTED


@dataclass
class Preview:
    changes: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # whole-cluster events (created, replaced, removed)
    replaced: bool = False
    refused: bool = False  # CloudFormation refuses the PrereqStack change the cluster change comes from
    versions: tuple[str, str] | None = None  # (deployed, target) ParallelCluster versions when they differ

    @property
    def has_errors(self) -> bool:
        return self.replaced or self.refused or self.versions is not None or any(c.is_error for c in self.changes)

    @property
    def recommended(self) -> str:
        """What to do instead when the update cannot be applied."""
        if self.versions:
            return UPGRADE_PATH.format(old=self.versions[0], new=self.versions[1])
        return REPLACE_PATH


def symbolic(value: Any) -> Any:
    """Intrinsics -> readable, stable strings; everything else unchanged."""
    if isinstance(value, list):
        return [symbolic(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "Fn::GetStackOutput" in value:
        ref = value["Fn::GetStackOutput"]
        return f"{{{ref['StackName']}.{ref['OutputName']}}}"
    if "Fn::ImportValue" in value:
        return f"{{import {symbolic(value['Fn::ImportValue'])}}}"
    if "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        return sub if isinstance(sub, str) else json.dumps(sub)
    if "Ref" in value:
        return f"{{{value['Ref']}}}"
    if "Fn::GetAtt" in value:
        return "{" + ".".join(map(str, value["Fn::GetAtt"])) + "}"
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(str(symbolic(p)) for p in parts)
    return {k: symbolic(v) for k, v in value.items()}


def provider_version(template: dict[str, Any] | None) -> str | None:
    """The ParallelCluster version of the provider a ClusterStack template deploys (its nested stack's template)."""
    for resource in (template or {}).get("Resources", {}).values():
        if resource.get("Type") == "AWS::CloudFormation::Stack":
            found = PROVIDER_TEMPLATE.search(json.dumps(resource.get("Properties", {}).get("TemplateURL")))
            if found:
                return found.group(1)
    return None


def cluster_side(template: dict[str, Any]) -> ClusterSide | None:
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") == "Custom::PclusterCluster":
            props = resource["Properties"]
            return ClusterSide(str(symbolic(props["ClusterName"])), symbolic(props["ClusterConfiguration"]),
                               logical_id)
    return None


def _prereq_replacements(base: dict[str, Any] | None, target: dict[str, Any] | None,
                         prereq: tuple[dict[str, Any] | None, dict[str, Any] | None], result: Preview,
                         after: ClusterSide) -> None:
    """A PrereqStack resource the cluster reads (weak reference) that the change replaces gets a new value in the
    target configuration, so ParallelCluster's own policy judges the cluster change it brings."""
    from lifecycle.replacement_guard import replacements, targets

    old = {"PrereqStack": prereq[0], "ClusterStack": base}
    new = {"PrereqStack": prereq[1], "ClusterStack": target}
    templates = {k: v for k, v in old.items() if v}
    for item in replacements(old, new):
        if item.stack != "PrereqStack":
            continue
        outputs = [name for name, output in (prereq[0] or {}).get("Outputs", {}).items()
                   if item.key in targets(output.get("Value"), "PrereqStack", templates)]
        read = [name for name in outputs if f"{{PrereqStack.{name}}}" in json.dumps(after.configuration)]
        if not read:
            continue
        for name in read:
            after.configuration = _replace_text(after.configuration, f"{{PrereqStack.{name}}}",
                                                f"{{PrereqStack.{name} of the new {item.logical_id}}}")
        result.notes.append(f"PrereqStack replaces {item.logical_id} ({item.reason}), which this cluster uses")
        if item.refused:
            result.refused = True
            result.notes.append(f"refused by CloudFormation while ClusterStack exists: {item.refused}; take the "
                                "cluster off it first (hpc-replacement-guard says how)")


def _replace_text(value: Any, old: str, new: str) -> Any:
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, list):
        return [_replace_text(v, old, new) for v in value]
    if isinstance(value, dict):
        return {k: _replace_text(v, old, new) for k, v in value.items()}
    return value


def preview(base: dict[str, Any] | None, target: dict[str, Any] | None, *, running: bool = True,
            prereq: tuple[dict[str, Any] | None, dict[str, Any] | None] | None = None) -> Preview:
    """Compares the cluster of two ClusterStack templates (None: no such stack/cluster). With ``prereq`` (the two
    PrereqStack templates), values the cluster reads from a PrereqStack resource the change replaces count as
    changed."""
    before = cluster_side(base) if base else None
    after = cluster_side(target) if target else None
    result = Preview()
    if before is None and after is None:
        result.notes.append("no cluster on either side")
        return result
    if before is None:
        result.notes.append(f"cluster {after.cluster_name} will be created")
        return result
    if after is None:
        # A stack gone from the app: `cdk deploy` does not delete it (cdk.json's clusters no longer has it).
        result.notes.append(f"cluster {before.cluster_name} is no longer in the app: `cdk deploy` leaves it running; "
                            f"delete it with `hpc-upgrade remove {before.cluster_name}` (or `cdk destroy` of its stack) "
                            "while cdk.json still has it (its data on /fsx and /home stays)")
        return result
    if before.cluster_name != after.cluster_name:
        result.replaced = True
        result.notes.append(f"ClusterName {before.cluster_name} -> {after.cluster_name}: CloudFormation replaces the "
                            "cluster (the new one is created first, then the old one deleted); jobs on the old "
                            "cluster are lost, data on /fsx and /home stays")
    elif before.logical_id != after.logical_id:
        result.replaced = True
        result.notes.append(f"the cluster's logical id changes ({before.logical_id} -> {after.logical_id}) but not its "
                            "name: CloudFormation would create a second cluster with the same name, which fails")
    old_version, new_version = provider_version(base), provider_version(target)
    if old_version and new_version and old_version != new_version:
        result.versions = (old_version, new_version)
        result.notes.append(f"ParallelCluster {old_version} -> {new_version}: needs a new cluster. ParallelCluster "
                            "updates a cluster only with the version that created it; this deploy would replace the "
                            "provider, and the cluster update would fail and roll back")
        result.notes.append(f"next: {result.recommended}")
        return result  # the old version's update policies do not apply to a cluster the new one cannot update
    if prereq:
        _prereq_replacements(base, target, prereq, result, after)
    request = {"patch": {"cluster_name": after.cluster_name, "base": before.configuration,
                         "target": after.configuration, "running": running}}
    python = installed_python(new_version) if new_version else PCLUSTER_PYTHON  # the version both sides run
    for row in ask_once(request, "us-east-1", python=python)["changes"]:  # cached by content, as the validation
        key = f"{row['path']}.{row['key']}" if row["path"] else row["key"]
        result.changes.append(Change(key, row["old"], row["new"], row["policy"], row["check"], row["reason"],
                                     row["action"]))
    return result


def _text(value: Any) -> str:
    return "-" if value is None else (value if isinstance(value, str) else json.dumps(value, sort_keys=True))


def _short(value: Any, width: int = 40, other: Any = None) -> str:
    """``value`` in at most ``width`` characters; when it is long, the part where it differs from ``other``
    (a changed script hash deep inside a URL is what a reviewer needs to see)."""
    text = _text(value)
    if len(text) <= width:
        return text
    start = 0
    if other is not None:
        other_text = _text(other)
        start = next((i for i, (a, b) in enumerate(zip(text, other_text)) if a != b), min(len(text), len(other_text)))
        start = max(0, min(start - 8, len(text) - width + 1))
    prefix = "…" if start else ""
    return prefix + text[start:start + width - 1 - len(prefix)] + "…"


def next_step(change: Change, preview_: Preview) -> str:
    if change.is_error:
        return f"{change.action or change.reason} Recommended: {REPLACE_PATH}."
    if change.category == "needs compute fleet stop" and change.check != "SUCCEEDED":
        return STOP_FLEET_PATH
    if change.category == "needs QueueUpdateStrategy" and change.check != "SUCCEEDED":
        return change.action or "set Scheduling.SlurmSettings.QueueUpdateStrategy (DRAIN or TERMINATE)"
    return ""


def to_markdown(result: Preview, title: str = "Cluster update preview") -> str:
    lines = [f"### {title}", ""]
    lines += [f"- {'**' if result.replaced else ''}{note}{'**' if result.replaced else ''}" for note in result.notes]
    if not result.changes:
        lines.append("No cluster configuration change." if not result.notes else "")
        return "\n".join(lines).rstrip() + "\n"
    lines += ["", "| key | old | new | update policy | effect | next step |", "| --- | --- | --- | --- | --- | --- |"]
    for change in result.changes:
        effect = f"**{change.category}**" if change.is_error else change.category
        cells = [f"`{change.path}`", f"`{_short(change.old, other=change.new)}`",
                 f"`{_short(change.new, other=change.old)}`", change.policy, effect,
                 next_step(change, result)]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    if result.has_errors:
        lines += ["", ":x: This update cannot be applied to the running cluster as is."]
    return "\n".join(lines) + "\n"


def to_terminal(result: Preview) -> str:
    lines = [*result.notes]
    for change in result.changes:
        marker = "ERROR" if change.is_error else "ok   " if change.category == "applied live" else "NOTE "
        lines.append(f"{marker} {change.path}: {_short(change.old, other=change.new)} -> "
                     f"{_short(change.new, other=change.old)}  [{change.policy}: "
                     f"{change.category}]")
        step = next_step(change, result)
        if step:
            lines.append(f"      next: {step}")
    if not lines:
        lines.append("No cluster configuration change.")
    return "\n".join(lines) + "\n"
