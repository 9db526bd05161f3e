#!/usr/bin/env python3
"""CDK entry point. Bad configuration exits with a readable message, never a stack trace."""

import json
import os
import sys

from settings.errors import ConfigError, ConfigErrors
from stacks.jsii_kernel import jsii_node_options
from stacks.plan import plan


def cli_context() -> dict:
    """The context the CDK CLI hands the app (as aws_cdk.App reads it): CDK_CONTEXT_JSON, plus the file
    named by CONTEXT_OVERFLOW_LOCATION_ENV when the context is too large for the environment."""
    context = json.loads(os.environ.get("CDK_CONTEXT_JSON") or "{}")
    overflow = os.environ.get("CONTEXT_OVERFLOW_LOCATION_ENV")
    if overflow and os.path.exists(overflow):
        with open(overflow) as file:
            context.update(json.load(file))
    return context


def main() -> int:
    os.environ["NODE_OPTIONS"] = jsii_node_options(os.environ.get("NODE_OPTIONS", ""), os.cpu_count() or 1)
    try:
        # Planned before aws_cdk is imported: ParallelCluster's validation worker warms up meanwhile.
        prepared = plan(cli_context().get)
        from aws_cdk import App

        from stacks.app_builder import synthesize

        result = synthesize(App(), prepared).deployment
    except (ConfigError, ConfigErrors) as error:
        print(f"Configuration error:\n{error}", file=sys.stderr)
        return 1
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
