"""The head-node checks of `hpc-ops verify` for real: scripts/checks/verify_cluster.sh runs as SSM Run
Command runs it (root, plan on stdin) against Debian's Slurm on localhost, and does its Slurm work as a
non-root cluster user. Everything one machine can show runs here: sinfo, srun, sbatch, salloc, the
distributed job, mounts (with the file system type findmnt reports), writes for the S3 export, waits for
imports, and the failures a user would meet (a missing partition, a queue that claims Pyxis without
the plugin, fi_info finding no EFA device, the wrong file system, a mount the user cannot write).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from ops.verify import CHECK_SCRIPT, CheckResult, parse, ssm_command
from tests.local_slurm import LocalSlurm, ensure_user, needs, running

USER = "verifyuser"
pytestmark = needs("munged", "slurmctld", "slurmd", "srun", "sbatch", "salloc", "useradd", "runuser", "findmnt",
                   "fi_info", packages="slurm-wlm, munge, libfabric-bin")


@pytest.fixture(scope="module")
def slurm() -> Iterator[LocalSlurm]:
    ensure_user(USER)
    base = Path(tempfile.mkdtemp(prefix="verify-"))
    base.chmod(0o755)  # the user reads slurm.conf and reaches munge's socket here
    with running(base, "verify", "JobAcctGatherType=jobacct_gather/none\nKillWait=2") as cluster:
        yield cluster


def fstype(path: str) -> str:
    return subprocess.run(["findmnt", "-n", "-o", "FSTYPE", "--target", path], capture_output=True, text=True,
                          check=True).stdout.split()[0]


def checks(slurm: LocalSlurm, plan: list[str], **env: str) -> dict[str, CheckResult]:
    """Runs the check script as root with PLAN on stdin; its results by check name."""
    done = subprocess.run(["bash", str(CHECK_SCRIPT)], input="\n".join(plan) + "\n", capture_output=True, text=True,
                          env={**slurm.env, **env}, timeout=600)
    assert done.returncode == 0, done.stderr
    results = {r.check: r for r in parse(done.stdout)}
    assert results, done.stdout + done.stderr
    return results


def checks_plan(*lines: str, timeout: int = 120) -> list[str]:
    return [f"user {USER}", f"timeout {timeout}", *lines]


@pytest.fixture(scope="module")
def healthy(slurm: LocalSlurm) -> dict[str, CheckResult]:
    """The whole run on a healthy one-node cluster: a static queue, /home mounted, nothing GPU or EFA."""
    return checks(slurm, checks_plan("queue debug 1 1 0 0 0", f"mount /home {fstype('/home')}"))


def test_slurm_is_up_with_every_partition(healthy):
    assert healthy["slurm"].status == "PASS"
    assert "partitions up: debug" in healthy["slurm"].evidence and "1 idle" in healthy["slurm"].evidence


def test_srun_sbatch_and_salloc_run_as_the_cluster_user(healthy):
    host = os.uname().nodename.split(".")[0]
    assert healthy["srun:debug"].status == "PASS" and host in healthy["srun:debug"].evidence
    assert healthy["sbatch"].status == "PASS" and healthy["sbatch"].evidence.startswith("job ")
    assert healthy["salloc"] == CheckResult("salloc", "PASS", healthy["salloc"].seconds, f"allocation on {host} as {USER}")
    home = Path(f"~{USER}").expanduser()
    assert not list(home.glob(".verify-sbatch-*.out"))  # read back as the user, then removed


def test_the_distributed_job_reports_every_rank_once(healthy):
    assert healthy["distributed"] == CheckResult("distributed", "PASS", healthy["distributed"].seconds,
                                                 "2 ranks on 1 node(s) of debug, each once")


def test_mounts_are_checked_on_the_head_and_on_a_node_of_each_queue(healthy):
    assert healthy["mounts:head"].status == "PASS" and healthy["mounts:debug"].status == "PASS"
    assert healthy["mounts:head"].evidence.startswith("/home ")


def test_checks_that_do_not_apply_are_skipped_with_the_reason(healthy):
    assert healthy["pyxis:debug"].status == "SKIP" and "enable_pyxis.sh" in healthy["pyxis:debug"].evidence
    # A skip runs nothing; its seconds are whole `date +%s` readings, so one boundary may fall in between.
    assert healthy["efa:debug"] in [CheckResult("efa:debug", "SKIP", s, "queue debug has no EFA") for s in (0, 1)]
    assert healthy["nccl:debug"] in [CheckResult("nccl:debug", "SKIP", s, "queue debug has no GPUs") for s in (0, 1)]


def test_a_missing_partition_fails_the_slurm_check(slurm):
    results = checks(slurm, checks_plan("queue debug 1 1 0 0 0", "queue gpu 0 2 0 0 0", "only slurm"))
    assert results["slurm"].status == "FAIL"
    assert results["slurm"].evidence == "partition gpu is missing or not up (partitions: debug)"


def test_a_queue_that_claims_pyxis_without_the_plugin_fails(slurm):
    results = checks(slurm, checks_plan("queue debug 1 1 0 0 1", "only pyxis"))
    assert results["pyxis:debug"].status == "FAIL"
    assert "srun has no --container-image: the Pyxis SPANK plugin is not loaded" in results["pyxis:debug"].evidence


def test_an_efa_queue_without_an_efa_device_fails_with_fi_infos_answer(slurm):
    """The real fi_info (libfabric) on a machine without EFA: what a node would say if EFA were not set up."""
    results = checks(slurm, checks_plan("queue debug 1 1 1 0 0", "only efa"))
    assert results["efa:debug"].status == "FAIL"
    assert results["efa:debug"].evidence.startswith("fi_info -p efa found no EFA provider")


def test_an_efa_device_passes_with_its_domain_as_evidence(slurm):
    fake = slurm.base / "fi_info"  # where the cluster user can run it; stands in for fi_info on an EFA node (its output format, libfabric 1.x)
    fake.write_text("#!/bin/sh\nprintf 'provider: efa\\n    fabric: efa\\n    domain: rdmap16s27-rdm\\n'\n")
    fake.chmod(0o755)
    results = checks(slurm, checks_plan("queue debug 1 1 1 0 0", "only efa"), FI_INFO=str(fake))
    assert results["efa:debug"].status == "PASS" and results["efa:debug"].evidence == "domain: rdmap16s27-rdm"


def test_a_gpu_queue_without_nccl_tests_is_skipped_with_the_fix(slurm):
    results = checks(slurm, checks_plan("queue debug 2 2 1 8 0", "only nccl"), ALL_REDUCE_PERF="/opt/none/all_reduce_perf")
    assert results["nccl:debug"].status == "SKIP"
    assert "nccl-tests come with the custom image (hpc-build-ami)" in results["nccl:debug"].evidence


def test_the_wrong_file_system_and_an_unwritable_mount_fail(slurm):
    locked = slurm.base / "locked"
    locked.mkdir()
    locked.chmod(0o755)  # root's, no folder for the user
    results = checks(slurm, checks_plan("queue debug 1 1 0 0 0", "mount /home lustre", f"mount {locked} {fstype(str(locked))}",
                                 "only mounts"))
    evidence = results["mounts:head"].evidence
    assert results["mounts:head"].status == "FAIL"
    assert f"/home is {fstype('/home')} (expected lustre)" in evidence
    assert f"{locked} is not writable by {USER}" in evidence
    assert results["mounts:debug"].status == "FAIL" and "(expected lustre)" in results["mounts:debug"].evidence


def test_exports_are_written_and_imports_awaited(slurm, tmp_path: Path):
    exported, imported = tmp_path / "data", tmp_path / "in"
    exported.mkdir()
    imported.mkdir()
    arriving = imported / ".verify-import"
    threading.Timer(3, arriving.write_text, args=("from S3\n",)).start()  # as the Lustre import would
    results = checks(slurm, checks_plan("queue debug 1 1 0 0 0", f"export {exported}/.verify-export-1", f"await {arriving}",
                                 f"await {imported / 'never'}", "only exports,awaits", timeout=8))
    assert results[f"export-write:{exported}"].status == "PASS" and (exported / ".verify-export-1").exists()
    assert results[f"import:{arriving}"].status == "PASS"
    assert results[f"import:{imported / 'never'}"].status == "FAIL"
    assert results[f"import:{imported / 'never'}"].evidence == "not on the file system after 8s"


def test_root_never_writes_or_removes_through_a_link_a_user_planted(slurm):
    """A cluster user who can write the exported folder plants a link where the export file will be:
    root's write must fail rather than truncate the target, and the cleanup removes only the link."""
    exported = slurm.base / "exported"
    exported.mkdir()
    exported.chmod(0o1777)  # writable by the users, as a shared data folder
    victim = slurm.base / "victim"
    victim.write_text("root's file\n")
    planted = exported / ".verify-export-1"
    subprocess.run(["runuser", "-u", USER, "--", "ln", "-s", str(victim), str(planted)], check=True)
    results = checks(slurm, checks_plan("queue debug 1 1 0 0 0", f"export {planted}", f"remove {planted}",
                                 "only exports,removes"))
    assert results[f"export-write:{exported}"].status == "FAIL"
    assert victim.read_text() == "root's file\n" and victim.exists()
    assert not planted.is_symlink()  # the link is gone, its target is not


def test_the_ssm_command_runs_the_script_under_sh(slurm, tmp_path: Path):
    """AWS-RunShellScript runs the commands with sh: the shipped command unpacks and runs this very script."""
    script = tmp_path / "command.sh"
    script.write_text("\n".join(ssm_command(checks_plan("queue debug 1 1 0 0 0", "only slurm"))) + "\n")
    started = time.monotonic()
    done = subprocess.run(["sh", str(script)], capture_output=True, text=True, env=slurm.env, timeout=120)
    assert done.returncode == 0, done.stderr
    [result] = parse(done.stdout)
    assert result.check == "slurm" and result.status == "PASS" and time.monotonic() - started < 60
