"""The job bridge's test harness: a one-node Slurm cluster with the bridge installed as on a head node, S3 on moto,
and the helpers the job-bridge test files share (tests/test_job_bridge_*.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import boto3
import pytest

from job_bridge.client import STATE_FILE, JobStore
from job_bridge.submitters import Submitter
from settings.context import REPO_ROOT
from tests.local_slurm import ensure_user, free_port, running, wait_for
from tests.warm_aws_cli import warm_aws_cli

SCRIPT = REPO_ROOT / "scripts" / "node_actions" / "job_bridge.sh"
USERS_SCRIPT = REPO_ROOT / "scripts" / "node_actions" / "job_users.sh"
BUCKET, PREFIX = "data-bucket", "jobs/"
OTHER_USER = "jbridgeother"  # a local user who is no submitter


def s3_client(endpoint: str) -> Any:
    """A client of the moto S3 server at ``endpoint``."""
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing")


def s3_server() -> Iterator[str]:
    """S3 served by moto on loopback, with the data bucket (versioned, as PrereqStack makes it)."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://localhost:{port}"
    s3 = s3_client(endpoint)
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    yield endpoint
    server.stop()


def bridge_cluster(s3_endpoint: str, alice: Submitter, bob: Submitter) -> Iterator[dict[str, str]]:
    """A one-node Slurm cluster with the job bridge installed as on a head node, for two submitters (``alice``, whose
    jobs most tests submit, and ``bob``) whose users job_users.sh creates as on every node. Each test file has
    submitters of its own, so that files run side by side (make test) never share a job user."""
    JOB_USER = alice.user
    ensure_user(OTHER_USER)
    base = Path(tempfile.mkdtemp(prefix="job-bridge-"))
    base.chmod(0o755)  # the job users reach their homes below, as /home on a head node
    for sub in ("journal", "root", "home"):
        (base / sub).mkdir()
    (base / "home").chmod(0o755)
    home = base / "home"
    made = subprocess.run(["bash", str(USERS_SCRIPT), alice.spec, bob.spec], env={**os.environ, "HOME_ROOT": str(home)},
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    work = home / JOB_USER
    subprocess.run(["runuser", "-u", JOB_USER, "--", "mkdir", "-p", str(work / "job-aws")], check=True)
    root = base / "root"
    subprocess.run(["bash", str(SCRIPT), "install", BUCKET, PREFIX, f"{alice.spec} {bob.spec}"],
                   env={**os.environ, "ROOT": str(root)}, check=True, capture_output=True)
    conf = root / "etc" / "job-bridge.conf"
    with warm_aws_cli() as aws_folder:
        with conf.open("a") as extra:  # what a test needs beyond a head node: where S3, Slurm and the CLI are
            extra.write(f"HOME_ROOT={home}\nSPOOL={base}/journal\nLOCK={base}/bridge.lock\nFINALIZE_WAIT=60\n"
                        f"SBATCH=/usr/bin/sbatch\nSQUEUE=/usr/bin/squeue\nSCONTROL=/usr/bin/scontrol\n"
                        f"export SLURM_CONF={base}/slurm.conf\n"
                        f"export AWS_ENDPOINT_URL={s3_endpoint} AWS_DEFAULT_REGION=us-east-1 "
                        f"AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing\n"
                        f"export PATH={aws_folder}:{Path(sys.executable).parent}:$PATH\n")
        # The epilog is set as the cluster config sets it (CustomSlurmSettings: EpilogSlurmctld).
        with running(base, "bridge", f"JobAcctGatherType=jobacct_gather/none\nMinJobAge=600\nKillWait=2\n"
                                     f"EpilogSlurmctld={root}/opt/job-bridge/epilog") as slurm:
            yield {"conf": str(conf), "slurm_conf": str(slurm.conf), "work": str(work / "job-aws"),
                   "uid": str(alice.uid), "journal": str(base / "journal"), "base": str(base), "home": str(home),
                   "alice": alice.name, "aprefix": f"{PREFIX}{alice.name}/", "aws": str(aws_folder / "aws")}


def job_store(s3_endpoint: str, prefix: str) -> JobStore:
    return JobStore(s3_client(s3_endpoint), BUCKET, prefix)


def bridge(cluster: dict[str, str], *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], env={**os.environ, "JOB_BRIDGE_CONF": cluster["conf"], **env},
                          capture_output=True, text=True, timeout=180)


