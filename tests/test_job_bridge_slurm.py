"""The job bridge for real: Debian's Slurm (munged + slurmctld + slurmd on localhost, the epilog set
in slurm.conf as the cluster config sets it) and S3 served by moto on loopback.

A job folder goes up with the client, the submitter runs as SSM Run Command would run it, Slurm
runs the job, the epilog writes the results and the final state back, the client fetches them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import boto3
import pytest

from job_bridge.client import JobStore
from settings.context import REPO_ROOT
from tests.local_slurm import LocalSlurm, free_port, missing_tools, wait_for

SCRIPT = REPO_ROOT / "scripts" / "node_actions" / "job_bridge.sh"
BUCKET, PREFIX = "data-bucket", "jobs/"
missing = missing_tools("munged", "slurmctld", "slurmd", "sbatch", "squeue")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    bool(missing) or os.geteuid() != 0,
    reason=f"needs Debian's slurm-wlm and munge and root (missing: {missing}); `make test` installs them as root")]


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://localhost:{port}"
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                      aws_secret_access_key="testing")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    yield endpoint
    server.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str) -> Iterator[dict[str, str]]:
    """A one-node Slurm cluster with the job bridge installed as on a head node."""
    base = tmp_path_factory.mktemp("slurm")
    for sub in ("work", "journal", "root"):
        (base / sub).mkdir()
    root = base / "root"
    subprocess.run(["bash", str(SCRIPT), "install", BUCKET, PREFIX, "root"], env={**os.environ, "ROOT": str(root)},
                   check=True, capture_output=True)
    conf = root / "etc" / "job-bridge.conf"
    with conf.open("a") as extra:  # what a test needs beyond a head node: where S3 and Slurm are
        extra.write(f"WORK_ROOT={base}/work\nSPOOL={base}/journal\nLOCK={base}/bridge.lock\n"
                    f"SBATCH=/usr/bin/sbatch\nSQUEUE=/usr/bin/squeue\nexport SLURM_CONF={base}/slurm.conf\n"
                    f"export AWS_ENDPOINT_URL={s3_endpoint} AWS_DEFAULT_REGION=us-east-1 "
                    f"AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing\n"
                    f"export PATH={Path(sys.executable).parent}:$PATH\n")
    slurm = LocalSlurm(base)
    # The epilog is set as the cluster config sets it (CustomSlurmSettings: EpilogSlurmctld).
    slurm.write_conf(f"JobAcctGatherType=jobacct_gather/none\nMinJobAge=600\n"
                     f"EpilogSlurmctld={root}/opt/job-bridge/epilog")
    try:
        slurm.start_munge()
        slurm.start_slurm()
        yield {"conf": str(conf), "slurm_conf": str(slurm.conf), "work": str(base / "work"),
               "journal": str(base / "journal"), "logs": str(base / "log")}
    finally:
        slurm.stop()


@pytest.fixture
def store(s3_endpoint: str) -> JobStore:
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", aws_access_key_id="testing",
                      aws_secret_access_key="testing")
    return JobStore(s3, BUCKET, PREFIX)


def trigger(cluster: dict[str, str], **env: str) -> subprocess.CompletedProcess[str]:
    """What the EventBridge rule makes SSM Run Command do on the head node."""
    return subprocess.run(["bash", str(SCRIPT), "submit"], env={**os.environ, "JOB_BRIDGE_CONF": cluster["conf"], **env},
                          capture_output=True, text=True, timeout=120)


def job_folder(tmp_path: Path, name: str, script: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "job-aws-run.sh").write_text("#!/bin/bash\n" + script)
    (folder / "input.txt").write_text("21\n")
    return folder


def final_state(store: JobStore, name: str) -> str:
    def done():
        """a final state"""
        state = store.status(name)["state"]
        return state if state in ("JOB_COMPLETE", "JOB_FAILED", "JOB_ERROR") else None
    return wait_for(done)


def jobs_named(cluster: dict[str, str], name: str) -> list[str]:
    out = subprocess.run(["squeue", "-h", "--states=all", f"--name=jb-{name}", "-o", "%i"], capture_output=True,
                         text=True, env={**os.environ, "SLURM_CONF": cluster["slurm_conf"]}).stdout
    return out.split()


def test_submit_run_epilog_fetch(cluster, store, tmp_path: Path):
    folder = job_folder(tmp_path, "job0001", 'echo "answer $(( $(cat input.txt) * 2 ))" > result.txt\n')
    assert store.submit(folder, stream=open(os.devnull, "w")) == "job0001"
    assert store.status("job0001")["state"] == "FILE_UPLOAD"
    result = trigger(cluster)
    assert result.returncode == 0, result.stderr
    assert "job0001: submitted as job" in result.stderr
    assert final_state(store, "job0001") == "JOB_COMPLETE"
    status = store.status("job0001")
    assert status["slurm job id"] == jobs_named(cluster, "job0001")[0]
    files = store.fetch("job0001", tmp_path / "back", stream=open(os.devnull, "w"))
    assert (tmp_path / "back" / "result.txt").read_text() == "answer 42\n"
    assert {f.name for f in files} >= {"result.txt", "input.txt", "job-aws-run.sh", "job-aws-stat.txt"}


def test_duplicate_and_concurrent_triggers_submit_once(cluster, store, tmp_path: Path):
    store.submit(job_folder(tmp_path, "job0002", "sleep 2; echo done > result.txt\n"), stream=open(os.devnull, "w"))
    env = {**os.environ, "JOB_BRIDGE_CONF": cluster["conf"]}
    together = [subprocess.Popen(["bash", str(SCRIPT), "submit"], env=env, stderr=subprocess.PIPE)
                for _ in range(3)]
    assert all(p.wait(timeout=120) == 0 for p in together)
    assert trigger(cluster).returncode == 0  # a late duplicate event
    assert final_state(store, "job0002") == "JOB_COMPLETE"
    assert trigger(cluster).returncode == 0  # the epilog's own state write fires the rule again
    assert len(jobs_named(cluster, "job0002")) == 1


def test_failing_job_is_marked_failed_with_its_output(cluster, store, tmp_path: Path):
    store.submit(job_folder(tmp_path, "job0003", "echo partial > result.txt\nexit 3\n"), stream=open(os.devnull, "w"))
    trigger(cluster)
    assert final_state(store, "job0003") == "JOB_FAILED"
    store.fetch("job0003", tmp_path / "back3", stream=open(os.devnull, "w"))
    assert (tmp_path / "back3" / "result.txt").read_text() == "partial\n"


def test_sbatch_error_is_visible(cluster, store, tmp_path: Path):
    store.submit(job_folder(tmp_path, "job0004", "#SBATCH --partition=no-such-partition\necho hi\n"),
                 stream=open(os.devnull, "w"))
    trigger(cluster)
    status = store.status("job0004")
    assert status["state"] == "JOB_ERROR"
    assert "sbatch failed" in status["error"] and "invalid partition" in status["error"].lower()
    assert jobs_named(cluster, "job0004") == []


def test_crash_between_sbatch_and_state_write_does_not_submit_twice(cluster, store, tmp_path: Path):
    store.submit(job_folder(tmp_path, "job0005", "sleep 1; echo ok > result.txt\n"), stream=open(os.devnull, "w"))
    crashing = tmp_path / "sbatch-then-crash"
    # Submits for real, then kills the whole submitter before it can record anything.
    crashing.write_text('#!/bin/bash\n/usr/bin/sbatch "$@"\nkill -KILL -- -"$(ps -o pgid= $$ | tr -d " ")"\n')
    crashing.chmod(0o755)
    env = {**os.environ, "JOB_BRIDGE_CONF": cluster["conf"]}
    conf_with_crash = tmp_path / "crash.conf"
    conf_with_crash.write_text(Path(cluster["conf"]).read_text() + f"SBATCH={crashing}\n")
    crashed = subprocess.run(["bash", str(SCRIPT), "submit"], env={**env, "JOB_BRIDGE_CONF": str(conf_with_crash)},
                             capture_output=True, text=True, start_new_session=True, timeout=120)
    assert crashed.returncode == -signal.SIGKILL
    assert store.status("job0005")["state"] == "FILE_UPLOAD"  # nothing recorded in S3
    assert trigger(cluster).returncode == 0  # the next event recovers from the journal and squeue
    assert final_state(store, "job0005") == "JOB_COMPLETE"
    assert len(jobs_named(cluster, "job0005")) == 1


def test_odd_folder_names_are_rejected_clearly(cluster, store):
    store.s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}my job/job-aws-run.sh", Body=b"#!/bin/bash\necho hi\n")
    store.s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}my job/job-aws-stat.txt", Body=b"FILE_UPLOAD\n")
    assert trigger(cluster).returncode == 0
    status = store.status("my job")
    assert status["state"] == "JOB_ERROR"
    assert "job folder name 'my job' is not allowed" in status["error"]
