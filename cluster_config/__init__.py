"""Native ParallelCluster YAML from cluster_configs/: load, render (placeholders -> values), validate.

Validation renders the config with well-formed dummy ids in place of PrereqStack values, then runs
the project rules (rules.py) and ParallelCluster's own schema (schema.py), all offline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from cluster_config.document import ConfigDocument, load_document
from cluster_config.render import NODE_ACTION, PlaceholderValues, node_actions_used, render
from cluster_config.rules import RuleContext, check_rules
from cluster_config.schema import SchemaCheck, SchemaRequest
from settings.context import REPO_ROOT
from settings.errors import ConfigError, ConfigErrors

CONFIG_DIR = REPO_ROOT / "cluster_configs"
NODE_ACTIONS_DIR = REPO_ROOT / "scripts" / "node_actions"
DUMMY_ACCOUNT = "123456789012"
DUMMY_LEGEND = ("validation stand-ins: vpc-0fff… VPC, subnet-0aaa… PublicSubnet, subnet-0bbb… PrimaryPrivateSubnet, "
                "sg-0ccc… SecurityGroup, fs-0ddd… FSxLustreFilesystemId, fsvol-0eee… FSxORootVolumeId")


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
    """Well-formed stand-ins for PrereqStack values: they pass ParallelCluster's id patterns, and each
    repeats one hex digit so a reviewer of the rendered snapshot can tell them apart (see DUMMY_LEGEND)."""
    scripts_bucket = f"cdk-hnb659fds-assets-{DUMMY_ACCOUNT}-{region}"
    stack = {
        "Region": region,
        "VPC": "vpc-0ffffffffffffffff",
        "VpcCidr": vpc_cidr,
        "PublicSubnet": "subnet-0aaaaaaaaaaaaaaaa",
        "PrimaryPrivateSubnet": "subnet-0bbbbbbbbbbbbbbbb",
        "SecondaryPrivateSubnet": "subnet-0bbbbbbbbbbbbbbb2",
        "SecurityGroup": "sg-0cccccccccccccccc",
        "FSxLustreFilesystemId": "fs-0dddddddddddddddd",
        "FSxLustreFilesystemDNSname": f"fs-0dddddddddddddddd.fsx.{region}.amazonaws.com",
        "FSxLustreFilesystemMountname": "lustremount",
        "FSxOpenZfsFilesystemId": "fs-0eeeeeeeeeeeeeeee",
        "FSxORootVolumeId": "fsvol-0eeeeeeeeeeeeeeee",
        "DataBucketName": "prereqstack-databucket-example",
        "KeyPairName": key_pair_name,
        "PrivateKeySsmParameter": "/ec2/keypair/key-0123456789abcdef0",
        "AccountingDatabaseUri": f"accounting.cluster-0123456789ab.{region}.rds.amazonaws.com:3306",
        "AccountingDatabaseUser": "slurm_admin",
        "AccountingDatabaseSecretArn": f"arn:aws:secretsmanager:{region}:{DUMMY_ACCOUNT}:secret:slurm-db-AbCdEf",
    }
    if uses_node_actions:
        stack["ScriptsBucket"] = scripts_bucket
    return PlaceholderValues(stack=stack, context=context,
                             node_action_url=lambda script: f"s3://{scripts_bucket}/node_actions/{script}",
                             node_actions_dir=NODE_ACTIONS_DIR)


class Validation:
    """Rendering and project rules run at once; ParallelCluster's schema check runs in the background
    until ``check()``, which raises every problem together and returns the rendered configs."""

    def __init__(self, requests: list[tuple[ConfigDocument, PlaceholderValues, str]], *, region: str,
                 parallelcluster_version: str, use_cache: bool = True) -> None:
        self.errors: list[ConfigError] = []
        self.rendered: list[dict[str, Any]] = []
        schema_requests: list[SchemaRequest] = []
        for document, values, cluster_name in requests:
            try:
                config = render(document, values)
            except ConfigError as error:
                self.errors.append(error)
                continue
            except ConfigErrors as many:
                self.errors.extend(many.errors)
                continue
            rule_context = RuleContext(cluster_security_group=values.stack["SecurityGroup"],
                                       scripts_bucket=values.stack.get("ScriptsBucket", ""), region=region,
                                       cluster_name=cluster_name)
            self.errors.extend(check_rules(document, config, rule_context))
            schema_requests.append(SchemaRequest(document, config, cluster_name))
            self.rendered.append(config)
        self.schema = SchemaCheck(schema_requests, region, parallelcluster_version, use_cache=use_cache)

    def check(self) -> list[dict[str, Any]]:
        errors = self.errors + self.schema.errors()
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise ConfigErrors(errors)
        return self.rendered


def validate(requests: list[tuple[ConfigDocument, PlaceholderValues, str]], *, region: str,
             parallelcluster_version: str, use_cache: bool = True) -> list[dict[str, Any]]:
    """Renders each (document, dummy values, cluster name) and checks it; raises every problem at once.

    Returns the rendered configs (what the snapshot tests show a reviewer).
    """
    return Validation(requests, region=region, parallelcluster_version=parallelcluster_version,
                      use_cache=use_cache).check()


__all__ = ["Validation", "CONFIG_DIR", "NODE_ACTIONS_DIR", "NODE_ACTION", "ConfigDocument", "PlaceholderValues", "available_configs",
           "dummy_values", "load_document", "load_named_config", "node_actions_used", "render", "validate"]
