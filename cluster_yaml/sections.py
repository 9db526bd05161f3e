"""Walking a native ParallelCluster config: the sections that launch instances and run custom actions.
Used by the project rules, by `hpc-ops verify` and by the deploy's preflight, so the three agree on what
a queue, a login pool, a script step and an instance type are. Tolerant of malformed input: the schema
reports that."""

from __future__ import annotations

from typing import Any, Iterator

from cluster_yaml.document import YamlPath

QUEUES: YamlPath = ("Scheduling", "SlurmQueues")


def dig(data: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(data, dict):
            data = data.get(key)
        elif isinstance(data, list) and isinstance(key, int) and key < len(data):
            data = data[key]
        else:
            return None
    return data


def queues(config: dict[str, Any]) -> list[dict[str, Any]]:
    found = dig(config, *QUEUES)
    return [q for q in found if isinstance(q, dict)] if isinstance(found, list) else []


def custom_action_sections(config: dict[str, Any]) -> Iterator[tuple[YamlPath, dict[str, Any]]]:
    """(path, section) for the head node, each queue and each login pool: the places with CustomActions and Iam."""
    if isinstance(config.get("HeadNode"), dict):
        yield ("HeadNode",), config["HeadNode"]
    for qi, queue in enumerate(queues(config)):
        yield (*QUEUES, qi), queue
    pools = dig(config, "LoginNodes", "Pools")
    for pi, pool in enumerate(pools if isinstance(pools, list) else []):
        if isinstance(pool, dict):
            yield ("LoginNodes", "Pools", pi), pool


def action_steps(section: dict[str, Any]) -> Iterator[tuple[YamlPath, dict[str, Any]]]:
    """(path within the section, step) for every custom action script: single ones and Sequence steps."""
    actions = section.get("CustomActions") or {}
    for event, action in (actions.items() if isinstance(actions, dict) else []):
        if not isinstance(action, dict):
            continue
        if "Script" in action:
            yield ("CustomActions", event), action
        for index, step in enumerate(action.get("Sequence") or []):
            if isinstance(step, dict):
                yield ("CustomActions", event, "Sequence", index), step


def instance_types(resource: dict[str, Any]) -> list[tuple[YamlPath, str]]:
    """(path within the compute resource, instance type): its InstanceType, or each of its Instances."""
    if resource.get("InstanceType"):
        return [(("InstanceType",), str(resource["InstanceType"]))]
    return [(("Instances", i, "InstanceType"), str(item["InstanceType"]))
            for i, item in enumerate(resource.get("Instances") or []) if isinstance(item, dict)
            and item.get("InstanceType")]
