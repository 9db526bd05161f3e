"""The job bridge for real: Debian's Slurm (munged + slurmctld + slurmd on localhost, the epilog set in
slurm.conf as the cluster config sets it), S3 served by moto on loopback, and jobs run by a non-root
job user, as on a head node. The submitter runs as SSM Run Command runs it (root, `submit --key`),
the sweep as its timer does.

Half of these tests are attacks and faults (issues 11 and 16): a job that plants symlinks, a job of another
user named after a victim, one submitter's job against another's folder, cancellations, a submitter killed
mid-way, a failed download, odd names, a re-run uploaded while the previous run ends, a backlog.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import boto3
import pytest

from job_bridge.client import JobStore
from job_bridge.submitters import submitter
from settings.context import REPO_ROOT
from tests.local_slurm import ensure_user, free_port, needs, running, wait_for

SCRIPT = REPO_ROOT / "scripts" / "node_actions" / "job_bridge.sh"
USERS_SCRIPT = REPO_ROOT / "scripts" / "node_actions" / "job_users.sh"
BUCKET, PREFIX = "data-bucket", "jobs/"
ALICE = submitter("arn:aws:iam::123456789012:role/alice-lab")  # the submitter most tests submit as
BOB = submitter("arn:aws:iam::111122223333:role/bob-lab")
APREFIX = f"{PREFIX}{ALICE.name}/"  # alice's own folder in the bucket
JOB_USER, OTHER_USER = ALICE.user, "jbridgeother"
pytestmark = needs("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "useradd", "runuser")


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
def cluster(s3_endpoint: str) -> Iterator[dict[str, str]]:
    """A one-node Slurm cluster with the job bridge installed as on a head node, for two submitters (alice and bob)
    whose users job_users.sh creates as on every node; alice's jobs run as JOB_USER."""
    ensure_user(OTHER_USER)
    base = Path(tempfile.mkdtemp(prefix="job-bridge-"))
    base.chmod(0o755)  # the job users reach their homes below, as /home on a head node
    for sub in ("journal", "root", "home"):
        (base / sub).mkdir()
    (base / "home").chmod(0o755)
    home = base / "home"
    made = subprocess.run(["bash", str(USERS_SCRIPT), ALICE.spec, BOB.spec], env={**os.environ, "HOME_ROOT": str(home)},
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    work = home / JOB_USER
    subprocess.run(["runuser", "-u", JOB_USER, "--", "mkdir", "-p", str(work / "job-aws")], check=True)
    root = base / "root"
    subprocess.run(["bash", str(SCRIPT), "install", BUCKET, PREFIX, f"{ALICE.spec} {BOB.spec}"],
                   env={**os.environ, "ROOT": str(root)}, check=True, capture_output=True)
    conf = root / "etc" / "job-bridge.conf"
    with conf.open("a") as extra:  # what a test needs beyond a head node: where S3 and Slurm are
        extra.write(f"HOME_ROOT={home}\nSPOOL={base}/journal\nLOCK={base}/bridge.lock\nFINALIZE_WAIT=60\n"
                    f"SBATCH=/usr/bin/sbatch\nSQUEUE=/usr/bin/squeue\nSCONTROL=/usr/bin/scontrol\n"
                    f"export SLURM_CONF={base}/slurm.conf\n"
                    f"export AWS_ENDPOINT_URL={s3_endpoint} AWS_DEFAULT_REGION=us-east-1 "
                    f"AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing\n"
                    f"export PATH={Path(sys.executable).parent}:$PATH\n")
    # The epilog is set as the cluster config sets it (CustomSlurmSettings: EpilogSlurmctld).
    with running(base, "bridge", f"JobAcctGatherType=jobacct_gather/none\nMinJobAge=600\nKillWait=2\n"
                                 f"EpilogSlurmctld={root}/opt/job-bridge/epilog") as slurm:
        yield {"conf": str(conf), "slurm_conf": str(slurm.conf), "work": str(work / "job-aws"), "uid": str(ALICE.uid),
               "journal": str(base / "journal"), "base": str(base), "home": str(home)}


@pytest.fixture
def store(s3_endpoint: str) -> JobStore:
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", aws_access_key_id="testing",
                      aws_secret_access_key="testing")
    return JobStore(s3, BUCKET, APREFIX)


@pytest.fixture
def bob_store(s3_endpoint: str) -> JobStore:
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", aws_access_key_id="testing",
                      aws_secret_access_key="testing")
    return JobStore(s3, BUCKET, f"{PREFIX}{BOB.name}/")


def bridge(cluster: dict[str, str], *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], env={**os.environ, "JOB_BRIDGE_CONF": cluster["conf"], **env},
                          capture_output=True, text=True, timeout=180)


def trigger(cluster: dict[str, str], name: str, prefix: str = APREFIX, **env: str) -> subprocess.CompletedProcess[str]:
    """What the EventBridge rule makes SSM Run Command do on the head node for this upload."""
    return bridge(cluster, "submit", "--key", f"{prefix}{name}/job-aws-stat.txt", **env)


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
        state = store.status(name)["state"]
        return state if state in ("JOB_COMPLETE", "JOB_FAILED", "JOB_ERROR") else None
    return wait_for(done, timeout=timeout)


def slurm(cluster: dict[str, str], *args: str) -> str:
    return subprocess.run(list(args), capture_output=True, text=True, check=True,
                          env={**os.environ, "SLURM_CONF": cluster["slurm_conf"]}).stdout


