"""Operate the deployed cluster, from the stack outputs (no ids to copy by hand).

    hpc-ops status                 cluster stack, head node and compute fleet status
    hpc-ops connect [--ssh]        shell on the head node (SSM session; SSH with the fetched key)
    hpc-ops connect --login        shell on a login node (--pool NAME for one pool)
    hpc-ops fetch-key              private key from SSM Parameter Store to ~/.ssh/<key>.pem (0600)
    hpc-ops stop-fleet             stop the compute fleet (before updates that need it)
    hpc-ops start-fleet            start it again
    hpc-ops export-logs [--hours]  export the cluster's CloudWatch logs to the data bucket
    hpc-ops verify [--json]        prove the cluster works (Slurm, srun/sbatch/salloc, mounts,
                                   S3 data repositories, Pyxis, EFA, NCCL, job bridge); exit 1 on FAIL

The region defaults to AWS_DEFAULT_REGION, else the region of availability_zone in cdk.json. With several
clusters (the clusters knob), --cluster NAME picks one (default: the cluster in ClusterStack).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from commands import failed
from ops.cluster import (OpsError, cluster_stack, connect, connect_command, default_region, export_logs, fetch_key,
                         set_fleet, status)
from ops.verify import Options, as_json, table, verify

VERIFY_HELP = """Runs scripts/checks/verify_cluster.sh on the head node through SSM Run Command (no SSH, no open
ports) with a plan made from the deployed cluster config, then checks the S3 side of the Lustre data
repositories and sends a job through the job bridge. Every check prints PASS, FAIL or SKIP (with the
reason), its time and the evidence.

examples:
  hpc-ops verify                          the table; exit status 1 if any check failed
  hpc-ops verify --json > verify.json     for CI
  hpc-ops verify --timeout 1800           GPU queues whose nodes take long to start
  hpc-ops verify --nccl-min-busbw 300     fail a GPU queue whose all_reduce is below 300 GB/s
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--region")
    parser.add_argument("--profile")
    parser.add_argument("--cluster", help="with several clusters (cdk.json's clusters): which one (default: the "
                        "cluster in ClusterStack)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("status", help="cluster, head node and compute fleet status")
    connect_parser = commands.add_parser("connect", help="open a shell on the head node")
    connect_parser.add_argument("--ssh", action="store_true", help="SSH with the fetched key instead of SSM")
    connect_parser.add_argument("--print", action="store_true", help="print the command instead of running it")
    connect_parser.add_argument("--login", action="store_true", help="a login node (LoginNodes pools) instead of "
                                "the head node")
    connect_parser.add_argument("--pool", help="with --login: the login pool's Name")
    key_parser = commands.add_parser("fetch-key", help="write the private key to ~/.ssh with mode 0600")
    key_parser.add_argument("--dir", type=Path, default=Path.home() / ".ssh")
    commands.add_parser("stop-fleet", help="stop the compute fleet")
    commands.add_parser("start-fleet", help="start the compute fleet")
    logs_parser = commands.add_parser("export-logs", help="export CloudWatch logs to the data bucket")
    logs_parser.add_argument("--hours", type=int, default=24)
    verify_parser = commands.add_parser(
        "verify", help="prove the deployed cluster works; exit 1 on any FAIL",
        formatter_class=argparse.RawDescriptionHelpFormatter, description=VERIFY_HELP)
    verify_parser.add_argument("--json", action="store_true", help="print the results as JSON (for CI)")
    verify_parser.add_argument("--timeout", type=int, default=Options.timeout,
                               help="seconds per check; covers a dynamic node's cold start (default %(default)s)")
    verify_parser.add_argument("--image", default=Options.image, help="container image for the Pyxis check")
    verify_parser.add_argument("--nccl-min-busbw", type=float, default=0.0, metavar="GBPS",
                               help="all_reduce bus bandwidth a GPU queue must reach (default: report only)")
    verify_parser.add_argument("--no-job-bridge", action="store_true", help="skip the job through the S3 bridge")
    args = parser.parse_args(argv)
    try:
        stack = cluster_stack(args.cluster)
        aws = connect(args.region or default_region(), args.profile)
        if args.command == "status":
            for key, value in status(aws, stack).items():
                print(f"{key:22} {value}")
        elif args.command == "connect":
            command = connect_command(aws, args.ssh, Path.home() / ".ssh", login=args.login or bool(args.pool),
                                      pool=args.pool, stack=stack)
            if args.print:
                print(shlex.join(command))
            else:
                os.execvp(command[0], command)
        elif args.command == "fetch-key":
            print(f"wrote {fetch_key(aws, args.dir)}")
        elif args.command in ("stop-fleet", "start-fleet"):
            print(set_fleet(aws, "STOP_REQUESTED" if args.command == "stop-fleet" else "START_REQUESTED", stack))
        elif args.command == "export-logs":
            print(export_logs(aws, args.hours, stack))
        elif args.command == "verify":
            options = Options(timeout=args.timeout, image=args.image, nccl_min_busbw=args.nccl_min_busbw,
                              job_bridge=not args.no_job_bridge)
            if not args.json:
                print(f"verifying the cluster through SSM Run Command on its head node ({aws.region}); a dynamic "
                      "node's first start takes minutes", file=sys.stderr)
            results = verify(aws, options, stack=stack)
            print(as_json(results) if args.json else table(results))
            return 1 if any(r.status == "FAIL" for r in results) else 0
    except OpsError as error:
        return failed(error)
    return 0


if __name__ == "__main__":
    sys.exit(main())
