"""How the jsii kernel (the node process that runs CDK) is started: app.py, the tests and the benchmark set
NODE_OPTIONS from here before aws_cdk is imported. Nothing here imports aws_cdk."""

from __future__ import annotations

from pathlib import Path

KERNEL_PRELOAD = Path(__file__).with_name("jsii_kernel.js")


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
