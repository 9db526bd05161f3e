"""Deploy critical path: which slow resources wait for each other, from the synthesized templates.

CloudFormation creates a resource once everything it references (Ref, Fn::GetAtt, DependsOn) exists;
a stack that reads another stack's outputs starts only when that stack is complete. Typical creation
times (minutes) are from the awsome-distributed-training ParallelCluster hands-on (measured by its
author): prerequisites stack with both FSx file systems "15-20 min", a data repository association
"10+ min", `pcluster create-cluster` "15-20 min"; lower bounds used here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lifecycle.templates import references, stack_outputs

SLOW_MINUTES = 5  # a resource typically taking this long or more counts as slow
TYPICAL_MINUTES = {
    "AWS::FSx::FileSystem": 15,
    "AWS::FSx::DataRepositoryAssociation": 10,
    "Custom::PclusterCluster": 15,
    "AWS::EC2::NatGateway": 2,
    "AWS::CloudFormation::Stack": 2,  # the ParallelCluster provider
}
SOURCE = "the awsome-distributed-training hands-on: prerequisites 15-20 min, DRA 10+ min, cluster 15-20 min"

Node = tuple[str, str]  # (stack, logical id)


@dataclass
class CriticalPath:
    minutes: int
    chain: list[tuple[Node, str, int]]  # the slow resources on the longest path: (node, type, minutes)

    @property
    def slow_in_series(self) -> int:
        return len(self.chain)


def _stack_dependencies(templates: dict[str, dict[str, Any]]) -> dict[str, set[str]]:
    """Stack -> stacks whose outputs it reads (so it starts after they complete)."""
    return {name: {stack for stack, _ in stack_outputs(template.get("Resources", {}))} - {name}
            for name, template in templates.items()}


def minutes_of(resource: dict[str, Any]) -> int:
    return TYPICAL_MINUTES.get(resource["Type"], 0)


def critical_path(templates: dict[str, dict[str, Any]]) -> CriticalPath:
    stack_deps = _stack_dependencies(templates)
    finish: dict[Node, tuple[int, list]] = {}
    stack_finish: dict[str, tuple[int, list]] = {}

    def stack_done(stack: str) -> tuple[int, list]:
        if stack not in stack_finish:
            resources = templates[stack].get("Resources", {})
            stack_finish[stack] = max((node_done((stack, rid)) for rid in resources), key=lambda f: f[0],
                                      default=(0, []))
        return stack_finish[stack]

    def node_done(node: Node) -> tuple[int, list]:
        if node in finish:
            return finish[node]
        stack, rid = node
        resource = templates[stack]["Resources"][rid]
        depends = resource.get("DependsOn", [])
        upstream = (references(resource.get("Properties", {})) | set([depends] if isinstance(depends, str)
                                                                      else depends))
        starts = [node_done((stack, r)) for r in upstream if r in templates[stack]["Resources"]]
        starts += [stack_done(s) for s in stack_deps[stack]]
        start = max(starts, key=lambda f: f[0], default=(0, []))
        minutes = minutes_of(resource)
        chain = start[1] + ([(node, resource["Type"], minutes)] if minutes >= SLOW_MINUTES else [])
        finish[node] = (start[0] + minutes, chain)
        return finish[node]

    total, chain = max((stack_done(s) for s in templates), key=lambda f: f[0], default=(0, []))
    return CriticalPath(total, chain)


def to_text(path: CriticalPath) -> str:
    steps = " -> ".join(f"{stack}/{rid} ({type_}, ~{m} min)" for (stack, rid), type_, m in path.chain)
    return (f"critical path: ~{path.minutes} min, {path.slow_in_series} slow resource(s) in series\n"
            f"  {steps or '(no slow resource)'}\n  typical durations: {SOURCE}\n")
