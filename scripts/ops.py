#!/usr/bin/env python3
"""Operate the deployed cluster, from the stack outputs (no ids to copy by hand).

    scripts/ops.py status                 cluster stack, head node and compute fleet status
    scripts/ops.py connect [--ssh]        shell on the head node (SSM session; SSH with the fetched key)
    scripts/ops.py connect --login        shell on a login node (--pool NAME for one pool)
    scripts/ops.py fetch-key              private key from SSM Parameter Store to ~/.ssh/<key>.pem (0600)
    scripts/ops.py stop-fleet             stop the compute fleet (before updates that need it)
    scripts/ops.py start-fleet            start it again
    scripts/ops.py export-logs [--hours]  export the cluster's CloudWatch logs to the data bucket

The region defaults to AWS_DEFAULT_REGION, else the region of availability_zone in cdk.json.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ops.cluster import (OpsError, connect, connect_command, export_logs, fetch_key, set_fleet,  # noqa: E402
                         status)


def default_region() -> str | None:
    if os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION"):
        return None  # boto3 reads them itself
    from settings.context import shipped_context
    from settings.prereq import AZ_PATTERN

    match = AZ_PATTERN.match(str(shipped_context().get("availability_zone", "")))
    return match.group("region") if match else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--region")
    parser.add_argument("--profile")
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
    args = parser.parse_args(argv)
    try:
        aws = connect(args.region or default_region(), args.profile)
        if args.command == "status":
            for key, value in status(aws).items():
                print(f"{key:22} {value}")
        elif args.command == "connect":
            command = connect_command(aws, args.ssh, Path.home() / ".ssh", login=args.login or bool(args.pool),
                                      pool=args.pool)
            if args.print:
                print(shlex.join(command))
            else:
                os.execvp(command[0], command)
        elif args.command == "fetch-key":
            print(f"wrote {fetch_key(aws, args.dir)}")
        elif args.command in ("stop-fleet", "start-fleet"):
            print(set_fleet(aws, "STOP_REQUESTED" if args.command == "stop-fleet" else "START_REQUESTED"))
        elif args.command == "export-logs":
            print(export_logs(aws, args.hours))
    except OpsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
