"""The job bridge's faults and fairness, for real (the cluster of tests/job_bridge_cluster.py): a submitter killed
mid-way, a controller that does not answer, a failed download or PUT, a full disk, odd folder names, a re-run
uploaded while the previous run ends, one submitter's backlog against another's job. Its own submitters (carol,
dave), so that it runs beside tests/test_job_bridge_slurm.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from job_bridge.client import JobStore
from job_bridge.submitters import submitter
from tests.job_bridge_cluster import (BUCKET, OTHER_USER, PREFIX, SCRIPT, bridge, bridge_fixtures,
                                      conf_with, crash_submitter_after, final_state, job_folder, jobs_named,
                                      s3_text, slurm, submit, sweep, trigger, user_program)
from tests.local_slurm import free_port, needs, wait_for

CAROL = submitter("arn:aws:iam::123456789012:role/carol-lab")  # the submitter most tests submit as
DAVE = submitter("arn:aws:iam::111122223333:role/dave-lab")  # another submitter, of another account
CPREFIX = f"{PREFIX}{CAROL.name}/"  # carol's own folder in the bucket
JOB_USER = CAROL.user
pytestmark = needs("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "useradd", "runuser")


s3_endpoint, cluster, store, dave_store = bridge_fixtures(CAROL, DAVE, other_store="dave_store")


# -- faults and fairness ---------------------------------------------------------------------------
def test_crash_between_sbatch_and_state_write_does_not_submit_twice(cluster, store, tmp_path: Path):
    submit(store, tmp_path, "job0005", "sleep 1; echo ok > result.txt\n")
    crash_submitter_after(cluster, tmp_path, "job0005", sbatch_first=True)
    assert store.status("job0005")["state"] == "FILE_UPLOAD"  # nothing recorded in S3
    assert sweep(cluster).returncode == 0  # the next run recovers the job by its upload's comment
    assert final_state(store, "job0005") == "JOB_COMPLETE"
    assert len(jobs_named(cluster, "job0005")) == 1


def test_a_new_upload_of_a_finished_folder_is_a_new_submission_even_after_a_crash(cluster, store, tmp_path: Path):
    submit(store, tmp_path, "job0013", "echo first > result.txt\n")
    trigger(cluster, "job0013")
    assert final_state(store, "job0013") == "JOB_COMPLETE"
    [first] = jobs_named(cluster, "job0013")
    store.s3.put_object(Bucket=BUCKET, Key=f"{CPREFIX}job0013/job-aws-stat.txt", Body=b"FILE_UPLOAD\n")
    crash_submitter_after(cluster, tmp_path, "job0013", sbatch_first=False)
    assert sweep(cluster).returncode == 0  # recovery: no job carries this upload's comment, so submit it
    assert final_state(store, "job0013") == "JOB_COMPLETE"
    ids = jobs_named(cluster, "job0013")
    assert len(ids) == 2 and store.status("job0013")["slurm job id"] == ids[1] != first


def test_a_failed_download_is_not_submitted(cluster, store, tmp_path: Path):
    failing = tmp_path / "aws"  # the CLI fails to download (disk full), and works otherwise
    failing.write_text(f'#!/bin/bash\nif [[ "$1 $2" == "s3 sync" && "$3" == s3://* ]]; then\n'
                       f'  echo "[Errno 28] No space left on device" >&2; exit 1\nfi\nexec {cluster["aws"]} "$@"\n')
    failing.chmod(0o755)
    submit(store, tmp_path, "job0014", "echo hi\n")
    subprocess.run(["bash", str(SCRIPT), "submit", "--key", f"{CPREFIX}job0014/job-aws-stat.txt"],
                   env={**os.environ, "JOB_BRIDGE_CONF": conf_with(cluster, tmp_path, AWS=str(failing))},
                   capture_output=True, timeout=120)
    status = store.status("job0014")
    assert status["state"] == "JOB_ERROR" and "No space left on device" in status["error"]
    assert jobs_named(cluster, "job0014") == []


def test_an_event_keeps_only_the_first_bytes_of_a_huge_state_file(cluster, store, tmp_path: Path):
    """The submitter chooses the state file's size: the event reads it once, with its ETag, and keeps at most its
    first 256 bytes on the head node (a state is one word), then removes them."""
    kept = tmp_path / "kept"  # each state file the CLI wrote on the head node: its path and size
    recording = tmp_path / "aws"
    recording.write_text(f'#!/bin/bash\n{cluster["aws"]} "$@"\nstatus=$?\nfor arg in "$@"; do\n'
                         f'  if [[ "$arg" == */staging/in.* && -f "$arg" ]]; then echo "$arg $(stat -c %s "$arg")" >> {kept}; fi\n'
                         'done\nexit $status\n')
    recording.chmod(0o755)
    submit(store, tmp_path, "job-huge", "echo ok > result.txt\n")
    store.s3.put_object(Bucket=BUCKET, Key=f"{CPREFIX}job-huge/job-aws-stat.txt",
                        Body=b"FILE_UPLOAD\n" + b"#" * 8_000_000)
    result = subprocess.run(["bash", str(SCRIPT), "submit", "--key", f"{CPREFIX}job-huge/job-aws-stat.txt"],
                            env={**os.environ, "JOB_BRIDGE_CONF": conf_with(cluster, tmp_path, AWS=str(recording))},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "could not read" not in result.stderr, result.stderr
    assert final_state(store, "job-huge") == "JOB_COMPLETE"
    [(path, size)] = [line.split() for line in kept.read_text().splitlines()]
    assert 0 < int(size) <= 256 and not Path(path).exists()


@pytest.mark.parametrize("name", ["my job", "team/x", "tab\there"])
def test_odd_folder_names_get_job_error_from_the_sweep(cluster, store, name: str):
    store.s3.put_object(Bucket=BUCKET, Key=f"{CPREFIX}{name}/job-aws-run.sh", Body=b"#!/bin/bash\necho hi\n")
    store.s3.put_object(Bucket=BUCKET, Key=f"{CPREFIX}{name}/job-aws-stat.txt", Body=b"FILE_UPLOAD\n")
    assert sweep(cluster).returncode == 0
    state = store.s3.get_object(Bucket=BUCKET, Key=f"{CPREFIX}{name}/job-aws-stat.txt")["Body"].read().decode()
    assert state.strip() == "JOB_ERROR"
    error = store.s3.get_object(Bucket=BUCKET, Key=f"{CPREFIX}{name}/job-aws-sbatch.out")["Body"].read().decode()
    assert f"job folder name '{name}' is not allowed" in error


def test_the_sweep_reads_no_folder_it_has_seen(cluster, store, tmp_path: Path):
    """Finished folders cost the sweep nothing: one listing, no object read per folder."""
    counting = tmp_path / "aws"
    calls = tmp_path / "calls"
    counting.write_text(f'#!/bin/bash\necho "$1 $2" >> {calls}\nexec {cluster["aws"]} "$@"\n')
    counting.chmod(0o755)
    env = {**os.environ, "JOB_BRIDGE_CONF": conf_with(cluster, tmp_path, AWS=str(counting))}
    assert subprocess.run(["bash", str(SCRIPT), "sweep"], env=env, capture_output=True, timeout=120).returncode == 0
    calls.unlink(missing_ok=True)
    assert subprocess.run(["bash", str(SCRIPT), "sweep"], env=env, capture_output=True, timeout=120).returncode == 0
    assert calls.read_text().splitlines() == ["s3api list-objects-v2"]


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
    aws = cluster["aws"]  # the CLI the bridge runs
    flaky = user_program(cluster, "aws-flaky", "#!/bin/bash\nfor arg in \"$@\"; do\n"
                         f"  if [[ \"$arg\" == s3://*/job-aws-jobid.txt && ! -e {marker} ]]; then touch {marker}; exit 1; fi\n"
                         f"done\nexec {aws} \"$@\"\n")
    submit(store, tmp_path, "job-put", "sleep 6; echo ok > result.txt\n")
    result = bridge({**cluster, "conf": conf_with(cluster, tmp_path, AWS=str(flaky))}, "submit", "--key",
                    f"{CPREFIX}job-put/job-aws-stat.txt")
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
    key = f"{CPREFIX}job-adopt/job-aws-stat.txt"
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
                               f"--job-name=jb-{CAROL.name}/job-adopt", "--wrap=sleep 1"], capture_output=True, text=True,
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


def junk(store: JobStore, names: list[str]) -> None:
    """Folders with a state file and no batch script: each costs the bridge a download and ends JOB_ERROR."""
    for name in names:
        store.s3.put_object(Bucket=BUCKET, Key=store.key(name, "input.txt"), Body=b"x\n")
        store.s3.put_object(Bucket=BUCKET, Key=store.key(name, "job-aws-stat.txt"), Body=b"FILE_UPLOAD\n")


def test_an_event_never_waits_for_a_sweep_busy_with_a_backlog(cluster, store, dave_store, tmp_path: Path):
    """Before: every submitter took the bridge-wide lock, so one submitter's backlog of folders delayed every other
    submitter's event until the sweep was through (41-47 s for 24 folders). Now an event locks only its folder."""
    assert sweep(cluster).returncode == 0  # nothing else pending
    started = Path(cluster["base"]) / f"sweep-started-{time.monotonic_ns()}"
    aws = cluster["aws"]  # the CLI the bridge runs
    slow = user_program(cluster, "aws-slow", "#!/bin/bash\n"
                        "if [[ \"$1 $2\" == 's3 sync' && \"$3\" == s3://* ]]; then touch " + str(started) + "; sleep 3; fi\n"
                        f"exec {aws} \"$@\"\n")
    junk(store, [f"junk-a{i}" for i in range(6)])
    sweeper = subprocess.Popen(["bash", str(SCRIPT), "sweep"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "JOB_BRIDGE_CONF": conf_with(cluster, tmp_path, AWS=str(slow))})
    try:
        wait_for(started.exists, timeout=60)
        (tmp_path / "dave").mkdir()
        dave_store.submit(job_folder(tmp_path / "dave", "job-dave-fast", "echo fast > result.txt\n"),
                         stream=open(os.devnull, "w"))
        assert trigger(cluster, "job-dave-fast", prefix=f"{PREFIX}{DAVE.name}/").returncode == 0
        assert sweeper.poll() is None  # dave's job was submitted while carol's backlog was still being swept
        assert dave_store.status("job-dave-fast")["state"] in ("JOB_SUBMIT", "JOB_COMPLETE")
    finally:
        assert sweeper.wait(timeout=120) == 0
    assert final_state(dave_store, "job-dave-fast") == "JOB_COMPLETE"
    assert all(store.status(f"junk-a{i}")["state"] == "JOB_ERROR" for i in range(6))


