"""Upgrade ParallelCluster as blue/green: a new cluster beside the old one on the same storage, no job lost.

    hpc-upgrade plan --to-version 3.16.1 [--write]   the clusters entry for cdk.json, and every step
    hpc-upgrade move-bridge OLD NEW                  the job bridge leaves OLD, then starts on NEW
    hpc-upgrade drain OLD [--wait SECONDS]           OLD takes no new job; waits for its queue to empty
    hpc-upgrade remove OLD                           cdk destroy OLD's stack once its queue is empty

Between them: hpc-deploy --cluster NEW, and hpc-ops --cluster NEW verify. Each step reads where things stand
(CloudFormation, Slurm, cdk.json): run it again after an interruption. Details: docs/day2.md.
"""

from __future__ import annotations

import argparse
import json
import sys

from commands import failed
from ops.cluster import OpsError, connect, default_region
from ops.upgrade import Upgrade, default_steps, plan, write_clusters
from settings import ConfigError, ConfigErrors, PrereqSettings, read
from settings.cluster import Clusters


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--region")
    parser.add_argument("--profile")
    steps = parser.add_subparsers(dest="step", required=True)
    plan_parser = steps.add_parser("plan", help="the cdk.json edit and the steps (offline)")
    plan_parser.add_argument("--to-version", required=True, metavar="VERSION")
    plan_parser.add_argument("--from", dest="old", metavar="CLUSTER", help="default: the cluster in ClusterStack")
    plan_parser.add_argument("--name", help="the new cluster's name (default: <old name>-<version with dashes>)")
    plan_parser.add_argument("--write", action="store_true", help="write the clusters entry into cdk.json")
    bridge_parser = steps.add_parser("move-bridge", help="the job bridge leaves OLD, then starts on NEW")
    bridge_parser.add_argument("old")
    bridge_parser.add_argument("new")
    drain_parser = steps.add_parser("drain", help="OLD's partitions take no new job; wait for its queue to empty")
    drain_parser.add_argument("old")
    drain_parser.add_argument("--wait", type=float, default=3600, metavar="SECONDS",
                              help="how long to wait for the queue (default %(default)s)")
    remove_parser = steps.add_parser("remove", help="cdk destroy OLD's stack once its queue is empty")
    remove_parser.add_argument("old")
    args = parser.parse_args(argv)
    try:
        try:
            clusters = read(Clusters)
            prereq = read(PrereqSettings)
        except (ConfigError, ConfigErrors) as error:
            raise OpsError(f"cdk.json does not read: {str(error).splitlines()[0]}") from None
        if args.step == "plan":
            entries, commands = plan(clusters, args.to_version, args.old, args.name,
                                     accounting=prereq.slurm_accounting)
            if args.write:
                write_clusters(entries)
                read(Clusters)  # what was written reads back (a version without a lock says so here)
                print("cdk.json: clusters written")
            print('"clusters": ' + json.dumps(entries, indent=2))
            print("\nsteps:\n" + "\n".join(f"  {n}. {c}" for n, c in enumerate(commands, 1)))
            return 0
        aws = connect(args.region or default_region(), args.profile)
        upgrade = Upgrade(aws, clusters, default_steps(aws, args.profile))
        if args.step == "move-bridge":
            return upgrade.move_bridge(args.old, args.new)
        if args.step == "drain":
            return upgrade.drain(args.old, args.wait)
        return upgrade.remove(args.old)
    except (OpsError, ConfigError, ConfigErrors) as error:
        return failed(error)


if __name__ == "__main__":
    sys.exit(main())