def jobs_named(cluster: dict[str, str], name: str, who: str = ALICE.name) -> list[str]:
    return slurm(cluster, "squeue", "-h", "--states=all", f"--name=jb-{who}/{name}", "-o", "%i").split()


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
    submitter = subprocess.Popen(["bash", str(SCRIPT), "submit", "--key", f"{APREFIX}{name}/job-aws-stat.txt"],
                                 env={**os.environ, "JOB_BRIDGE_CONF": conf}, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True)
    wait_for(marker.exists, timeout=60)
    marker.unlink()
    os.killpg(submitter.pid, signal.SIGKILL)
    assert submitter.wait(timeout=30) == -signal.SIGKILL


# -- what users rely on ------------------------------------------------------------------------------
def test_submit_run_epilog_fetch_as_the_job_user(cluster, store, tmp_path: Path):
    submit(store, tmp_path, "job0001", 'echo "answer $(( $(cat input.txt) * 2 )) from $(id -un)" > result.txt\n')
    assert store.status("job0001")["state"] == "FILE_UPLOAD"
    result = trigger(cluster, "job0001")
    assert result.returncode == 0, result.stderr
    assert "job0001: JOB_SUBMIT" in result.stderr
    assert final_state(store, "job0001") == "JOB_COMPLETE"
    status = store.status("job0001")
    assert status["slurm job id"] == jobs_named(cluster, "job0001")[0]
    store.fetch("job0001", tmp_path / "back", stream=open(os.devnull, "w"))
    assert (tmp_path / "back" / "result.txt").read_text() == f"answer 42 from {JOB_USER}\n"
    assert Path(cluster["work"], "job0001", "result.txt").stat().st_uid == int(cluster["uid"])


def test_duplicate_and_concurrent_triggers_submit_once(cluster, store, tmp_path: Path):
    submit(store, tmp_path, "job0002", "sleep 2; echo done > result.txt\n")
    env = {**os.environ, "JOB_BRIDGE_CONF": cluster["conf"]}
    key = f"{APREFIX}job0002/job-aws-stat.txt"
    together = [subprocess.Popen(["bash", str(SCRIPT), "submit", "--key", key], env=env, stderr=subprocess.PIPE)
                for _ in range(3)] + [subprocess.Popen(["bash", str(SCRIPT), "sweep"], env=env, stderr=subprocess.PIPE)]
    assert all(p.wait(timeout=120) == 0 for p in together)
    assert trigger(cluster, "job0002").returncode == 0  # a late duplicate event
    assert final_state(store, "job0002") == "JOB_COMPLETE"
    assert trigger(cluster, "job0002").returncode == 0  # the state writes fire the rule again
    assert sweep(cluster).returncode == 0
    assert len(jobs_named(cluster, "job0002")) == 1


def test_failing_job_is_marked_failed_with_its_output_and_reason(cluster, store, tmp_path: Path):
    submit(store, tmp_path, "job0003", "echo partial > result.txt\nexit 3\n")
    trigger(cluster, "job0003")
    assert final_state(store, "job0003") == "JOB_FAILED"
    assert "FAILED" in s3_text(store, "job0003", "job-aws-reason.txt")
    store.fetch("job0003", tmp_path / "back3", stream=open(os.devnull, "w"))
    assert (tmp_path / "back3" / "result.txt").read_text() == "partial\n"


def test_sbatch_error_is_visible(cluster, store, tmp_path: Path):
    submit(store, tmp_path, "job0004", "#SBATCH --partition=no-such-partition\necho hi\n")
    trigger(cluster, "job0004")
    status = store.status("job0004")
    assert status["state"] == "JOB_ERROR"
    assert "sbatch failed" in status["error"] and "invalid partition" in status["error"].lower()
    assert jobs_named(cluster, "job0004") == []


def test_crash_between_sbatch_and_state_write_does_not_submit_twice(cluster, store, tmp_path: Path):
    submit(store, tmp_path, "job0005", "sleep 1; echo ok > result.txt\n")
    crash_submitter_after(cluster, tmp_path, "job0005", sbatch_first=True)
    assert store.status("job0005")["state"] == "FILE_UPLOAD"  # nothing recorded in S3
    assert sweep(cluster).returncode == 0  # the next run recovers the job by its upload's comment
    assert final_state(store, "job0005") == "JOB_COMPLETE"
    assert len(jobs_named(cluster, "job0005")) == 1


# -- attacks: root on the head node --------------------------------------------------------------------
def test_a_symlink_in_the_work_folder_never_makes_root_write_through_it(cluster, store, tmp_path: Path):
    root_only = tmp_path / "root-only"  # stands for /etc/cron.d
    root_only.mkdir()
    root_only.chmod(0o755)
    submit(store, tmp_path, "job0006", f"ln -s {root_only} sub\n")
    trigger(cluster, "job0006")
    final_state(store, "job0006")
    # The same folder again, now with a file under sub/: the download must not follow the job's link.
    store.s3.put_object(Bucket=BUCKET, Key=f"{APREFIX}job0006/sub/evil", Body=b"* * * * * root touch /pwned\n")
    store.s3.put_object(Bucket=BUCKET, Key=f"{APREFIX}job0006/job-aws-stat.txt", Body=b"FILE_UPLOAD\n")
    trigger(cluster, "job0006")
    assert final_state(store, "job0006") == "JOB_ERROR"
    assert "could not copy the job folder" in store.status("job0006")["error"]
    assert not (root_only / "evil").exists()