def trigger(cluster: dict[str, str], name: str, prefix: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """What the EventBridge rule makes SSM Run Command do on the head node for this upload (alice's by default)."""
    return bridge(cluster, "submit", "--key", f"{prefix or cluster['aprefix']}{name}/job-aws-stat.txt", **env)


def sweep(cluster: dict[str, str], **env: str) -> subprocess.CompletedProcess[str]:
    return bridge(cluster, "sweep", **env)


def job_folder(tmp_path: Path, name: str, script: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "job-aws-run.sh").write_text("#!/bin/bash\n" + script)
    (folder / "input.txt").write_text("21\n")
    return folder


def submit(store: JobStore, tmp_path: Path, name: str, script: str) -> None:
    store.submit(job_folder(tmp_path, name, script), stream=open(os.devnull, "w"))


def final_state(store: JobStore, name: str, timeout: float = 120) -> str:
    def done():
        """a final state"""
        # The state file alone, twice a second: status() reads three objects, and the job-bridge files poll for
        # minutes (what status() shows is asserted where it matters).
        text = store.read(name, STATE_FILE)
        assert text is not None, f"no {STATE_FILE} for {name}"
        state = text.splitlines()[0] if text else ""
        return state if state in ("JOB_COMPLETE", "JOB_FAILED", "JOB_ERROR") else None
    return wait_for(done, timeout=timeout)


def slurm(cluster: dict[str, str], *args: str) -> str:
    return subprocess.run(list(args), capture_output=True, text=True, check=True,
                          env={**os.environ, "SLURM_CONF": cluster["slurm_conf"]}).stdout


def jobs_named(cluster: dict[str, str], name: str, who: str | None = None) -> list[str]:
    return slurm(cluster, "squeue", "-h", "--states=all", f"--name=jb-{who or cluster['alice']}/{name}", "-o",
                 "%i").split()


def finalizer_running(job_id: str) -> bool:
    """Whether the bridge's finalizer of this Slurm job (`job_bridge.sh finalize ID`, started by the epilog) still
    runs: it logs before it writes the folder's state and lets go of the job's lock."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:  # the process ended
            continue
        if str(SCRIPT).encode() in args and args[args.index(str(SCRIPT).encode()) + 1:][:2] == [b"finalize",
                                                                                               job_id.encode()]:
            return True
    return False


def s3_text(store: JobStore, name: str, file: str) -> str | None:
    return store.read(name, file)


def user_program(cluster: dict[str, str], name: str, text: str) -> Path:
    """A program the job user may run (sbatch runs as the job user): in the cluster's 0755 directory."""
    path = Path(cluster["base"]) / f"{name}-{time.monotonic_ns()}"
    path.write_text(text)
    path.chmod(0o755)
    return path


def conf_with(cluster: dict[str, str], tmp_path: Path, **settings: str) -> str:
    conf = tmp_path / f"bridge-{time.monotonic_ns()}.conf"
    conf.write_text(Path(cluster["conf"]).read_text() + "".join(f"{k}={v}\n" for k, v in settings.items()))
    return str(conf)


def crash_submitter_after(cluster: dict[str, str], tmp_path: Path, name: str, sbatch_first: bool) -> None:
    """Runs the submitter with an sbatch that (optionally) submits, then lets the test kill the whole
    submitter with SIGKILL, as a crash of the head node's Run Command would."""
    marker = Path(tempfile.gettempdir()) / f"job-bridge-crash-{time.monotonic_ns()}"  # the job user may write it
    submit_line = '/usr/bin/sbatch "$@"\n' if sbatch_first else ""
    program = user_program(cluster, "sbatch-crash", f"#!/bin/bash\n{submit_line}touch {marker}\nsleep 60\n")
    conf = conf_with(cluster, tmp_path, SBATCH=str(program))
    submitter = subprocess.Popen(["bash", str(SCRIPT), "submit", "--key", f"{cluster['aprefix']}{name}/job-aws-stat.txt"],
                                 env={**os.environ, "JOB_BRIDGE_CONF": conf}, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True)
    wait_for(marker.exists, timeout=60)
    marker.unlink()
    os.killpg(submitter.pid, signal.SIGKILL)
    assert submitter.wait(timeout=30) == -signal.SIGKILL




def bridge_fixtures(alice: Submitter, bob: Submitter, other_store: str = "bob_store") -> tuple[Any, ...]:
    """A test file's fixtures, for its own two submitters: ``s3_endpoint`` and ``cluster`` (per file), ``store``
    (alice's folder) and ``other_store`` (bob's). Assign them to module names of the same names."""

    @pytest.fixture(scope="module", name="s3_endpoint")
    def s3_endpoint() -> Iterator[str]:
        yield from s3_server()

    @pytest.fixture(scope="module", name="cluster")
    def cluster(s3_endpoint: str) -> Iterator[dict[str, str]]:
        yield from bridge_cluster(s3_endpoint, alice, bob)

    @pytest.fixture(name="store")
    def store(s3_endpoint: str) -> JobStore:
        return job_store(s3_endpoint, f"{PREFIX}{alice.name}/")

    @pytest.fixture(name=other_store)
    def others(s3_endpoint: str) -> JobStore:
        return job_store(s3_endpoint, f"{PREFIX}{bob.name}/")

    return s3_endpoint, cluster, store, others
