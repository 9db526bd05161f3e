"""Builds the whole app from its plan (stacks/plan.py: settings and cluster config checked first, every
problem reported at once, offline), then the stacks are composed, synthesized, and the config in the
synthesized template goes through ParallelCluster's full validation in a simulated account."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from aws_cdk import App, Environment, Stack, cx_api

from cluster_yaml.validation import DeploymentResult, Validations
from stacks.cluster_stack import ClusterStack
from stacks.plan import Plan, plan
from stacks.prereq_stack import PrereqStack


@dataclass
class BuiltApp:
    stacks: dict[str, Stack]
    validation: Validations

    def objects(self) -> dict[str, list[str]]:
        return deployed_objects(self.stacks)


def deployed_objects(stacks: dict[str, Stack]) -> dict[str, list[str]]:
    """S3 objects the deployment writes (not visible in the template), by ``Stack/BucketLogicalId``."""
    return {f"{name}/{scripts.bucket_logical_id}": scripts.deployed_keys
            for name, stack in stacks.items() if (scripts := getattr(stack, "node_actions", None))}


def build(app: App, the_plan: Plan) -> BuiltApp:
    """Adds the product's stacks to ``app``. Raises ConfigError/ConfigErrors on bad input."""
    # Region from the zone, account left to the CLI: keeps synth offline (no AZ lookups) while
    # pinning the stacks to the region their subnets live in.
    env = Environment(region=the_plan.prereq.network.region)
    prereq = PrereqStack(app, "PrereqStack", settings=the_plan.prereq, env=env,
                         description="Network, storage, data bucket and key pair for a ParallelCluster cluster")
    stacks: dict[str, Stack] = {"PrereqStack": prereq}
    for cluster in the_plan.clusters:  # each on the same PrereqStack, with the provider of its version
        name = cluster.settings.stack_name
        stacks[name] = ClusterStack(
            app, name, settings=cluster.settings, document=cluster.document, prereq=prereq,
            vpc_cidr=the_plan.prereq.network.vpc_cidr, context=the_plan.lookup, env=env,
            description=f"ParallelCluster {cluster.settings.parallelcluster_version} cluster "
                        f"{cluster.settings.cluster_name} ({cluster.document.source})")
    the_plan.validation.check()
    return BuiltApp(stacks, the_plan.validation)


@dataclass
class Synthesis:
    stacks: dict[str, Stack]
    assembly: cx_api.CloudAssembly
    deployment: DeploymentResult  # ParallelCluster's warnings and what ran

    def template(self, stack: str) -> dict:
        artifact = self.assembly.get_stack_by_name(stack)
        return json.loads((Path(self.assembly.directory) / artifact.template_file).read_text())


def synthesize(app: App, prepared: Plan | None = None) -> Synthesis:
    """Builds, synthesizes and runs ParallelCluster's full validation on the synthesized config.

    Raises ConfigError(s) for any ERROR ParallelCluster finds; its warnings are in the result.
    """
    the_plan = prepared or plan(app.node.try_get_context)
    with the_plan.validation as validation:  # ParallelCluster's worker lives exactly this long
        built = build(app, the_plan)
        synthesis = Synthesis(built.stacks, app.synth(), DeploymentResult())
        templates = {name: synthesis.template(name) for name in built.stacks}
        synthesis.deployment = validation.check_deployment(templates, objects=built.objects())
    return synthesis