def test_a_work_root_replaced_by_a_symlink_is_refused(cluster, store, tmp_path: Path):
    work = Path(cluster["work"])
    moved = work.with_name("job-aws.real")
    work.rename(moved)
    decoy = tmp_path / "decoy"
    decoy.mkdir()
    work.symlink_to(decoy)
    try:
        submit(store, tmp_path, "job0007", "echo hi\n")
        trigger(cluster, "job0007")
        status = store.status("job0007")
        assert status["state"] == "JOB_ERROR" and "is a symbolic link: refusing to use it" in status["error"]
        assert list(decoy.iterdir()) == []
    finally:
        work.unlink()
        moved.rename(work)


def test_results_never_include_what_the_job_user_cannot_read(cluster, store, tmp_path: Path):
    secret = tmp_path / "munge.key"  # root-only, as /etc/munge/munge.key
    secret.write_text("root secret\n")
    secret.chmod(0o600)
    submit(store, tmp_path, "job0008", f"ln -s {secret} leak.txt\nln -s /nowhere dangling\nmkfifo pipe\n"
                                       "echo ok > result.txt\n")
    trigger(cluster, "job0008")
    assert final_state(store, "job0008") == "JOB_COMPLETE"  # a dangling link and a FIFO do not block the end
    keys = {o["Key"].split("/", 3)[3] for o in store.names_in("job0008")}
    assert "result.txt" in keys and not {"leak.txt", "dangling", "pipe"} & keys
    assert not any(b"root secret" in store.s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()
                   for o in store.names_in("job0008"))


@pytest.mark.parametrize("submitters", ["root", "alice:root:0", f"{ALICE.spec} x:jb-x:0"])
def test_the_installer_refuses_root_as_a_job_user(tmp_path: Path, submitters: str):
    result = subprocess.run(["bash", str(SCRIPT), "install", BUCKET, PREFIX, submitters],
                            env={**os.environ, "ROOT": str(tmp_path)}, capture_output=True, text=True)
    assert result.returncode == 2 and "jobs must not run as root" in result.stderr
    assert not (tmp_path / "etc" / "job-bridge.conf").exists()


# -- attacks and faults: state integrity -----------------------------------------------------------------
def test_another_users_job_named_after_a_folder_does_not_end_it(cluster, store, tmp_path: Path):
    submit(store, tmp_path, "job0009", "sleep 8; echo mine > result.txt\n")
    trigger(cluster, "job0009")
    forged = subprocess.run(["runuser", "-u", OTHER_USER, "--", "sbatch", "--parsable", f"--job-name=jb-{ALICE.name}/job0009",
                             "--chdir=/tmp", "--wrap", "echo forged"], capture_output=True, text=True,
                            env={**os.environ, "SLURM_CONF": cluster["slurm_conf"]}, check=True)
    forged_id = forged.stdout.strip()
    wait_for(lambda: "COMPLETED" in slurm(cluster, "squeue", "-h", "--states=all", "-j", forged_id, "-o", "%T"))
    time.sleep(2)
    assert store.status("job0009")["state"] == "JOB_SUBMIT"  # the forged job's epilog changed nothing
    assert final_state(store, "job0009") == "JOB_COMPLETE"
    store.fetch("job0009", tmp_path / "back9", stream=open(os.devnull, "w"))
    assert (tmp_path / "back9" / "result.txt").read_text() == "mine\n"


def test_cancelling_a_running_job_ends_it_as_failed_with_slurms_reason(cluster, store, tmp_path: Path):
    submit(store, tmp_path, "job0010", "echo started > result.txt\nsleep 120\n")
    trigger(cluster, "job0010")
    [job_id] = jobs_named(cluster, "job0010")
    wait_for(lambda: "RUNNING" in slurm(cluster, "squeue", "-h", "-j", job_id, "-o", "%T"))
    slurm(cluster, "scancel", job_id)
    assert final_state(store, "job0010") == "JOB_FAILED"
    assert "CANCELLED" in s3_text(store, "job0010", "job-aws-reason.txt")


def test_cancelling_a_pending_job_is_settled_by_the_sweep(cluster, store, tmp_path: Path):
    submit(store, tmp_path, "job0011", "#SBATCH --begin=now+3600\necho never\n")
    trigger(cluster, "job0011")
    [job_id] = jobs_named(cluster, "job0011")
    slurm(cluster, "scancel", job_id)  # no epilog runs for a job that never started
    wait_for(lambda: "CANCELLED" in slurm(cluster, "squeue", "-h", "--states=all", "-j", job_id, "-o", "%T"))
    assert store.status("job0011")["state"] == "JOB_SUBMIT"
    assert sweep(cluster).returncode == 0
    assert store.status("job0011")["state"] == "JOB_FAILED"
    assert "CANCELLED" in s3_text(store, "job0011", "job-aws-reason.txt")


