"""Native ParallelCluster YAML from cluster_configs/: load, render (placeholders -> values), validate.

Validation (validation.py) first renders the config with well-formed dummy ids in place of stack
values and runs the project rules (rules.py) and ParallelCluster's own schema (schema.py); once the
app is synthesized, ParallelCluster's full create-time validation runs on the config in the
template, in a simulated account built from the templates (simulation.py). All offline.
"""

from __future__ import annotations

from typing import Any, Callable

from cluster_yaml.document import ConfigDocument, load_document
from cluster_yaml.node_actions import object_key, script_digest
from cluster_yaml.render import NODE_ACTION, PlaceholderValues, node_actions_used, render
from cluster_yaml.stack_values import BY_NAME, stand_ins
from cluster_yaml.validation import Validation
from settings.context import REPO_ROOT
from settings.errors import ConfigError

CONFIG_DIR = REPO_ROOT / "cluster_configs"
NODE_ACTIONS_DIR = REPO_ROOT / "scripts" / "node_actions"
DUMMY_ACCOUNT = "123456789012"
DUMMY_LEGEND = ("validation stand-ins: vpc-0fff… VPC, subnet-0aaa… PublicSubnet, subnet-0bbb… PrimaryPrivateSubnet, "
                "sg-0ccc… SecurityGroup, fs-0ddd… FSxLustreFilesystemId, fsvol-0eee… FSxORootVolumeId, "
                "clusterstack-nodeactions… ScriptsBucket")


def available_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def load_named_config(name: str) -> ConfigDocument:
    path = CONFIG_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(source="-c cluster_config", key="context 'cluster_config'", value=name,
                          problem="names no file in cluster_configs/",
                          fix=f"use one of: {', '.join(available_configs())}")
    return load_document(path, source=f"cluster_configs/{path.name}")


def dummy_values(region: str, vpc_cidr: str, key_pair_name: str, context: Callable[[str], Any],
                 uses_node_actions: bool) -> PlaceholderValues:
    """Stand-ins for the stack values (cluster_yaml/stack_values.py), well-formed for ParallelCluster's id
    patterns and told apart in the rendered snapshot by their repeated hex digit (see DUMMY_LEGEND)."""
    stack = stand_ins(region=region, account=DUMMY_ACCOUNT, vpc_cidr=vpc_cidr, key_pair_name=key_pair_name,
                      node_actions=uses_node_actions)
    scripts_bucket = BY_NAME["ScriptsBucket"].stand_in
    return PlaceholderValues(stack=stack, context=context,
                             node_action_url=lambda script, fixed: f"s3://{scripts_bucket}/" + object_key(
                                 script, None if fixed else script_digest(NODE_ACTIONS_DIR / script)),
                             node_actions_dir=NODE_ACTIONS_DIR)


def validate(requests: list[tuple[ConfigDocument, PlaceholderValues, str]], *, region: str,
             parallelcluster_version: str, use_cache: bool = True) -> list[dict[str, Any]]:
    """Phase 1 only (render, rules, ParallelCluster's schema); raises every problem at once.

    Returns the rendered configs (what the snapshot tests show a reviewer).
    """
    with Validation(requests, region=region, parallelcluster_version=parallelcluster_version,
                    use_cache=use_cache, full=False) as validation:
        return validation.check()


__all__ = ["Validation", "CONFIG_DIR", "NODE_ACTIONS_DIR", "NODE_ACTION", "ConfigDocument", "PlaceholderValues", "available_configs",
           "dummy_values", "load_document", "load_named_config", "node_actions_used", "render", "validate"]
