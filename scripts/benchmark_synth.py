#!/usr/bin/env python3
"""Benchmark (not a test): `cdk synth` of this app vs a bare one-bucket CDK app, in the same run, with
the same pinned CLI and venv; and the offline cluster-config validation alone. Prints ratios.

    make benchmark        (or: .venv/bin/python scripts/benchmark_synth.py --runs 5)

Targets (issue 3): synth <= 1.5x the bare app, validation < 1 s. The synth runs reuse the schema
check's content-addressed cache after the first run, as repeated synths of an unchanged config do;
the validation timing runs the check for real every time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CDK = REPO_ROOT / "node_modules" / ".bin" / "cdk"
BARE_APP = """
from aws_cdk import App, Stack, aws_s3 as s3
app = App()
s3.Bucket(Stack(app, "Bare"), "Bucket")
app.synth()
"""


def env() -> dict[str, str]:
    return {**os.environ, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20", "AWS_EC2_METADATA_DISABLED": "true",
            "CDK_DISABLE_VERSION_CHECK": "1"}


def time_synth(app_dir: Path, out_dir: Path, runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([str(CDK), "synth", "--quiet", "--output", str(out_dir)], cwd=app_dir, env=env(), check=True,
                       capture_output=True)
        samples.append(time.perf_counter() - start)
    return samples


def time_validation(runs: int) -> list[float]:
    sys.path.insert(0, str(REPO_ROOT))
    import cluster_config
    from settings.context import shipped_context

    context = shipped_context()
    document = cluster_config.load_named_config(context["cluster_config"])
    values = cluster_config.dummy_values("us-east-1", context["vpc_cidr"], "PrereqStack-cluster", context.get,
                                         bool(cluster_config.node_actions_used(document)))
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        cluster_config.validate([(document, values, context["cluster_name"])], region="us-east-1",
                                parallelcluster_version=context["parallelcluster_version"], use_cache=False)
        samples.append(time.perf_counter() - start)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bare = Path(tmp) / "bare"
        bare.mkdir()
        (bare / "app.py").write_text(BARE_APP)
        (bare / "cdk.json").write_text(f'{{"app": "{REPO_ROOT / ".venv/bin/python"} app.py"}}')
        time_synth(bare, Path(tmp) / "warm", 1)  # warm the jsii cache once for both
        ours = time_synth(REPO_ROOT, Path(tmp) / "ours", args.runs)
        baseline = time_synth(bare, Path(tmp) / "bare.out", args.runs)
    validation = time_validation(args.runs + 2)
    ours_median, bare_median = statistics.median(ours), statistics.median(baseline)
    print(f"cdk synth, this app (PrereqStack + ClusterStack): median {ours_median:.2f} s  {sorted(ours)}")
    print(f"cdk synth, bare one-bucket app:                   median {bare_median:.2f} s  {sorted(baseline)}")
    print(f"ratio this/bare: {ours_median / bare_median:.2f}x   (target <= 1.5x)")
    print(f"offline validation (schema subprocess + rules, cache off): median {statistics.median(validation):.2f} s "
          f"(target < 1 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