def test_a_job_faster_than_its_submitter_never_goes_back_to_job_submit(cluster, store, tmp_path: Path):
    # The job runs and ends before sbatch returns to the submitter.
    slow = user_program(cluster, "sbatch-slow", '#!/bin/bash\nid=$(/usr/bin/sbatch "$@")\nsleep 6\necho "$id"\n')
    submit(store, tmp_path, "job0012", "echo quick > result.txt\n")
    result = subprocess.run(["bash", str(SCRIPT), "submit", "--key", f"{APREFIX}job0012/job-aws-stat.txt"],
                            env={**os.environ, "JOB_BRIDGE_CONF": conf_with(cluster, tmp_path, SBATCH=str(slow))},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert final_state(store, "job0012") == "JOB_COMPLETE"
    time.sleep(1)
    assert store.status("job0012")["state"] == "JOB_COMPLETE"


def test_a_new_upload_of_a_finished_folder_is_a_new_submission_even_after_a_crash(cluster, store, tmp_path: Path):
    submit(store, tmp_path, "job0013", "echo first > result.txt\n")
    trigger(cluster, "job0013")
    assert final_state(store, "job0013") == "JOB_COMPLETE"
    [first] = jobs_named(cluster, "job0013")
    store.s3.put_object(Bucket=BUCKET, Key=f"{APREFIX}job0013/job-aws-stat.txt", Body=b"FILE_UPLOAD\n")
    crash_submitter_after(cluster, tmp_path, "job0013", sbatch_first=False)
    assert sweep(cluster).returncode == 0  # recovery: no job carries this upload's comment, so submit it
    assert final_state(store, "job0013") == "JOB_COMPLETE"
    ids = jobs_named(cluster, "job0013")
    assert len(ids) == 2 and store.status("job0013")["slurm job id"] == ids[1] != first


def test_a_failed_download_is_not_submitted(cluster, store, tmp_path: Path):
    failing = tmp_path / "aws"  # the CLI fails to download (disk full), and works otherwise
    failing.write_text(f'#!/bin/bash\nif [[ "$1 $2" == "s3 sync" && "$3" == s3://* ]]; then\n'
                       f'  echo "[Errno 28] No space left on device" >&2; exit 1\nfi\nexec {shutil.which("aws")} "$@"\n')
    failing.chmod(0o755)
    submit(store, tmp_path, "job0014", "echo hi\n")
    subprocess.run(["bash", str(SCRIPT), "submit", "--key", f"{APREFIX}job0014/job-aws-stat.txt"],
                   env={**os.environ, "JOB_BRIDGE_CONF": conf_with(cluster, tmp_path, AWS=str(failing))},
                   capture_output=True, timeout=120)
    status = store.status("job0014")
    assert status["state"] == "JOB_ERROR" and "No space left on device" in status["error"]
    assert jobs_named(cluster, "job0014") == []


@pytest.mark.parametrize("name", ["my job", "team/x", "tab\there"])
def test_odd_folder_names_get_job_error_from_the_sweep(cluster, store, name: str):
    store.s3.put_object(Bucket=BUCKET, Key=f"{APREFIX}{name}/job-aws-run.sh", Body=b"#!/bin/bash\necho hi\n")
    store.s3.put_object(Bucket=BUCKET, Key=f"{APREFIX}{name}/job-aws-stat.txt", Body=b"FILE_UPLOAD\n")
    assert sweep(cluster).returncode == 0
    state = store.s3.get_object(Bucket=BUCKET, Key=f"{APREFIX}{name}/job-aws-stat.txt")["Body"].read().decode()
    assert state.strip() == "JOB_ERROR"
    error = store.s3.get_object(Bucket=BUCKET, Key=f"{APREFIX}{name}/job-aws-sbatch.out")["Body"].read().decode()
    assert f"job folder name '{name}' is not allowed" in error


def test_the_sweep_reads_no_folder_it_has_seen(cluster, store, tmp_path: Path):
    """Finished folders cost the sweep nothing: one listing, no object read per folder."""
    counting = tmp_path / "aws"
    calls = tmp_path / "calls"
    counting.write_text(f'#!/bin/bash\necho "$1 $2" >> {calls}\nexec {shutil.which("aws")} "$@"\n')
    counting.chmod(0o755)
    env = {**os.environ, "JOB_BRIDGE_CONF": conf_with(cluster, tmp_path, AWS=str(counting))}
    assert subprocess.run(["bash", str(SCRIPT), "sweep"], env=env, capture_output=True, timeout=120).returncode == 0
    calls.unlink(missing_ok=True)
    assert subprocess.run(["bash", str(SCRIPT), "sweep"], env=env, capture_output=True, timeout=120).returncode == 0
    assert calls.read_text().splitlines() == ["s3api list-objects-v2"]


# -- round two (issue 16): environment, locks, an unreachable controller, a failed PUT --------------------
def test_jobs_start_with_a_clean_explicit_environment(cluster, store, tmp_path: Path):
    """The submitter runs as root with AWS credentials in its environment: none of it reaches the job."""
    submit(store, tmp_path, "job-env", "env | sort > env.txt\n")
    result = trigger(cluster, "job-env", AWS_SESSION_TOKEN="root-session-token", ROOT_ONLY_CANARY="canary-2b7f")
    assert result.returncode == 0, result.stderr
    assert final_state(store, "job-env") == "JOB_COMPLETE"
    store.fetch("job-env", tmp_path / "back-env", stream=open(os.devnull, "w"))
    environment = (tmp_path / "back-env" / "env.txt").read_text()
    assert "canary-2b7f" not in environment and "root-session-token" not in environment
    assert "AWS_" not in environment
    assert f"USER={JOB_USER}\n" in environment and "PATH=/usr/local/bin:/usr/bin:/bin:/opt/slurm/bin\n" in environment


def test_a_local_user_holding_the_old_lock_path_cannot_stop_the_bridge(cluster, store, tmp_path: Path):
    """/run/lock is world-writable: another user may create and hold /var/lock/job-bridge.lock before root. The
    bridge's lock is in its root-owned spool instead."""
    if not (os.path.isdir("/var/lock") and os.stat("/var/lock").st_mode & 0o002):
        pytest.skip("no world-writable /var/lock here")
    conf = conf_with(cluster, tmp_path, LOCK="")  # the default
    holder = subprocess.Popen(["runuser", "-u", OTHER_USER, "--", "flock", "/var/lock/job-bridge.lock", "sleep", "120"])
    try:
        wait_for(lambda: os.path.exists("/var/lock/job-bridge.lock"), timeout=30)
        submit(store, tmp_path, "job-lock", "echo ok > result.txt\n")
        result = bridge({**cluster, "conf": conf}, "sweep")
        assert result.returncode == 0, result.stderr
        assert store.status("job-lock")["state"] in ("JOB_SUBMIT", "JOB_COMPLETE")
        lock = Path(cluster["journal"]) / "lock"
        assert lock.exists() and lock.stat().st_uid == 0 and not lock.stat().st_mode & 0o022
        assert not Path(cluster["journal"]).stat().st_mode & 0o022
    finally:
        holder.kill()
        holder.wait()
        Path("/var/lock/job-bridge.lock").unlink(missing_ok=True)
    assert final_state(store, "job-lock") == "JOB_COMPLETE"


def unreachable_squeue(cluster: dict[str, str]) -> Path:
    """The real squeue, pointed at a controller port nobody listens on (as when slurmctld is down)."""
    conf = Path(cluster["base"]) / f"unreachable-{time.monotonic_ns()}.conf"
    text = Path(cluster["slurm_conf"]).read_text()
    lines = [line for line in text.splitlines() if not line.startswith(("SlurmctldPort=", "MessageTimeout="))]
    conf.write_text("\n".join(lines + [f"SlurmctldPort={free_port()}", "MessageTimeout=2"]) + "\n")
    conf.chmod(0o644)
    return user_program(cluster, "squeue-unreachable", f"#!/bin/sh\nSLURM_CONF={conf} exec /usr/bin/squeue \"$@\"\n")


def test_an_unreachable_controller_never_ends_a_job(cluster, store, tmp_path: Path):
    submit(store, tmp_path, "job-unreachable", "sleep 25; echo ok > result.txt\n")
    assert trigger(cluster, "job-unreachable").returncode == 0
    assert store.status("job-unreachable")["state"] == "JOB_SUBMIT"
    blind = conf_with(cluster, tmp_path, SQUEUE=str(unreachable_squeue(cluster)))
    started = time.monotonic()
    result = bridge({**cluster, "conf": blind}, "sweep")
    assert result.returncode == 0, result.stderr
    assert "Slurm did not answer" in result.stderr
    assert time.monotonic() - started < 20  # the job was still running while the sweep could not ask
    assert store.status("job-unreachable")["state"] == "JOB_SUBMIT"  # not JOB_FAILED: nobody said the job ended
    assert s3_text(store, "job-unreachable", "job-aws-reason.txt") is None
    assert final_state(store, "job-unreachable") == "JOB_COMPLETE"


def test_an_unreachable_controller_never_submits_an_upload_twice(cluster, store, tmp_path: Path):
    """A submitter killed after sbatch, then a sweep that cannot ask Slurm whether the upload was submitted:
    it leaves the upload for a later sweep, which finds the job."""
    submit(store, tmp_path, "job-recheck", "sleep 3; echo ok > result.txt\n")
    crash_submitter_after(cluster, tmp_path, "job-recheck", sbatch_first=True)
    blind = conf_with(cluster, tmp_path, SQUEUE=str(unreachable_squeue(cluster)))
    assert bridge({**cluster, "conf": blind}, "sweep").returncode == 0
    assert len(jobs_named(cluster, "job-recheck")) == 1
    assert sweep(cluster).returncode == 0
    assert final_state(store, "job-recheck") == "JOB_COMPLETE"
    assert len(jobs_named(cluster, "job-recheck")) == 1


def test_a_failed_put_of_the_job_id_is_retried_by_the_sweep(cluster, store, tmp_path: Path):
    marker = Path(cluster["base"]) / f"put-failed-{time.monotonic_ns()}"
    aws = Path(sys.executable).parent / "aws"
    flaky = user_program(cluster, "aws-flaky", "#!/bin/bash\nfor arg in \"$@\"; do\n"
                         f"  if [[ \"$arg\" == s3://*/job-aws-jobid.txt && ! -e {marker} ]]; then touch {marker}; exit 1; fi\n"
                         f"done\nexec {aws} \"$@\"\n")
    submit(store, tmp_path, "job-put", "sleep 6; echo ok > result.txt\n")
    result = bridge({**cluster, "conf": conf_with(cluster, tmp_path, AWS=str(flaky))}, "submit", "--key",
                    f"{APREFIX}job-put/job-aws-stat.txt")
    assert result.returncode == 0, result.stderr
    assert marker.exists() and "state not written yet" in result.stderr
    # Retried by the reconciliation that ends every submitter and sweep (before: FILE_UPLOAD for good).
    assert sweep(cluster).returncode == 0
    status = store.status("job-put")
    assert status["state"] in ("JOB_SUBMIT", "JOB_COMPLETE")
    assert status["slurm job id"] == jobs_named(cluster, "job-put")[0]
    assert final_state(store, "job-put") == "JOB_COMPLETE"
    assert len(jobs_named(cluster, "job-put")) == 1


def test_crash_recovery_never_adopts_another_users_job(cluster, store, tmp_path: Path):
    """Another local user pre-submits a held job carrying the comment of the victim's upload (as the old,
    computable token, and even as the real one), then the victim's submitter dies before sbatch: the next run
    submits the victim's own job as the job user and ignores the other user's."""
    import hashlib
    import hmac

    submit(store, tmp_path, "job-adopt", "echo mine > result.txt\n")
    key = f"{APREFIX}job-adopt/job-aws-stat.txt"
    head = store.s3.head_object(Bucket=BUCKET, Key=key)
    seconds = str(int(head["LastModified"].timestamp()))
    old_token = hashlib.sha256(f"{key}|{head['ETag']}|{seconds}".encode()).hexdigest()[:32]
    crash_submitter_after(cluster, tmp_path, "job-adopt", sbatch_first=False)  # the secret exists from now on
    secret = bytes.fromhex((Path(cluster["journal"]) / "secret").read_text())
    real_token = hmac.new(secret, f"{key}|{head['ETag']}|{seconds}".encode(), hashlib.sha256).hexdigest()[:32]
    assert real_token != old_token and (Path(cluster["journal"]) / "secret").stat().st_mode & 0o077 == 0
    planted = []
    for token in (old_token, real_token):
        done = subprocess.run(["runuser", "-u", OTHER_USER, "--", "sbatch", "--parsable", "--hold", f"--comment=jb:{token}",
                               f"--job-name=jb-{ALICE.name}/job-adopt", "--wrap=sleep 1"], capture_output=True, text=True,
                              env={**os.environ, "SLURM_CONF": cluster["slurm_conf"]}, cwd="/tmp")
        assert done.returncode == 0, done.stderr
        planted.append(done.stdout.strip().split(";")[0])
    try:
        assert sweep(cluster).returncode == 0
        status = store.status("job-adopt")
        assert status["slurm job id"] not in planted
        assert final_state(store, "job-adopt") == "JOB_COMPLETE"
        store.fetch("job-adopt", tmp_path / "back-adopt", stream=open(os.devnull, "w"))
        assert (tmp_path / "back-adopt" / "result.txt").read_text() == "mine\n"
    finally:
        slurm(cluster, "scancel", *planted)


def test_results_cut_short_by_a_full_disk_are_never_complete(cluster, store, tmp_path: Path):
    """The head node's staging area fills up while the results are copied: the job ends JOB_FAILED with the reason,
    never JOB_COMPLETE with a truncated file."""
    assert sweep(cluster).returncode == 0  # the bridge's spool exists
    staging = Path(cluster["journal"]) / "staging"
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0711", "tmpfs", str(staging)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small file system here: {mounted.stderr.strip()}")
    try:
        submit(store, tmp_path, "job-full", "head -c 3000000 /dev/zero > big.bin\n")
        assert trigger(cluster, "job-full").returncode == 0
        assert final_state(store, "job-full") == "JOB_FAILED"
        reason = s3_text(store, "job-full", "job-aws-reason.txt")
        assert "the results could not be staged completely on the head node (100% of" in reason, reason
    finally:
        wait_for(lambda: subprocess.run(["umount", str(staging)], capture_output=True).returncode == 0, timeout=60)