def test_a_sweep_takes_submitters_in_turn_and_a_bounded_number_of_uploads(cluster, store, dave_store, tmp_path: Path):
    assert sweep(cluster).returncode == 0  # nothing else pending
    junk(store, [f"junk-b{i}" for i in range(5)])
    (tmp_path / "dave").mkdir()
    folder = job_folder(tmp_path / "dave", "job-dave-turn", "echo turn > result.txt\n")
    dave_store.submit(folder, stream=open(os.devnull, "w"))  # its event was lost: the sweep must find it
    bounded = bridge({**cluster, "conf": conf_with(cluster, tmp_path, SWEEP_BATCH="2")}, "sweep")
    assert bounded.returncode == 0, bounded.stderr
    assert "4 more uploads wait for the next sweep" in bounded.stderr
    assert dave_store.status("job-dave-turn")["state"] in ("JOB_SUBMIT", "JOB_COMPLETE")  # not behind carol's five
    assert sum(store.status(f"junk-b{i}")["state"] == "JOB_ERROR" for i in range(5)) == 1
    assert sweep(cluster).returncode == 0
    assert all(store.status(f"junk-b{i}")["state"] == "JOB_ERROR" for i in range(5))
    assert final_state(dave_store, "job-dave-turn") == "JOB_COMPLETE"
