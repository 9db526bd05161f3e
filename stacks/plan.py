"""What the app will build, decided from context before CDK is imported: both settings groups and the
cluster config as it will be deployed, with its validation under way.

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
from cluster_yaml.validation import Validation
from settings.cluster import ClusterSettings
from settings.context import ContextReader
from settings.errors import ConfigError, ConfigErrors
from settings.prereq import PrereqSettings, created_key_pair_name


@dataclass
class Plan:
    prereq: PrereqSettings
    cluster: ClusterSettings
    document: ConfigDocument  # the config file with what the app adds (accounting, job bridge, OnNodeUpdated)
    validation: Validation
    lookup: Callable[[str], Any]


def plan(lookup: Callable[[str], Any]) -> Plan:
    """Reads and checks the context, loads and prepares the cluster config, starts its validation.
    Raises ConfigError(s): bad settings and render or rule problems, all at once."""
    prereq_settings, cluster_settings = _settings(lookup)
    document = cluster_yaml.load_named_config(cluster_settings.cluster_config)
    if prereq_settings.slurm_accounting:
        document = with_accounting(document)
    if cluster_settings.job_bridge:
        document = with_job_bridge(document, cluster_settings.job_bridge_prefix,
                                   cluster_settings.job_bridge_submitters)
    document = with_node_updates(document)
    if not cluster_settings.job_bridge:
        document = without_job_bridge(document)
    region = prereq_settings.network.region
    key_pair_name = prereq_settings.key_pair_name or created_key_pair_name("PrereqStack")
    dummies = cluster_yaml.dummy_values(region, prereq_settings.network.vpc_cidr, key_pair_name, lookup,
                                          bool(cluster_yaml.node_actions_used(document)) or cluster_settings.job_bridge)
    validation = Validation([(document, dummies, cluster_settings.cluster_name)], region=region,
                            parallelcluster_version=cluster_settings.parallelcluster_version)
    if validation.errors:  # render and rule problems: no need to build stacks from a broken config
        with validation:
            validation.check()
    return Plan(prereq_settings, cluster_settings, document, validation, lookup)


def _settings(lookup: Callable[[str], Any]) -> tuple[PrereqSettings, ClusterSettings]:
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
