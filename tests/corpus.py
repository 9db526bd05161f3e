"""Validating config files that are not the app's own (test corpora) the way synth validates the app's:
phase 1 (render, rules, ParallelCluster's schema) with stand-in ids, then ParallelCluster's full
validation in the account the default app's templates create, with that account's ids filled in."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import cluster_yaml
from cluster_yaml import dummy_values, load_document
from cluster_yaml.node_actions import object_key
from cluster_yaml.render import PlaceholderValues, render
from cluster_yaml.simulation import Templates, simulate
from cluster_yaml.validation import Validation
from settings.errors import ConfigError, ConfigErrors

REGION, CIDR, KEY, VERSION = "us-east-1", "10.0.0.0/16", "PrereqStack-cluster", "3.16.1"


@dataclass
class Outcome:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _by_file(error: ConfigError, root: str) -> str:
    return error.source.split(":")[0].removeprefix(f"{root}/")


def validate_files(paths: list[Path], app, context: dict | None = None) -> dict[str, Outcome]:
    """Both phases for every file; outcomes by file name. ``app``: the default Synthesized app."""
    root = paths[0].parent.name if paths else ""
    outcomes: dict[str, Outcome] = defaultdict(Outcome)
    documents = []
    for path in paths:
        try:
            documents.append(load_document(path, source=f"{root}/{path.name}"))
        except ConfigError as error:
            outcomes[path.name].errors.append(str(error))
    lookup = (context or {}).get

    def values(document):
        return dummy_values(REGION, CIDR, KEY, lookup, bool(cluster_yaml.node_actions_used(document)))

    failed: set[str] = set()
    with Validation([(d, values(d), "hpc-cluster") for d in documents], region=REGION,
                    parallelcluster_version=VERSION, full=False) as first:
        try:
            first.check()
        except (ConfigError, ConfigErrors) as problem:
            for error in getattr(problem, "errors", [problem]):
                outcomes[_by_file(error, root)].errors.append(str(error))
                failed.add(_by_file(error, root))
    passing = [d for d in documents if d.source.removeprefix(f"{root}/") not in failed]
    if not passing:
        return outcomes
    templates = {name: app.synthesis.template(name) for name in app.stacks}
    objects = _objects(app)
    simulation = simulate(templates, REGION, objects=objects)
    configs = [render(d, in_account(simulation, values(d), app, templates)) for d in passing]
    with Validation([(d, values(d), "hpc-cluster") for d in passing], region=REGION,
                    parallelcluster_version=VERSION) as second:
        try:
            result = second.check_deployment(templates, objects=objects, configs=configs)
            for warning in result.warnings:
                outcomes[warning.split(":")[0].removeprefix(f"{root}/")].warnings.append(warning)
        except (ConfigError, ConfigErrors) as problem:
            for error in getattr(problem, "errors", [problem]):
                outcomes[_by_file(error, root)].errors.append(str(error))
    return outcomes


def _objects(app) -> dict[str, list[str]]:
    scripts = app.stacks["ClusterStack"].node_actions
    return {f"ClusterStack/{scripts.bucket_logical_id}": scripts.deployed_keys} if scripts else {}


def in_account(simulation, base: PlaceholderValues, app, templates) -> PlaceholderValues:
    """``base`` with the default app's simulated ids: PrereqStack outputs and the node-actions bucket."""
    scripts = app.stacks["ClusterStack"].node_actions
    stack = {**base.stack, **simulation.values}
    url = base.node_action_url
    if scripts:
        bucket = Templates(templates, REGION).ref("ClusterStack", scripts.bucket_logical_id)
        stack["ScriptsBucket"] = bucket
        url = lambda script, fixed: f"s3://{bucket}/" + object_key(  # noqa: E731
            script, None if fixed else scripts.digests.get(script, "0" * 16))
    return PlaceholderValues(stack=stack, context=base.context, node_action_url=url,
                             node_actions_dir=base.node_actions_dir)


def expectations(path: Path, marker: str) -> list[str]:
    """The ``# <marker>: <text>`` lines at the top of a corpus file."""
    found = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        if line.startswith(f"# {marker}: "):
            found.append(line[len(f"# {marker}: "):])
    return found
