"""Reading CloudFormation templates: from cdk.out, a file, the committed snapshots, or a deployed stack."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Iterator

from settings.context import REPO_ROOT

SNAPSHOT_DIR = REPO_ROOT / "tests" / "__snapshots__" / "test_snapshots"
SNAPSHOT_FILES = {"PrereqStack": "test_prereq_stack_template.json", "ClusterStack": "test_cluster_stack_template.json"}
STACKS = tuple(SNAPSHOT_FILES)
PREREQ_STACK, CLUSTER_STACK = STACKS


def is_cluster_stack(name: str) -> bool:
    """ClusterStack, or ClusterStack-<name> of another cluster of the ``clusters`` knob."""
    return name == CLUSTER_STACK or name.startswith(CLUSTER_STACK + "-")


def app_stacks(*sources: str) -> list[str]:
    """PrereqStack, then every cluster stack in any of ``sources`` (ClusterStack first, then by name): a cluster
    stack only one side has is a cluster created or removed."""
    found: set[str] = set()
    for source in sources:
        found |= set(_stacks_in(source))
    return [PREREQ_STACK, *cluster_stacks(found)]


def cluster_stacks(names: Iterable[str]) -> list[str]:
    """The cluster stacks among ``names``: ClusterStack first, then the others by name."""
    return sorted((s for s in names if is_cluster_stack(s)), key=lambda s: (s != CLUSTER_STACK, s))


def _stacks_in(source: str) -> list[str]:
    if source == "snapshot":
        return list(STACKS)
    if source == "deployed":
        import boto3

        pages = boto3.client("cloudformation").get_paginator("list_stacks").paginate()
        return [s["StackName"] for page in pages for s in page["StackSummaries"]
                if s["StackStatus"] != "DELETE_COMPLETE" and not s.get("ParentId")]
    path = Path(source)
    if path.is_dir():  # a cdk.out: one template per stack (nested stacks' are *.nested.template.json)
        return [p.name[:-len(".template.json")] for p in path.glob("*.template.json") if ".nested." not in p.name]
    return [CLUSTER_STACK]  # a template file is a cluster stack's


def load_template(source: str, stack: str) -> dict[str, Any] | None:
    """``source``: a cdk.out directory, a template file, ``snapshot`` (the committed, reviewed
    templates) or ``deployed`` (CloudFormation via boto3). None when that stack does not exist."""
    if source == "deployed":
        return _deployed(stack)
    path = SNAPSHOT_DIR / SNAPSHOT_FILES[stack] if source == "snapshot" else Path(source)
    if path.is_dir():
        path = path / f"{stack}.template.json"
    return json.loads(path.read_text()) if path.exists() else None


def _deployed(stack: str) -> dict[str, Any] | None:
    import boto3
    from botocore.exceptions import ClientError

    try:
        body = boto3.client("cloudformation").get_template(StackName=stack, TemplateStage="Original")["TemplateBody"]
    except ClientError as error:
        if "does not exist" in str(error):
            return None
        raise
    return body if isinstance(body, dict) else json.loads(body)


def _walk(value: Any) -> Iterator[dict[str, Any]]:
    """Every mapping inside a template value (the value itself first)."""
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


def references(value: Any) -> set[str]:
    """Logical ids a value points at with Ref or Fn::GetAtt (pseudo parameters excluded)."""
    found: set[str] = set()
    for node in _walk(value):
        if isinstance(node.get("Ref"), str) and not node["Ref"].startswith("AWS::"):
            found.add(node["Ref"])
        if "Fn::GetAtt" in node:
            target = node["Fn::GetAtt"]
            found.add(target[0] if isinstance(target, list) else str(target).split(".")[0])
    return found


def stack_outputs(value: Any) -> set[tuple[str, str]]:
    """(stack, output) pairs a value reads through CDK's weak cross-stack reference, Fn::GetStackOutput."""
    return {(node["Fn::GetStackOutput"]["StackName"], node["Fn::GetStackOutput"]["OutputName"])
            for node in _walk(value) if "Fn::GetStackOutput" in node}


def imports(value: Any) -> set[str]:
    """Export names a value imports with Fn::ImportValue (a strong cross-stack reference)."""
    return {node["Fn::ImportValue"] for node in _walk(value) if isinstance(node.get("Fn::ImportValue"), str)}


def exports(template: dict[str, Any] | None) -> dict[str, str]:
    """Export name -> output name, of the literal export names of a template."""
    found = {}
    for output_name, output in ((template or {}).get("Outputs") or {}).items():
        name = (output.get("Export") or {}).get("Name")
        if isinstance(name, str):
            found[name] = output_name
    return found


def exports_in_use(templates: dict[str, dict[str, Any] | None]) -> dict[tuple[str, str], set[str]]:
    """(exporting stack, export name) -> the other stacks that import it, among ``templates``."""
    found: dict[tuple[str, str], set[str]] = {}
    for stack, template in templates.items():
        for name in exports(template):
            importers = {other for other, t in templates.items() if other != stack and name in imports(t or {})}
            if importers:
                found[(stack, name)] = importers
    return found
