"""Submit a job folder through the data bucket, follow its state, fetch its results (boto3)."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TextIO

from botocore.exceptions import ClientError, NoCredentialsError

from job_bridge.submitters import ROLE_NAME, role_name_of

STATE_FILE = "job-aws-stat.txt"
JOB_SCRIPT = "job-aws-run.sh"
JOBID_FILE = "job-aws-jobid.txt"
ERROR_FILE = "job-aws-sbatch.out"
REASON_FILE = "job-aws-reason.txt"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")  # same rule as the head node's


class JobBridgeError(Exception):
    """A problem the user can fix, in one sentence."""


class Progress:
    """A one-line progress bar on a terminal (plain lines otherwise), fed by boto3 transfer callbacks."""

    def __init__(self, label: str, total: int, stream: TextIO = sys.stderr, width: int = 30) -> None:
        self.label, self.total, self.stream, self.width, self.done = label, max(total, 1), stream, width, 0

    def __call__(self, chunk: int) -> None:
        self.done += chunk
        filled = int(self.width * min(self.done, self.total) / self.total)
        percent = int(100 * min(self.done, self.total) / self.total)
        end = "\n" if self.done >= self.total else ""
        if self.stream.isatty() or end:
            self.stream.write(f"\r[{'#' * filled}{' ' * (self.width - filled)}] {percent:3d}% "
                              f"{self.done / 1e6:.1f}/{self.total / 1e6:.1f} MB {self.label}{end}")
            self.stream.flush()


@dataclass
class JobStore:
    s3: Any  # boto3 S3 client
    bucket: str
    prefix: str = "jobs/"

    def key(self, name: str, file: str = "") -> str:
        return f"{self.prefix.rstrip('/')}/{name}/{file}"

    def _call(self, action: Callable[[], Any]) -> Any:
        try:
            return action()
        except NoCredentialsError:
            raise JobBridgeError("no AWS credentials found: run `aws configure` (or `aws sso login`), "
                                 "or set AWS_PROFILE") from None
        except ClientError as error:
            code = error.response["Error"]["Code"]
            if code == "NoSuchBucket" or (code in ("404", "NotFound") and error.operation_name == "HeadBucket"):
                raise JobBridgeError(f"bucket {self.bucket} does not exist (or is not visible with these "
                                     "credentials): pass --bucket, or deploy PrereqStack") from None
            raise JobBridgeError(f"S3 {error.operation_name}: {error.response['Error'].get('Message', code)}") from None

    def _bucket_exists(self) -> None:
        """Asks only under the job prefix: a submitter may list nothing else (HeadBucket would need s3:ListBucket
        on the whole bucket)."""
        self._call(lambda: self.s3.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix, MaxKeys=1))

    def names_in(self, name: str) -> list[dict[str, Any]]:
        pages = self._call(lambda: list(self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.key(name))))
        return [item for page in pages for item in page.get("Contents", [])]

    def submit(self, directory: Path, name: str | None = None, stream: TextIO = sys.stderr) -> str:
        name = name or directory.resolve().name
        if not NAME_PATTERN.match(name):
            raise JobBridgeError(f"job name '{name}' is not allowed: use letters, digits, '.', '_', '-' "
                                 "(pass --name to choose another)")
        if not (directory / JOB_SCRIPT).is_file():
            raise JobBridgeError(f"{directory}/{JOB_SCRIPT} is missing: it is the Slurm batch script the cluster runs")
        self._bucket_exists()
        if self.names_in(name):
            raise JobBridgeError(f"s3://{self.bucket}/{self.key(name)} already exists: choose another --name, or "
                                 "fetch and delete that job first")
        files = [p for p in sorted(directory.rglob("*")) if p.is_file() and p.name != STATE_FILE]
        progress = Progress(f"{name} ({len(files)} files)", sum(p.stat().st_size for p in files), stream)
        for path in files:
            relative = path.relative_to(directory).as_posix()
            self._call(lambda: self.s3.upload_file(str(path), self.bucket, self.key(name, relative),
                                                   Callback=progress))
        if not files or progress.done == 0:
            progress(0)
        # The state file goes last: its upload is what starts the job on the cluster.
        self._call(lambda: self.s3.put_object(Bucket=self.bucket, Key=self.key(name, STATE_FILE),
                                              Body=b"FILE_UPLOAD\n"))
        return name

    def read(self, name: str, file: str) -> str | None:
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=self.key(name, file))["Body"].read()
        except ClientError as error:
            if error.response["Error"]["Code"] in ("NoSuchKey", "404"):
                return None
            raise JobBridgeError(f"S3 GetObject: {error.response['Error'].get('Message', error)}") from None
        return body.decode().strip()

    def status(self, name: str) -> dict[str, str]:
        self._bucket_exists()
        state = self.read(name, STATE_FILE)
        if state is None:
            raise JobBridgeError(f"no job {name} under s3://{self.bucket}/{self.prefix}: check the name")
        result = {"job": name, "state": state.splitlines()[0] if state else ""}
        job_id = self.read(name, JOBID_FILE)
        if job_id:
            result["slurm job id"] = job_id
        if result["state"] == "JOB_ERROR":
            result["error"] = self.read(name, ERROR_FILE) or "(no message)"
        if result["state"] == "JOB_FAILED":
            result["reason"] = self.read(name, REASON_FILE) or "(no reason recorded)"
        return result

    def fetch(self, name: str, destination: Path, stream: TextIO = sys.stderr) -> list[Path]:
        objects = self.names_in(name)
        if not objects:
            raise JobBridgeError(f"no job {name} under s3://{self.bucket}/{self.prefix}: check the name")
        root = destination.resolve()
        unsafe = [o["Key"] for o in objects if not _inside(root, o["Key"][len(self.key(name)):])]
        if unsafe:  # a key such as jobs/x/../../.bashrc must not write outside the destination
            raise JobBridgeError(f"refusing to fetch {name}: {len(unsafe)} object key(s) would be written outside "
                                 f"{destination}, e.g. {unsafe[0]!r}; nothing was written")
        progress = Progress(f"{name} ({len(objects)} files)", sum(o["Size"] for o in objects), stream)
        written = []
        for item in objects:
            relative = item["Key"][len(self.key(name)):]
            if not relative or relative.endswith("/"):
                continue
            target = root / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            self._call(lambda: self.s3.download_file(self.bucket, item["Key"], str(target), Callback=progress))
            written.append(target)
        if progress.done == 0:
            progress(0)
        return written


def submitter_prefix(job_prefix: str, sts: Any, submitter: str | None = None) -> str:
    """``<job prefix><submitter>/``: the folder the bucket lets this caller use. The submitter is the name of the
    caller's IAM role (STS GetCallerIdentity, which needs no permission) unless given."""
    if not submitter:
        try:
            arn = sts.get_caller_identity()["Arn"]
        except NoCredentialsError:
            raise JobBridgeError("no AWS credentials found: run `aws configure` (or `aws sso login`), "
                                 "or set AWS_PROFILE") from None
        except ClientError as error:
            raise JobBridgeError(f"STS GetCallerIdentity: {error.response['Error'].get('Message', error)}") from None
        submitter = role_name_of(arn)
        if not submitter:
            raise JobBridgeError(f"you are {arn}, not an IAM role: the job bridge takes jobs from the roles in "
                                 "job_bridge_submitters (assume one, or pass --submitter <role name>)")
    if not ROLE_NAME.match(submitter):
        raise JobBridgeError(f"'{submitter}' is not an IAM role name")
    return f"{job_prefix.rstrip('/')}/{submitter}/"


def _inside(root: Path, relative: str) -> bool:
    """True when ``root/relative`` stays inside ``root`` (no absolute part, no ``..`` escaping it)."""
    if not relative or relative.endswith("/"):
        return True
    if relative.startswith("/") or "\\" in relative:
        return False
    target = (root / relative).resolve()
    return target != root and root in target.parents
