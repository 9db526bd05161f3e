"""What the app will build, decided from context before CDK is imported: the settings, and each cluster's
config as it will be deployed, with their validation under way (one ParallelCluster worker per version).

Nothing here imports aws_cdk: app.py makes the plan first, so ParallelCluster's worker process starts
(and builds its simulated account) while Python imports CDK and the stacks are built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import cluster_yaml
from cluster_yaml.accounting import with_accounting
from cluster_yaml.document import ConfigDocument
from cluster_yaml.job_bridge import with_job_bridge, without_job_bridge
from cluster_yaml.node_actions import with_node_updates
from cluster_yaml.validation import Validation, Validations
from settings.cluster import Clusters, ClusterSettings
from settings.context import ContextReader
from settings.errors import ConfigError, ConfigErrors
from settings.prereq import PrereqSettings, created_key_pair_name


@dataclass
class ClusterPlan:
    settings: ClusterSettings
    document: ConfigDocument  # the config file with what the app adds (accounting, job bridge, OnNodeUpdated)


@dataclass
class Plan:
    prereq: PrereqSettings
    clusters: tuple[ClusterPlan, ...]  # each in its own stack (ClusterSettings.stack_name)
    validation: Validations
    lookup: Callable[[str], Any]


def plan(lookup: Callable[[str], Any]) -> Plan:
    """Reads and checks the context, loads and prepares each cluster config, starts their validation.
    Raises ConfigError(s): bad settings and render or rule problems, all at once."""
    prereq_settings, clusters = _settings(lookup)
    region = prereq_settings.network.region
    key_pair_name = prereq_settings.key_pair_name or created_key_pair_name("PrereqStack")
    prepared = [ClusterPlan(settings, _document(settings, prereq_settings)) for settings in clusters.clusters]
    validations = []
    for version in clusters.versions:  # each version is judged by its own package, in its own worker
        requests = [(c.document, cluster_yaml.dummy_values(
            region, prereq_settings.network.vpc_cidr, key_pair_name, lookup,
            bool(cluster_yaml.node_actions_used(c.document)) or c.settings.job_bridge), c.settings.cluster_name)
            for c in prepared if c.settings.parallelcluster_version == version]
        validations.append(Validation(requests, region=region, parallelcluster_version=version))
    validation = Validations(validations)
    if validation.errors:  # render and rule problems: no need to build stacks from a broken config
        with validation:
            validation.check()
    return Plan(prereq_settings, tuple(prepared), validation, lookup)


def _document(cluster: ClusterSettings, prereq: PrereqSettings) -> ConfigDocument:
    document = cluster_yaml.load_named_config(cluster.cluster_config)
    if prereq.slurm_accounting:
        document = with_accounting(document)
    if cluster.job_bridge:
        document = with_job_bridge(document, cluster.job_bridge_prefix, cluster.job_bridge_submitters)
    document = with_node_updates(document)
    if not cluster.job_bridge:
        document = without_job_bridge(document)
    return document


def _settings(lookup: Callable[[str], Any]) -> tuple[PrereqSettings, Clusters]:
    """Both settings groups, with the problems of both reported together."""
    errors: list[ConfigError] = []
    results = []
    for settings_class in (PrereqSettings, Clusters):
        try:
            results.append(settings_class.from_context(ContextReader(lookup)))
        except ConfigError as error:
            errors.append(error)
        except ConfigErrors as many:
            errors.extend(many.errors)
    if not errors and results[0].slurm_accounting and len(results[1].clusters) > 1:
        errors.append(shared_accounting_error(results[1]))
    if errors:
        raise errors[0] if len(errors) == 1 else ConfigErrors(errors)
    return results[0], results[1]


# ParallelCluster's Slurm accounting guide advises an external Slurmdbd for clusters that share a database; with
# SlurmSettings/Database, which this app wires, each head node runs a slurmdbd of its own on it.
ACCOUNTING_GUIDE = "https://docs.aws.amazon.com/parallelcluster/latest/ug/slurm-accounting-v3.html"


def shared_accounting_error(clusters: Clusters) -> ConfigError:
    names = [c.cluster_name for c in clusters.clusters]
    return ConfigError(
        source="cdk.json or -c", key="context 'clusters'", value=names,
        problem=f"gives {len(names)} clusters the one accounting database of slurm_accounting=true: each head node "
                "would run a slurmdbd of its own on it, and ParallelCluster recommends an external Slurmdbd when "
                f"clusters share a database ({ACCOUNTING_GUIDE})",
        fix="keep one cluster with slurm_accounting=true (upgrade it the cold way: docs/day2.md), or set "
            "slurm_accounting=false")
