"""Deploy (or update) PrereqStack and the cluster stacks the careful way, each step shown as it runs:

  1. synthesize once: what is checked is what is deployed (cdk deploy --app <that cdk.out>)
  2. preflight, read-only: CDK bootstrap, instance types offered in the AZ, capacity reservations,
     the OpenZFS deployment type in the region, On-Demand vCPU quotas, the cluster name
  3. update plan: ParallelCluster's update policy for every changed key (an unsupported change stops)
  4. deploy; when the plan needs the compute fleet stopped: drain or stop it, deploy, start it again
     (also after a failed deploy; an interrupted run is finished by the next one)
  5. hpc-ops verify

examples:
  hpc-deploy                                  first deploy, or an update that applies live
  hpc-deploy --wait-for-jobs                  an update that needs the fleet stopped: let jobs finish
  hpc-deploy --stop-now                       ... stop it now (running jobs are requeued or lost)
  hpc-deploy -c cluster_config=gpu-p5 -c CAPACITY_RESERVATION_ID=cr-0123456789abcdef0
  hpc-deploy --yes --no-verify                in CI: no approval prompt, no verification
  hpc-deploy --skip openzfs                   skip a preflight check (its data may be stale)
  hpc-deploy --cluster hpc-cluster-2          with several clusters (cdk.json's clusters): PrereqStack and
                                              that cluster only

The region defaults to AWS_DEFAULT_REGION, else the region of availability_zone in cdk.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from cluster_yaml.sidecar import WorkerError
from commands import failed
from ops.cluster import OpsError, connect, default_region
from ops.deploy import Deployer, Options, default_steps

CHECKS = ("region", "bootstrap", "instance-types", "capacity", "openzfs", "vcpu-quota", "cluster-name")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--region")
    parser.add_argument("--profile")
    parser.add_argument("-c", "--context", action="append", default=[], metavar="KEY=VALUE",
                        help="CDK context, as with cdk deploy -c")
    fleet = parser.add_mutually_exclusive_group()
    fleet.add_argument("--wait-for-jobs", action="store_true",
                       help="if the fleet must stop: let running jobs finish first (no new job starts meanwhile)")
    fleet.add_argument("--stop-now", action="store_true", help="if the fleet must stop: stop it without waiting")
    parser.add_argument("--drain-timeout", type=int, default=3600, metavar="SECONDS",
                        help="with --wait-for-jobs: how long running jobs get (default %(default)s)")
    parser.add_argument("--no-verify", action="store_true", help="do not run hpc-ops verify at the end")
    parser.add_argument("--yes", action="store_true", help="no approval prompt for IAM/security changes")
    parser.add_argument("--skip", action="append", default=[], choices=CHECKS, help="skip a preflight check")
    parser.add_argument("--output", type=Path, help="where to synthesize (default: a temporary cdk.out)")
    parser.add_argument("--cluster", metavar="NAME", help="deploy PrereqStack and this cluster's stack only")
    args = parser.parse_args(argv)
    bad = [pair for pair in args.context if "=" not in pair]
    if bad:
        parser.error(f"-c takes KEY=VALUE, got {bad[0]!r}")
    options = Options(wait_for_jobs=args.wait_for_jobs, stop_now=args.stop_now, drain_timeout=args.drain_timeout,
                      verify=not args.no_verify, skip=tuple(args.skip), approve=args.yes,
                      context=dict(pair.split("=", 1) for pair in args.context), cluster=args.cluster)
    try:
        aws = connect(args.region or default_region(), args.profile)
        with tempfile.TemporaryDirectory(prefix="deploy-") as tmp:
            assembly = args.output or Path(tmp) / "cdk.out"
            return Deployer(aws, options, default_steps(profile=args.profile), assembly).run()
    except (OpsError, WorkerError) as error:  # WorkerError: a ParallelCluster venv to install first
        return failed(error)


if __name__ == "__main__":
    sys.exit(main())
