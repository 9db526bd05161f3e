#!/usr/bin/env python3
"""Benchmark (not a test): `cdk synth` of this app vs a bare one-bucket CDK app, in the same run, with
the same pinned CLI and venv; and the offline validation of the cluster config. Prints ratios.

    make benchmark        (or: .venv/bin/python scripts/benchmark_synth.py --runs 5)

Targets (issues 3 and 9): typical synths of every shipped config <= 1.5x the bare app; ParallelCluster's
whole validation (schema + every create-time validator in the simulated account) under 2 s, overlapped
with building the stacks. Typical runs:
- "changed config": a new cluster name each run (-c cluster_name=...), so the schema check and the dry
  run are answered afresh, as after any edit of the config;
- "unchanged": the same synth again (answers come from .cache/pcluster).
"cold" runs clear .cache/pcluster first (the first synth after a clone or a venv update) and are reported
for information.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CDK = REPO_ROOT / "node_modules" / ".bin" / "cdk"
CACHE = REPO_ROOT / ".cache" / "pcluster"
BARE_APP = """
from aws_cdk import App, Stack, aws_s3 as s3
app = App()
s3.Bucket(Stack(app, "Bare"), "Bucket")
app.synth()
"""
CONFIG_CONTEXT = {"gpu-p5": ["-c", "CAPACITY_RESERVATION_ID=cr-0123456789abcdef0"]}


def env() -> dict[str, str]:
    return {**os.environ, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20", "AWS_EC2_METADATA_DISABLED": "true",
            "CDK_DISABLE_VERSION_CHECK": "1"}


def time_synth(app_dir: Path, out_dir: Path, runs: int, args: list[str] = (), mode: str = "unchanged",
               extra_env: dict[str, str] | None = None) -> list[float]:
    samples = []
    for run in range(runs):
        extra_args = []
        if mode == "cold":
            shutil.rmtree(CACHE, ignore_errors=True)
        elif mode == "changed config":
            extra_args = ["-c", f"cluster_name=bench-{os.getpid()}-{time.monotonic_ns() % 10**9}-{run}"]
        start = time.perf_counter()
        subprocess.run([str(CDK), "synth", "--quiet", "--output", str(out_dir), *args, *extra_args], cwd=app_dir,
                       env={**env(), **(extra_env or {})},
                       check=True, capture_output=True)
        samples.append(time.perf_counter() - start)
    return samples


def time_validation(runs: int) -> tuple[list[float], list[float], int]:
    """(the whole validation alone, cold worker, no cache; the part a synth of a changed config waits for
    after synthesizing, planned first as app.py does; ParallelCluster validators run)."""
    sys.path.insert(0, str(REPO_ROOT))
    os.environ.update(env())
    from app import jsii_node_options

    os.environ["NODE_OPTIONS"] = jsii_node_options(os.environ.get("NODE_OPTIONS", ""), os.cpu_count() or 1)
    from aws_cdk import App

    from settings.context import shipped_context
    from stacks.app_builder import synthesize
    from stacks.plan import plan

    context = shipped_context()
    synthesis = synthesize(App(context=context, outdir=tempfile.mkdtemp()))
    templates = {name: synthesis.template(name) for name in synthesis.stacks}
    objects = {f"ClusterStack/{synthesis.stacks['ClusterStack'].node_actions.bucket_logical_id}":
               synthesis.stacks["ClusterStack"].node_actions.deployed_keys}
    alone, waited, validators = [], [], 0
    for _ in range(runs):
        shutil.rmtree(CACHE, ignore_errors=True)
        start = time.perf_counter()
        prepared = plan(context.get)
        prepared.validation.check()
        validators = prepared.validation.check_deployment(templates, objects=objects).validators
        alone.append(time.perf_counter() - start)

        for answer in CACHE.glob("*"):  # a changed config: no answer is cached, the last account is known
            if not answer.name.startswith("last-account-"):
                answer.unlink()
        import cluster_config.validation as validation

        original = validation.Validation.check_deployment
        spent: list[float] = []

        def timed(self, *args, **kwargs):
            begin = time.perf_counter()
            try:
                return original(self, *args, **kwargs)
            finally:
                spent.append(time.perf_counter() - begin)

        validation.Validation.check_deployment = timed
        try:
            prepared = plan(context.get)
            synthesize(App(context=context, outdir=tempfile.mkdtemp()), prepared)
        finally:
            validation.Validation.check_deployment = original
        waited.append(spent[0])
    return alone, waited, validators


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO_ROOT))
    from app import jsii_node_options
    from cluster_config import available_configs

    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        bare = Path(tmp) / "bare"
        bare.mkdir()
        (bare / "app.py").write_text(BARE_APP)
        (bare / "cdk.json").write_text(f'{{"app": "{REPO_ROOT / ".venv/bin/python"} app.py"}}')
        time_synth(bare, Path(tmp) / "warm", 1)  # warm the jsii cache once for both
        baseline = time_synth(bare, Path(tmp) / "bare.out", args.runs)
        # The bare app again with the V8 pool size app.py sets for itself: the ratio without that tuning.
        tuned = {"NODE_OPTIONS": jsii_node_options(os.environ.get("NODE_OPTIONS", ""), os.cpu_count() or 1)}
        tuned_baseline = time_synth(bare, Path(tmp) / "bare-tuned.out", args.runs, extra_env=tuned)
        for name in available_configs():
            context = ["-c", f"cluster_config={name}", *CONFIG_CONTEXT.get(name, [])]
            for mode in ("cold", "changed config", "unchanged"):
                results[f"{name}, {mode}"] = time_synth(REPO_ROOT, Path(tmp) / name, args.runs, context, mode)
    alone, waited, validators = time_validation(args.runs)
    bare_median, tuned_median = statistics.median(baseline), statistics.median(tuned_baseline)
    print(f"cdk synth, bare one-bucket app: median {bare_median:.2f} s  {[round(s, 2) for s in sorted(baseline)]}")
    print(f"cdk synth, bare one-bucket app with {tuned['NODE_OPTIONS']} (as app.py runs CDK): median "
          f"{tuned_median:.2f} s  {[round(s, 2) for s in sorted(tuned_baseline)]}")
    for label, samples in results.items():
        median = statistics.median(samples)
        target = "for information" if label.endswith("cold") else "target <= 1.5x"
        print(f"cdk synth, this app ({label}): median {median:.2f} s  ratio {median / bare_median:.2f}x "
              f"({target}; {median / tuned_median:.2f}x the bare app given the same pool size)")
    print(f"validation alone (plan + schema + {validators} ParallelCluster validators in the simulated account, "
          f"cold worker, no cache): median {statistics.median(alone):.2f} s (target < 2 s)")
    print(f"validation still running when the stacks are synthesized (what a changed config's synth waits for): median "
          f"{statistics.median(waited):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
