"""Builds the whole app from context: settings and cluster config are validated first (every problem
reported at once, offline), then the stacks are composed, synthesized, and the config in the
synthesized template goes through ParallelCluster's full validation in a simulated account."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from aws_cdk import App, Environment, Stack, cx_api

import cluster_config
from cluster_config.accounting import with_accounting
from cluster_config.job_bridge import with_job_bridge
from cluster_config.node_actions import with_node_updates
from cluster_config.validation import DeploymentResult, Validation
from hpc_constructs.key_pair import created_key_pair_name
from settings.cluster import ClusterSettings
from settings.context import ContextReader
from settings.errors import ConfigError, ConfigErrors
from settings.prereq import PrereqSettings
from stacks.cluster_stack import ClusterStack
from stacks.prereq_stack import PrereqStack


@dataclass
class BuiltApp:
    stacks: dict[str, Stack]
    validation: Validation

    def objects(self) -> dict[str, list[str]]:
        """S3 objects the deployment writes (not visible in the template), by ``Stack/BucketLogicalId``."""
        cluster = self.stacks["ClusterStack"]
        scripts = getattr(cluster, "node_actions", None)
        return {f"ClusterStack/{scripts.bucket_logical_id}": scripts.deployed_keys} if scripts else {}


def build(app: App) -> BuiltApp:
    """Adds the product's stacks to ``app``. Raises ConfigError/ConfigErrors on bad input."""
    lookup = app.node.try_get_context
    prereq_settings, cluster_settings = _settings(lookup)
    document = cluster_config.load_named_config(cluster_settings.cluster_config)
    if prereq_settings.slurm_accounting:
        document = with_accounting(document)
    if cluster_settings.job_bridge:
        document = with_job_bridge(document, cluster_settings.job_bridge_prefix)
    document = with_node_updates(document)
    region = prereq_settings.network.region
    key_pair_name = prereq_settings.key_pair_name or created_key_pair_name("PrereqStack")
    dummies = cluster_config.dummy_values(region, prereq_settings.network.vpc_cidr, key_pair_name, lookup,
                                          bool(cluster_config.node_actions_used(document)) or cluster_settings.job_bridge)
    # ParallelCluster's worker starts now: its schema check, and the simulated account it validates the
    # synthesized config in, are ready while the stacks are built.
    validation = Validation([(document, dummies, cluster_settings.cluster_name)], region=region,
                            parallelcluster_version=cluster_settings.parallelcluster_version)
    if validation.errors:  # render and rule problems: no need to build stacks from a broken config
        validation.check()

    # Region from the zone, account left to the CLI: keeps synth offline (no AZ lookups) while
    # pinning the stacks to the region their subnets live in.
    env = Environment(region=region)
    try:
        prereq = PrereqStack(app, "PrereqStack", settings=prereq_settings, env=env,
                             description="Network, storage, data bucket and key pair for a ParallelCluster cluster")
        cluster = ClusterStack(app, "ClusterStack", settings=cluster_settings, document=document, prereq=prereq,
                               vpc_cidr=prereq_settings.network.vpc_cidr, context=lookup, env=env,
                               data_repositories=prereq_settings.lustre.data_repository_associations,
                               description=f"ParallelCluster cluster {cluster_settings.cluster_name} "
                                           f"({document.source})")
        validation.check()
    except BaseException:
        validation.close()
        raise
    return BuiltApp({"PrereqStack": prereq, "ClusterStack": cluster}, validation)


@dataclass
class Synthesis:
    stacks: dict[str, Stack]
    assembly: cx_api.CloudAssembly
    deployment: DeploymentResult  # ParallelCluster's warnings and what ran

    def template(self, stack: str) -> dict:
        artifact = self.assembly.get_stack_by_name(stack)
        return json.loads((Path(self.assembly.directory) / artifact.template_file).read_text())


def synthesize(app: App) -> Synthesis:
    """Builds, synthesizes and runs ParallelCluster's full validation on the synthesized config.

    Raises ConfigError(s) for any ERROR ParallelCluster finds; its warnings are in the result.
    """
    built = build(app)
    try:
        assembly = app.synth()
    except BaseException:
        built.validation.close()
        raise
    synthesis = Synthesis(built.stacks, assembly, DeploymentResult())
    templates = {name: synthesis.template(name) for name in built.stacks}
    synthesis.deployment = built.validation.check_deployment(templates, objects=built.objects())
    return synthesis


def _settings(lookup) -> tuple[PrereqSettings, ClusterSettings]:
    """Both settings groups, with the problems of both reported together."""
    errors: list[ConfigError] = []
    results = []
    for settings_class in (PrereqSettings, ClusterSettings):
        try:
            results.append(settings_class.from_context(ContextReader(lookup)))
        except ConfigError as error:
            errors.append(error)
        except ConfigErrors as many:
            errors.extend(many.errors)
    if errors:
        raise errors[0] if len(errors) == 1 else ConfigErrors(errors)
    return results[0], results[1]
