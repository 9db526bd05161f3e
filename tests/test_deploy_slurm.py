"""The drain of `hpc-deploy --wait-for-jobs`, as Slurm itself answers (Debian's slurm-wlm on
localhost): the reservation is accepted, a running job goes on, a new job does not start, the running
count is what the deploy waits on, and removing the reservation lets the pending job start."""

from __future__ import annotations

import subprocess
from typing import Iterator

import pytest

from ops.deploy import RELEASE, RESERVE, RUNNING_JOBS
from tests.local_slurm import LocalSlurm, needs, plain_cluster, wait_for

USER = "verifyuser"
pytestmark = needs("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "runuser")


@pytest.fixture(scope="module")
def slurm() -> Iterator[LocalSlurm]:
    with plain_cluster("drain", USER) as cluster:
        yield cluster


def head_node(slurm: LocalSlurm, command: str) -> str:
    """As SSM Run Command runs the deploy's commands: root, a shell."""
    done = subprocess.run(["bash", "-c", command], env=slurm.env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def submit(slurm: LocalSlurm, command: str) -> str:
    done = subprocess.run(["runuser", "-u", USER, "--", "sbatch", "--parsable", "-N", "1", "-n", "1",
                           "-o", "/dev/null", "--wrap", command], env=slurm.env, capture_output=True, text=True,
                          check=True, cwd="/tmp")
    return done.stdout.strip().split(";")[0]


def state(slurm: LocalSlurm, job: str) -> str:
    return subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], env=slurm.env, capture_output=True,
                          text=True).stdout.strip()


def test_the_drain_lets_running_jobs_finish_and_starts_no_new_one(slurm):
    running = submit(slurm, "sleep 300")
    wait_for(lambda: state(slurm, running) == "RUNNING", timeout=60)
    head_node(slurm, RESERVE.format(name="deploy-1"))
    pending = submit(slurm, "sleep 1")
    try:
        assert head_node(slurm, RUNNING_JOBS).strip() == "1"
        assert state(slurm, running) == "RUNNING"  # IGNORE_JOBS: the running job is not touched
        # A CPU is free (2 CPUs, one busy): only the reservation can keep this job pending.
        wait_for(lambda: state(slurm, pending) == "PENDING", timeout=30)
        subprocess.run(["scancel", running], env=slurm.env, check=True)
        wait_for(lambda: head_node(slurm, RUNNING_JOBS).strip() == "0", timeout=60)
        assert state(slurm, pending) == "PENDING"  # still held by the reservation
    finally:
        head_node(slurm, RELEASE.format(name="deploy-1"))
    wait_for(lambda: state(slurm, pending) in ("RUNNING", "COMPLETING", ""), timeout=60)
