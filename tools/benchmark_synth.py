#!/usr/bin/env python3
"""Benchmark (not a test): `cdk synth` of this app vs a bare one-bucket CDK app, in the same run, with
the same pinned CLI and venv; and the offline validation of the cluster config. Prints ratios.

    make benchmark        (or: .venv/bin/python tools/benchmark_synth.py --runs 9)

Targets (issues 3 and 9): typical synths of every shipped config <= 1.5x the bare app; ParallelCluster's
whole validation (schema + every create-time validator in the simulated account) under 2 s, overlapped
with building the stacks. Typical runs:
- "edited config": a copy of the config with a new ScaledownIdletime on each run (written beside it as
  benchmark-edit-<name>.yaml, removed after the run): the schema check and the dry run are answered
  afresh, the stacks around the config stay the same;
- "unchanged": the same synth again (answers come from .cache/pcluster).
Reported for information: "renamed cluster" (a new -c cluster_name each run: the simulated account
changes too, as its policy names carry the cluster name) and "cold" (.cache/pcluster cleared first: the
first synth after a clone or a venv update).
"""

from __future__ import annotations

import argparse
from collections import defaultdict
import os
import re
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
CONFIG_DIR = REPO_ROOT / "cluster_configs"
BARE_APP = """
from aws_cdk import App, Stack, aws_s3 as s3
app = App()
s3.Bucket(Stack(app, "Bare"), "Bucket")
app.synth()
"""
MODES = ("cold", "edited config", "renamed cluster", "unchanged")
BARE, TUNED = "bare", "bare, tuned"
CONFIG_CONTEXT = {"gpu-p5": ["-c", "CAPACITY_RESERVATION_ID=cr-0123456789abcdef0"]}


def env() -> dict[str, str]:
    return {**os.environ, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20", "AWS_EC2_METADATA_DISABLED": "true",
            "CDK_DISABLE_VERSION_CHECK": "1"}


def time_synth(app_dir: Path, out_dir: Path, runs: int, args: list[str] = (), mode: str = "unchanged",
               extra_env: dict[str, str] | None = None) -> list[float]:
    samples = []
    for run in range(runs):
        run_args, edited = list(args), None
        if mode == "cold":
            shutil.rmtree(CACHE, ignore_errors=True)
        elif mode == "renamed cluster":
            run_args += ["-c", f"cluster_name=bench-{os.getpid()}-{time.monotonic_ns() % 10**9}-{run}"]
        elif mode == "edited config":
            at = next(i for i, arg in enumerate(run_args) if arg.startswith("cluster_config="))
            name = run_args[at].split("=", 1)[1]
            edited = CONFIG_DIR / f"benchmark-edit-{name}.yaml"
            # A new idle time on every run, as an admin's edit: the stacks around it stay the same.
            idle_time = 10 + time.time_ns() // 10**6 % 10**5
            edited.write_text(re.sub(r"ScaledownIdletime: \d+", f"ScaledownIdletime: {idle_time}",
                                     (CONFIG_DIR / f"{name}.yaml").read_text()))
            run_args[at] = f"cluster_config={edited.stem}"
        start = time.perf_counter()
        try:
            subprocess.run([str(CDK), "synth", "--quiet", "--output", str(out_dir), *run_args], cwd=app_dir,
                           env={**env(), **(extra_env or {})}, check=True, capture_output=True)
        finally:
            if edited:
                edited.unlink()
        samples.append(time.perf_counter() - start)
    return samples


