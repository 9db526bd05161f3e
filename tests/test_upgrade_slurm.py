"""The blue/green drain of `hpc-upgrade`, as Slurm itself answers (Debian's slurm-wlm on localhost): the old
cluster's partitions take no new job, but every job already queued there still runs to its end (no job lost);
`remove` refuses until the queue is empty, then destroys the old cluster's stack once."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import boto3
import pytest

from ops.cluster import Session
from ops.upgrade import Steps, Upgrade
from settings.cluster import Clusters
from settings.context import ContextReader, shipped_context
from tests.local_slurm import LocalSlurm, needs, plain_cluster, wait_for

USER = "upgradeuser"
OLD, NEW = "hpc-cluster", "hpc-cluster-3-16-1"
pytestmark = needs("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "sinfo", "runuser")


@pytest.fixture(scope="module")
def slurm() -> Iterator[LocalSlurm]:
    with plain_cluster("upgrade", USER) as cluster:
        yield cluster


def submit(slurm: LocalSlurm, command: str, tasks: int = 1) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", USER, "--", "sbatch", "--parsable", "-N", "1", "-n", str(tasks),
                           "-o", "/dev/null", "--wrap", command], env=slurm.env, capture_output=True, text=True,
                          cwd="/tmp")


def upgrade_on(slurm: LocalSlurm, destroyed: list[str], out: io.StringIO) -> Upgrade:
    """The old cluster is this Slurm; its head node runs the commands as root, as SSM Run Command would."""

    def head_node(aws: Session, stack: str, commands: list[str]) -> str:
        assert stack == "ClusterStack"
        done = subprocess.run(["bash", "-c", "\n".join(commands)], env=slurm.env, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def destroy(stack: str) -> int:
        destroyed.append(stack)
        boto3.client("cloudformation").delete_stack(StackName=stack)
        return 0

    context = {**shipped_context(), "clusters": {OLD: {"parallelcluster_version": "3.15.1"},
                                                 NEW: {"parallelcluster_version": "3.16.1"}}}
    return Upgrade(Session("us-east-1", boto3.Session(region_name="us-east-1")),
                   Clusters.from_context(ContextReader(context.get)),
                   Steps(deploy=lambda cluster: 0, destroy=destroy, head_node=head_node), out, poll=1)


def test_drain_runs_every_queued_job_to_its_end_and_takes_no_new_one(slurm, aws):
    for stack, name in (("ClusterStack", OLD), (f"ClusterStack-{NEW}", NEW)):
        boto3.client("cloudformation").create_stack(StackName=stack, TemplateBody=json.dumps({
            "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}, "Outputs": {"ClusterName": {"Value": name}}}))
    work = Path(tempfile.mkdtemp(prefix="upgrade-job-"))
    work.chmod(0o777)  # the job user writes there
    done_file = work / "queued-job-ran"
    busy = submit(slurm, "sleep 6", tasks=os.cpu_count() or 1)  # every CPU: the next job must wait in the queue
    assert busy.returncode == 0, busy.stderr
    queued = submit(slurm, f"touch {done_file}")
    assert queued.returncode == 0, queued.stderr
    destroyed: list[str] = []
    out = io.StringIO()
    upgrade = upgrade_on(slurm, destroyed, out)
    try:
        assert upgrade.drain(OLD, timeout=0) == 1  # partitions DRAIN at once; both jobs still there
        assert "2 job(s) still queued or running there" in out.getvalue()
        refused = submit(slurm, "true")
        assert refused.returncode != 0 and "partition" in refused.stderr.lower()  # no new job
        assert upgrade.remove(OLD) == 1 and destroyed == []  # not while jobs are left
        assert upgrade.drain(OLD, timeout=120) == 0  # run again: it waits for the queue to empty
        assert done_file.exists()  # the job queued before the drain ran there: nothing was lost
        assert upgrade.remove(OLD) == 0 and destroyed == ["ClusterStack"]
        assert upgrade.remove(OLD) == 0 and destroyed == ["ClusterStack"]  # resumed after it: nothing twice
    finally:
        subprocess.run(["scontrol", "update", "PartitionName=debug", "State=UP"], env=slurm.env)
    wait_for(lambda: submit(slurm, "true").returncode == 0, timeout=30)
