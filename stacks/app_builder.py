"""Builds the whole app from context: settings first (all errors at once), then the stacks."""

from __future__ import annotations

from aws_cdk import App, Environment

from settings.context import ContextReader
from settings.prereq import PrereqSettings
from stacks.prereq_stack import PrereqStack


def build(app: App) -> dict[str, PrereqStack]:
    """Adds the product's stacks to ``app``. Raises ConfigError/ConfigErrors on bad context."""
    reader = ContextReader(app.node.try_get_context)
    settings = PrereqSettings.from_context(reader)
    # Region from the zone, account left to the CLI: keeps synth offline (no AZ lookups) while
    # pinning the stack to the region its subnets live in.
    env = Environment(region=settings.network.region)
    prereq = PrereqStack(app, "PrereqStack", settings=settings, env=env,
                         description="Network, storage, data bucket and key pair for a ParallelCluster cluster")
    return {"PrereqStack": prereq}
