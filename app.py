#!/usr/bin/env python3
"""CDK entry point. Bad configuration exits with a readable message, never a stack trace."""

import json
import os
import sys
from pathlib import Path

from settings.errors import ConfigError, ConfigErrors
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


KERNEL_PRELOAD = Path(__file__).resolve().parent / "scripts" / "jsii_kernel.js"


def jsii_node_options(current: str, cores: int) -> str:
    """NODE_OPTIONS for the jsii kernel (node) that runs CDK.

    Every synth runs CDK's built-in CloudFormation validation as WebAssembly. V8 compiles it on its
    worker pool (4 threads by default): on a 2-core machine they starve the kernel's main thread and
    ParallelCluster's validation worker, so the pool gets half the cores (measured here: app.synth()
    2.1 s -> 1.0 s). KERNEL_PRELOAD keeps V8 from recompiling the WebAssembly after synth, which held up
    the kernel's exit. A pool size the user already set wins."""
    options = [current] if current else []
    if "--v8-pool-size" not in current:
        options.append(f"--v8-pool-size={max(1, min(4, cores // 2))}")
    if str(KERNEL_PRELOAD) not in current:
        options.append(f'--require "{KERNEL_PRELOAD}"')  # quoted: NODE_OPTIONS splits on spaces
    return " ".join(options)


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