def test_the_sweep_removes_staged_copies_a_killed_run_left_behind(cluster, store):
    assert sweep(cluster).returncode == 0  # the bridge's spool exists
    staging = Path(cluster["journal"]) / "staging"
    stale, fresh = staging / "in.stale0", staging / "out.fresh0"
    for folder in (stale, fresh):
        folder.mkdir()
        (folder / "job-aws-run.sh").write_text("#!/bin/bash\n")
    old = time.time() - 3 * 3600
    os.utime(stale, (old, old))
    assert sweep(cluster).returncode == 0
    assert not stale.exists() and fresh.exists()
    shutil.rmtree(fresh)


def test_root_uploads_results_only_from_a_folder_the_job_user_cannot_change(cluster, store, tmp_path: Path):
    """Before: root synced a staging folder the job user owned, and a job-user process renamed a symlink over a
    file mid-upload (a root-only file reached S3). Now the job user streams its files to root, which uploads from
    a folder only root can reach: the upload's source is root's, mode 0700, with regular files only."""
    record = Path(cluster["base"]) / f"sync-sources-{time.monotonic_ns()}"
    aws = Path(sys.executable).parent / "aws"
    watcher = user_program(cluster, "aws-watch", "#!/bin/bash\n"
                           "if [[ \"$1 $2\" == 's3 sync' && \"$3\" != s3://* ]]; then\n"
                           f"  stat -c '%u %a' \"$3\" >> {record}; find \"$3\" -mindepth 1 ! -type f ! -type d >> {record}\n"
                           f"fi\nexec {aws} \"$@\"\n")
    script = ("echo result > result.txt\nmkfifo pipe\nln -s /etc/shadow shadow.txt\n"
              "mkdir -p sub && echo deep > sub/deep.txt\n")
    installed = Path(cluster["conf"]).read_text()
    Path(cluster["conf"]).write_text(installed + f"AWS={watcher}\n")  # the submitter's and the epilog's uploads
    try:
        submit(store, tmp_path, "job-seal", script)
        assert trigger(cluster, "job-seal").returncode == 0
        assert final_state(store, "job-seal") == "JOB_COMPLETE"
    finally:
        Path(cluster["conf"]).write_text(installed)
    sources = [line for line in record.read_text().splitlines() if line]
    assert sources and sources[0] == "0 700", sources  # uid 0, no access for anyone else; nothing but files
    store.fetch("job-seal", tmp_path / "back-seal", stream=open(os.devnull, "w"))
    back = tmp_path / "back-seal"
    assert (back / "result.txt").read_text() == "result\n" and (back / "sub" / "deep.txt").read_text() == "deep\n"
    assert not (back / "shadow.txt").exists() and not (back / "pipe").exists()


