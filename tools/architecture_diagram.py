#!/usr/bin/env python3
"""Draws the architecture diagram in README.md from the synthesized app (Mermaid).

    .venv/bin/python tools/architecture_diagram.py            # print the diagram
    .venv/bin/python tools/architecture_diagram.py --readme   # refresh it in README.md

A test fails when README.md's diagram no longer matches what the app synthesizes.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Any, Callable

from lifecycle.templates import references, stack_outputs
from settings.context import REPO_ROOT

README = REPO_ROOT / "README.md"
START, END = "<!-- architecture-diagram:start -->", "<!-- architecture-diagram:end -->"


def _props(resource: dict[str, Any]) -> dict[str, Any]:
    return resource.get("Properties", {})


def _subnet(r: dict[str, Any]) -> str:
    kind = "public" if _props(r).get("MapPublicIpOnLaunch") else "private"
    return f"{kind} subnet {_props(r).get('AvailabilityZone', '')}"


def _file_system(r: dict[str, Any]) -> str:
    p = _props(r)
    if p.get("FileSystemType") == "LUSTRE":
        return f"FSx Lustre {p['LustreConfiguration']['DeploymentType']} {p['StorageCapacity']} GiB"
    return f"FSx OpenZFS {p['OpenZFSConfiguration']['DeploymentType']} /home"


def _security_group(r: dict[str, Any]) -> str:
    return "SG " + _props(r).get("GroupDescription", "").split(":")[0]


def _dra(r: dict[str, Any]) -> str:
    mode = "import+export" if "AutoExportPolicy" in _props(r).get("S3", {}) else "import"
    return f"DRA {_props(r)['FileSystemPath']} ({mode})"


def _bucket(r: dict[str, Any]) -> str:
    props = _props(r)
    if "VersioningConfiguration" in props:
        return "S3 data bucket"
    if {"Key": "Purpose", "Value": "node-actions"} in props.get("Tags", []):
        return "S3 node-action scripts"
    return "S3 access logs"


LABELS: dict[str, Callable[[dict[str, Any]], str]] = {
    "AWS::EC2::VPC": lambda r: f"VPC {_props(r).get('CidrBlock', '')}",
    "AWS::EC2::Subnet": _subnet,
    "AWS::EC2::InternetGateway": lambda r: "Internet gateway",
    "AWS::EC2::NatGateway": lambda r: "NAT gateway",
    "AWS::EC2::VPCEndpoint": lambda r: "S3 gateway endpoint",
    "AWS::EC2::SecurityGroup": _security_group,
    "AWS::FSx::FileSystem": _file_system,
    "AWS::FSx::DataRepositoryAssociation": _dra,
    "AWS::S3::Bucket": _bucket,
    "AWS::EC2::KeyPair": lambda r: "EC2 key pair ed25519",
    "AWS::CloudFormation::Stack": lambda r: "ParallelCluster provider (nested stack)",
    "Custom::PclusterCluster": lambda r: "ParallelCluster cluster",
}


def _references(value: Any) -> set[str]:
    """Logical ids a value points at, plus ``Stack/Output`` for CDK's weak cross-stack references."""
    return references(value) | {f"{stack}/{output}" for stack, output in stack_outputs(value)}


def mermaid(templates: dict[str, dict[str, Any]]) -> str:
    """A Mermaid flowchart of the main resources of each stack and what references what."""
    lines = ["flowchart LR"]
    edges: list[str] = []
    shown_ids = {f"{stack}_{rid}" for stack, t in templates.items() for rid, r in t.get("Resources", {}).items()
                 if r["Type"] in LABELS}
    for stack, template in templates.items():
        lines.append(f"  subgraph {stack}")
        resources = template.get("Resources", {})
        shown = {rid: r for rid, r in resources.items() if r["Type"] in LABELS}
        for rid, resource in shown.items():
            lines.append(f'    {stack}_{rid}["{LABELS[resource["Type"]](resource)}"]')
        for rid, resource in shown.items():
            references = _references(_props(resource))
            for target in sorted(references & set(shown)):
                if target != rid:
                    edges.append(f"  {stack}_{rid} --> {stack}_{target}")
            for other_stack, output in sorted(r.split("/", 1) for r in references if "/" in r):
                value = templates.get(other_stack, {}).get("Outputs", {}).get(output, {}).get("Value")
                for target in sorted(_references(value)):
                    if f"{other_stack}_{target}" in shown_ids:
                        edges.append(f"  {stack}_{rid} --> {other_stack}_{target}")
        # Security-group rules between groups, drawn as "source may reach group".
        rules = {(min(_references(_props(r).get("SourceSecurityGroupId"))), min(_references(_props(r)["GroupId"])))
                 for r in resources.values()
                 if r["Type"] == "AWS::EC2::SecurityGroupIngress" and _props(r).get("SourceSecurityGroupId")}
        for source, group in sorted(rules):
            if source != group and {source, group} <= set(shown):
                edges.append(f"  {stack}_{source} -. ingress .-> {stack}_{group}")
        lines.append("  end")
    return "\n".join(lines + list(dict.fromkeys(edges))) + "\n"


def synthesized_templates() -> dict[str, dict[str, Any]]:
    """Synthesizes the app in-process with the shipped cdk.json context."""
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    from aws_cdk import App
    from settings.context import shipped_context
    from stacks.app_builder import synthesize

    synthesis = synthesize(App(context=shipped_context(), analytics_reporting=False))
    return {name: synthesis.template(name) for name in synthesis.stacks}


def readme_block(diagram: str) -> str:
    return f"{START}\n```mermaid\n{diagram}```\n{END}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readme", action="store_true", help="rewrite the diagram block in README.md")
    args = parser.parse_args()
    diagram = mermaid(synthesized_templates())
    if not args.readme:
        print(diagram, end="")
        return 0
    text = README.read_text()
    if START not in text or END not in text:
        print(f"README.md has no {START} ... {END} block to refresh", file=sys.stderr)
        return 1
    README.write_text(re.sub(f"{re.escape(START)}.*?{re.escape(END)}", lambda _: readme_block(diagram), text,
                             flags=re.S))
    print("README.md diagram refreshed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