def time_validation(runs: int) -> tuple[list[float], int]:
    """(the whole validation alone: plan, schema and dry run in a cold worker, no cache, nothing
    overlapped; ParallelCluster validators run)."""
    os.environ.update(env())
    from stacks.jsii_kernel import jsii_node_options

    os.environ["NODE_OPTIONS"] = jsii_node_options(os.environ.get("NODE_OPTIONS", ""), os.cpu_count() or 1)
    from aws_cdk import App

    from settings.context import shipped_context
    from stacks.app_builder import deployed_objects, synthesize
    from stacks.plan import plan

    context = shipped_context()
    synthesis = synthesize(App(context=context, outdir=tempfile.mkdtemp()))
    templates = {name: synthesis.template(name) for name in synthesis.stacks}
    objects = deployed_objects(synthesis.stacks)
    alone, validators = [], 0
    for _ in range(runs):
        shutil.rmtree(CACHE, ignore_errors=True)
        start = time.perf_counter()
        prepared = plan(context.get)
        with prepared.validation as validation:
            validation.check()
            validators = validation.check_deployment(templates, objects=objects).validators
        alone.append(time.perf_counter() - start)
    return alone, validators


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    from stacks.jsii_kernel import jsii_node_options
    from cluster_yaml import available_configs

    for leftover in CONFIG_DIR.glob("benchmark-edit-*.yaml"):  # from a run that was killed
        leftover.unlink()
    results: dict[str, list[float]] = defaultdict(list)
    tuned = {"NODE_OPTIONS": jsii_node_options(os.environ.get("NODE_OPTIONS", ""), os.cpu_count() or 1)}
    with tempfile.TemporaryDirectory() as tmp:
        bare = Path(tmp) / "bare"
        bare.mkdir()
        (bare / "app.py").write_text(BARE_APP)
        (bare / "cdk.json").write_text(f'{{"app": "{REPO_ROOT / ".venv/bin/python"} app.py"}}')
        time_synth(bare, Path(tmp) / "warm", 1)  # warm the jsii cache once for both
        # Round after round, every case once per round: a machine that slows down or speeds up during the
        # benchmark moves every case alike.
        for _ in range(args.runs):
            results[BARE] += time_synth(bare, Path(tmp) / "bare.out", 1)
            # The bare app again with the node options app.py gives CDK's kernel: the ratio without that tuning.
            results[TUNED] += time_synth(bare, Path(tmp) / "bare-tuned.out", 1, extra_env=tuned)
            for name in available_configs():
                context = ["-c", f"cluster_config={name}", *CONFIG_CONTEXT.get(name, [])]
                for mode in MODES:  # in this order: the edit finds the account the cold run left
                    results[f"{name}, {mode}"] += time_synth(REPO_ROOT, Path(tmp) / name, 1, context, mode)
    baseline, tuned_baseline = results.pop(BARE), results.pop(TUNED)
    alone, validators = time_validation(args.runs)
    bare_median, tuned_median = statistics.median(baseline), statistics.median(tuned_baseline)
    print(f"cdk synth, bare one-bucket app: median {bare_median:.2f} s  {[round(s, 2) for s in sorted(baseline)]}")
    print(f"cdk synth, bare one-bucket app with NODE_OPTIONS={tuned['NODE_OPTIONS']} (as app.py runs CDK): median "
          f"{tuned_median:.2f} s  {[round(s, 2) for s in sorted(tuned_baseline)]}")
    for label, samples in results.items():
        median = statistics.median(samples)
        target = "target <= 1.5x" if label.endswith(("edited config", "unchanged")) else "for information"
        print(f"cdk synth, this app ({label}): median {median:.2f} s  ratio {median / bare_median:.2f}x "
              f"({target}; {median / tuned_median:.2f}x the bare app given the same node options)")
    print(f"validation alone (plan + schema + {validators} ParallelCluster validators in the simulated account, "
          f"cold worker, no cache): median {statistics.median(alone):.2f} s (target < 2 s)")
    for mode in ("edited config", "renamed cluster"):
        added = [statistics.median(results[f"{name}, {mode}"]) - statistics.median(results[f"{name}, unchanged"])
                 for name in available_configs()]
        print(f"what {'an' if mode[0] in 'aeiou' else 'a'} {mode} adds to an unchanged synth (validation not hidden behind "
              f"building the stacks): {min(added):.2f}-{max(added):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
