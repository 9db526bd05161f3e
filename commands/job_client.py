"""On-premises client of the job bridge: submit a job folder, follow it, fetch the results.

    hpc-job submit ./work [--name job0001]   uploads the folder, then FILE_UPLOAD
    hpc-job status job0001                   FILE_UPLOAD / JOB_SUBMIT / JOB_COMPLETE / ...
    hpc-job fetch job0001 ./results          downloads the job folder with its results

The folder must contain job-aws-run.sh (the Slurm batch script). The bucket defaults to PrereqStack's
DataBucketName output; the prefix to the context value job_bridge_prefix (jobs/), below which each
submitter has its own folder, named after its IAM role (the role of your credentials, or --submitter).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cluster_yaml.stack_values import DATA_BUCKET_NAME
from commands import failed
from job_bridge.client import JobBridgeError, JobStore, submitter_prefix
from ops.cluster import OpsError, connect, default_region, outputs
from settings import read
from settings.cluster import ClusterSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bucket", help="default: PrereqStack output DataBucketName")
    parser.add_argument("--prefix", default=read(ClusterSettings).job_bridge_prefix,
                        help="the job prefix (default: job_bridge_prefix of cdk.json)")
    parser.add_argument("--submitter", help="your submitter's folder: default, the name of your credentials' IAM role")
    parser.add_argument("--region")
    parser.add_argument("--profile")
    commands = parser.add_subparsers(dest="command", required=True)
    submit = commands.add_parser("submit", help="upload a job folder and request its submission")
    submit.add_argument("directory", type=Path)
    submit.add_argument("--name", help="job name in S3 (default: the folder's name)")
    status = commands.add_parser("status", help="state of a job")
    status.add_argument("name")
    fetch = commands.add_parser("fetch", help="download a job folder with its results")
    fetch.add_argument("name")
    fetch.add_argument("destination", type=Path)
    args = parser.parse_args(argv)
    try:
        aws = connect(args.region or default_region(), args.profile)
        bucket = args.bucket or outputs(aws, "PrereqStack").get(DATA_BUCKET_NAME)
        if not bucket:
            raise JobBridgeError("PrereqStack has no DataBucketName output: pass --bucket")
        store = JobStore(aws.client("s3"), bucket, submitter_prefix(args.prefix, aws.client("sts"), args.submitter))
        if args.command == "submit":
            name = store.submit(args.directory, args.name)
            print(f"submitted {name}: s3://{bucket}/{store.key(name)} (follow with: status {name})")
        elif args.command == "status":
            for key, value in store.status(args.name).items():
                print(f"{key:14} {value}")
        else:
            files = store.fetch(args.name, args.destination)
            print(f"fetched {len(files)} files into {args.destination}")
    except (JobBridgeError, OpsError) as error:
        return failed(error)
    return 0


if __name__ == "__main__":
    sys.exit(main())