# -- round two (issue 16): who jobs run as, one submitter against another, a re-run, a backlog ----------------
def test_jobs_run_as_the_submitters_own_user_which_is_no_sudoer(cluster, store, tmp_path: Path):
    probe = ("id -un > who.txt; id -u >> who.txt; id -Gn >> who.txt\n"
             "if command -v sudo >/dev/null; then sudo -n true 2>/dev/null && echo SUDO-WORKS >> who.txt; fi\n"
             "stat -c '%a %U' \"$HOME\" >> who.txt\n")
    submit(store, tmp_path, "job-who", probe)
    assert trigger(cluster, "job-who").returncode == 0
    assert final_state(store, "job-who") == "JOB_COMPLETE", s3_text(store, "job-who", "job-aws-reason.txt")
    store.fetch("job-who", tmp_path / "back-who", stream=open(os.devnull, "w"))
    user, uid, groups, home = (tmp_path / "back-who" / "who.txt").read_text().splitlines()
    assert (user, uid, groups) == (ALICE.user, str(ALICE.uid), ALICE.user)  # no supplementary group (no sudo, wheel)
    assert home == f"700 {ALICE.user}"  # other submitters' jobs and local users see nothing of it


def test_the_users_script_is_idempotent_and_refuses_what_would_not_be_the_expected_user(cluster, tmp_path: Path):
    env = {**os.environ, "HOME_ROOT": cluster["home"]}
    again = subprocess.run(["bash", str(USERS_SCRIPT), ALICE.spec, BOB.spec], env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr  # a second run (a node's OnNodeUpdated, the installer) changes nothing
    other_uid = subprocess.run(["bash", str(USERS_SCRIPT), f"{ALICE.name}:{ALICE.user}:{ALICE.uid + 1}"], env=env,
                               capture_output=True, text=True)
    assert other_uid.returncode == 1 and f"exists with uid {ALICE.uid}; the job bridge needs uid {ALICE.uid + 1}" in other_uid.stderr
    taken = subprocess.run(["bash", str(USERS_SCRIPT), f"carol:jb-carol-x:{ALICE.uid}"], env=env, capture_output=True, text=True)
    assert taken.returncode == 1 and f"belongs to {ALICE.user}" in taken.stderr
    root = subprocess.run(["bash", str(USERS_SCRIPT), "evil:root:0"], env=env, capture_output=True, text=True)
    assert root.returncode == 1 and "jobs must not run as root" in root.stderr
    admin_group = next((g for g in ("sudo", "wheel", "admin") if subprocess.run(["getent", "group", g]).returncode == 0), None)
    if admin_group is None:
        pytest.skip("no sudo/wheel/admin group on this machine")
    sudoer = submitter("arn:aws:iam::123456789012:role/sudoer-lab")
    made = subprocess.run(["bash", str(USERS_SCRIPT), sudoer.spec], env=env, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    subprocess.run(["usermod", "-aG", admin_group, sudoer.user], check=True)
    try:
        refused = subprocess.run(["bash", str(USERS_SCRIPT), sudoer.spec], env=env, capture_output=True, text=True)
        assert refused.returncode == 1 and f"is in group {admin_group}" in refused.stderr
    finally:
        subprocess.run(["userdel", sudoer.user], capture_output=True)
        subprocess.run(["groupdel", sudoer.user], capture_output=True)


def test_one_submitters_job_neither_reads_nor_plants_in_anothers_folder(cluster, store, bob_store, tmp_path: Path):
    bob_folder = Path(cluster["home"], BOB.user, "job-aws", "job-bob")
    (tmp_path / "bob").mkdir()
    bob_store.submit(job_folder(tmp_path / "bob", "job-bob", "echo 'bob secret' > secret.txt\n"), stream=open(os.devnull, "w"))
    assert trigger(cluster, "job-bob", prefix=f"{PREFIX}{BOB.name}/").returncode == 0
    assert final_state(bob_store, "job-bob") == "JOB_COMPLETE"
    attack = (f"cat {bob_folder}/secret.txt > stolen.txt 2>&1\n"
              f"echo planted > {bob_folder}/planted.txt 2>> stolen.txt\n"
              f"ls {cluster['home']}/{BOB.user} >> stolen.txt 2>&1\nexit 0\n")
    submit(store, tmp_path, "job-snoop", attack)
    assert trigger(cluster, "job-snoop").returncode == 0
    assert final_state(store, "job-snoop") == "JOB_COMPLETE"
    store.fetch("job-snoop", tmp_path / "back-snoop", stream=open(os.devnull, "w"))
    stolen = (tmp_path / "back-snoop" / "stolen.txt").read_text()
    assert "bob secret" not in stolen and "Permission denied" in stolen
    assert not (bob_folder / "planted.txt").exists()
    assert (bob_folder / "secret.txt").stat().st_uid == BOB.uid


def test_staged_inputs_are_readable_by_the_submitters_user_only(cluster, store, tmp_path: Path):
    """Before: the staging folder was 0755 with 0644 files, so any local user could read a job's inputs while it was
    handed over. Now it is root's, group of the submitter's user, 0750."""
    record = Path(cluster["base"]) / f"staging-modes-{time.monotonic_ns()}"
    aws = Path(sys.executable).parent / "aws"
    watcher = user_program(cluster, "aws-stage", "#!/bin/bash\n"
                           "if [[ \"$1 $2\" == 's3 sync' && \"$3\" == s3://* ]]; then\n"
                           f"  stat -c '%a %U %G' \"$4\" >> {record}\nfi\nexec {aws} \"$@\"\n")
    submit(store, tmp_path, "job-stage", "cat input.txt > result.txt\n")
    result = bridge({**cluster, "conf": conf_with(cluster, tmp_path, AWS=str(watcher))}, "submit", "--key",
                    f"{APREFIX}job-stage/job-aws-stat.txt")
    assert result.returncode == 0, result.stderr
    assert record.read_text().split() == ["750", "root", ALICE.user]
    assert final_state(store, "job-stage") == "JOB_COMPLETE"


def test_a_rerun_uploaded_while_the_previous_run_ends_runs_after_it(cluster, store, tmp_path: Path):
    """The user uploads FILE_UPLOAD again while the first run is still running. Before: the first run's end wrote
    JOB_COMPLETE over the new request, and only one job ran. Now the new upload waits for the first run to end, is
    never written over, and runs next: two jobs, each run recorded once."""
    submit(store, tmp_path, "job-rerun", "echo run >> runs.txt\nsleep 8\n")
    assert trigger(cluster, "job-rerun").returncode == 0
    [first] = jobs_named(cluster, "job-rerun")
    wait_for(lambda: "RUNNING" in slurm(cluster, "squeue", "-h", "-j", first, "-o", "%T"))
    store.s3.put_object(Bucket=BUCKET, Key=f"{APREFIX}job-rerun/job-aws-stat.txt", Body=b"FILE_UPLOAD\n")
    early = trigger(cluster, "job-rerun")  # the event of the re-run, while the first run is going
    assert early.returncode == 0 and "the new upload waits for it" in early.stderr
    assert jobs_named(cluster, "job-rerun") == [first]
    wait_for(lambda: "COMPLETED" in slurm(cluster, "squeue", "-h", "--states=all", "-j", first, "-o", "%T"))
    finalize_log = Path(cluster["journal"]) / "finalize.log"
    wait_for(lambda: finalize_log.exists() and f"job {first} ended (COMPLETED) after a new upload" in finalize_log.read_text(),
             timeout=60)
    assert store.status("job-rerun")["state"] == "FILE_UPLOAD"  # the request is still there
    assert sweep(cluster).returncode == 0
    assert final_state(store, "job-rerun") == "JOB_COMPLETE"
    ids = jobs_named(cluster, "job-rerun")
    assert len(ids) == 2 and store.status("job-rerun")["slurm job id"] == ids[1] != first
    store.fetch("job-rerun", tmp_path / "back-rerun", stream=open(os.devnull, "w"))
    assert (tmp_path / "back-rerun" / "runs.txt").read_text() == "run\nrun\n"


def junk(store: JobStore, names: list[str]) -> None:
    """Folders with a state file and no batch script: each costs the bridge a download and ends JOB_ERROR."""
    for name in names:
        store.s3.put_object(Bucket=BUCKET, Key=store.key(name, "input.txt"), Body=b"x\n")
        store.s3.put_object(Bucket=BUCKET, Key=store.key(name, "job-aws-stat.txt"), Body=b"FILE_UPLOAD\n")


def test_an_event_never_waits_for_a_sweep_busy_with_a_backlog(cluster, store, bob_store, tmp_path: Path):
    """Before: every submitter took the bridge-wide lock, so one submitter's backlog of folders delayed every other
    submitter's event until the sweep was through (41-47 s for 24 folders). Now an event locks only its folder."""
    assert sweep(cluster).returncode == 0  # nothing else pending
    started = Path(cluster["base"]) / f"sweep-started-{time.monotonic_ns()}"
    aws = Path(sys.executable).parent / "aws"
    slow = user_program(cluster, "aws-slow", "#!/bin/bash\n"
                        "if [[ \"$1 $2\" == 's3 sync' && \"$3\" == s3://* ]]; then touch " + str(started) + "; sleep 3; fi\n"
                        f"exec {aws} \"$@\"\n")
    junk(store, [f"junk-a{i}" for i in range(6)])
    sweeper = subprocess.Popen(["bash", str(SCRIPT), "sweep"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "JOB_BRIDGE_CONF": conf_with(cluster, tmp_path, AWS=str(slow))})
    try:
        wait_for(started.exists, timeout=60)
        (tmp_path / "bob").mkdir()
        bob_store.submit(job_folder(tmp_path / "bob", "job-bob-fast", "echo fast > result.txt\n"),
                         stream=open(os.devnull, "w"))
        assert trigger(cluster, "job-bob-fast", prefix=f"{PREFIX}{BOB.name}/").returncode == 0
        assert sweeper.poll() is None  # bob's job was submitted while alice's backlog was still being swept
        assert bob_store.status("job-bob-fast")["state"] in ("JOB_SUBMIT", "JOB_COMPLETE")
    finally:
        assert sweeper.wait(timeout=120) == 0
    assert final_state(bob_store, "job-bob-fast") == "JOB_COMPLETE"
    assert all(store.status(f"junk-a{i}")["state"] == "JOB_ERROR" for i in range(6))


def test_a_sweep_takes_submitters_in_turn_and_a_bounded_number_of_uploads(cluster, store, bob_store, tmp_path: Path):
    assert sweep(cluster).returncode == 0  # nothing else pending
    junk(store, [f"junk-b{i}" for i in range(5)])
    (tmp_path / "bob").mkdir()
    folder = job_folder(tmp_path / "bob", "job-bob-turn", "echo turn > result.txt\n")
    bob_store.submit(folder, stream=open(os.devnull, "w"))  # its event was lost: the sweep must find it
    bounded = bridge({**cluster, "conf": conf_with(cluster, tmp_path, SWEEP_BATCH="2")}, "sweep")
    assert bounded.returncode == 0, bounded.stderr
    assert "4 more uploads wait for the next sweep" in bounded.stderr
    assert bob_store.status("job-bob-turn")["state"] in ("JOB_SUBMIT", "JOB_COMPLETE")  # not behind alice's five
    assert sum(store.status(f"junk-b{i}")["state"] == "JOB_ERROR" for i in range(5)) == 1
    assert sweep(cluster).returncode == 0
    assert all(store.status(f"junk-b{i}")["state"] == "JOB_ERROR" for i in range(5))
    assert final_state(bob_store, "job-bob-turn") == "JOB_COMPLETE"
