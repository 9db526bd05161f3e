"""hpc-upgrade (blue/green ParallelCluster upgrades): the plan offline, the steps against moto's CloudFormation, each
resumable because it reads where things stand. The drain on a real Slurm: tests/test_upgrade_slurm.py."""

from __future__ import annotations

import io
import json
from typing import Any

import boto3
import pytest

from ops.cluster import OpsError, Session
from ops.upgrade import Steps, Upgrade, plan, write_clusters
from settings.cluster import Clusters
from settings.context import CDK_JSON, ContextReader, shipped_context

OLD, NEW = "hpc-cluster", "hpc-cluster-3-16-1"
BRIDGE = {"job_bridge": True, "job_bridge_submitters": ["arn:aws:iam::123456789012:role/onprem-submitter"]}


def clusters(**context: Any) -> Clusters:
    merged = {**shipped_context(), **context}
    return Clusters.from_context(ContextReader(merged.get))


# -- plan (offline) --------------------------------------------------------------------------------------------
def test_plan_adds_the_new_cluster_beside_the_old_one_pinned_as_it_is():
    entries, steps = plan(clusters(parallelcluster_version="3.15.1"), "3.16.1")
    assert entries == {OLD: {"config": "vanilla", "parallelcluster_version": "3.15.1", "job_bridge": False},
                       NEW: {"config": "vanilla", "parallelcluster_version": "3.16.1", "job_bridge": False}}
    assert steps[1:3] == [f"hpc-deploy --cluster {NEW}", f"hpc-ops --cluster {NEW} verify"]
    assert steps[3:5] == [f"hpc-upgrade drain {OLD}   (again until it says the queue is empty)",
                          f"hpc-upgrade remove {OLD}"]
    assert "move-bridge" not in " ".join(steps)
    # The old cluster keeps ClusterStack (it is named by cluster_name), the new one gets its own stack.
    found = {c.cluster_name: c.stack_name for c in clusters(parallelcluster_version="3.15.1", clusters=entries).clusters}
    assert found == {OLD: "ClusterStack", NEW: f"ClusterStack-{NEW}"}


def test_plan_moves_the_job_bridge_when_the_old_cluster_runs_it():
    _, steps = plan(clusters(parallelcluster_version="3.15.1", **BRIDGE), "3.16.1")
    assert any(step.endswith(f"hpc-upgrade move-bridge {OLD} {NEW}") for step in steps)


@pytest.mark.parametrize("context,version,args,message", [
    ({}, "3.16.1", {}, "hpc-cluster already runs ParallelCluster 3.16.1"),
    ({"parallelcluster_version": "3.15.1"}, "3.16.1", {"old_name": "nope"}, "no cluster named nope in cdk.json"),
    ({"parallelcluster_version": "3.15.1"}, "3.16.1", {"new_name": OLD}, "already in cdk.json's clusters"),
    ({"parallelcluster_version": "3.15.1"}, "3.16.1", {"new_name": "2nd"}, "2nd is not a valid cluster name"),
])
def test_plan_refuses_with_the_reason(context, version, args, message):
    """(The cold path, when Slurm accounting's one database cannot take a second cluster: below.)"""
    with pytest.raises(OpsError, match=message):
        plan(clusters(**context), version, **args)


def test_with_slurm_accounting_the_plan_is_the_cold_path():
    with pytest.raises(OpsError, match="a second cluster would run a second slurmdbd on the one accounting database"):
        plan(clusters(parallelcluster_version="3.15.1"), "3.16.1", accounting=True)


def test_write_keeps_cdk_json_as_it_was_but_the_clusters(tmp_path):
    path = tmp_path / "cdk.json"
    path.write_text(CDK_JSON.read_text())
    entries, _ = plan(clusters(parallelcluster_version="3.15.1"), "3.16.1")
    write_clusters(entries, path)
    written = json.loads(path.read_text())
    assert written["context"]["clusters"] == entries
    assert {k: v for k, v in written["context"].items() if k != "clusters"} == \
           {k: v for k, v in shipped_context().items() if k != "clusters"}


def test_the_command_prints_the_entry_and_the_steps(capsys):
    from commands import upgrade

    assert upgrade.main(["plan", "--to-version", "3.15.1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith('"clusters": {') and f"hpc-deploy --cluster {OLD}-3-15-1" in out


# -- the steps, on moto's CloudFormation -----------------------------------------------------------------------
def put_stack(name: str, **outputs: str) -> None:
    body = json.dumps({"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
                       "Outputs": {k: {"Value": v} for k, v in outputs.items()}})
    client = boto3.client("cloudformation")
    try:
        client.update_stack(StackName=name, TemplateBody=body)
    except client.exceptions.ClientError:
        client.create_stack(StackName=name, TemplateBody=body)


class World:
    """Two clusters deployed; deploy and destroy change what CloudFormation holds as the real ones would."""

    def __init__(self, bridge_on: str | None, entries: dict[str, Any], fail_deploy: set[str] = frozenset()) -> None:
        self.deploys: list[str] = []
        self.destroyed: list[str] = []
        self.jobs_left = [0]
        self.partitions = "debug drain\n"
        self.commands: list[str] = []
        self.fail_deploy = set(fail_deploy)
        self.clusters = clusters(parallelcluster_version="3.15.1", clusters=entries, **BRIDGE)
        for cluster in self.clusters.clusters:
            bridge = {"JobBridgePrefix": "jobs/"} if cluster.cluster_name == bridge_on else {}
            put_stack(cluster.stack_name, ClusterName=cluster.cluster_name, HeadNodeInstanceId="i-0123456789abcdef0",
                      **bridge)
        self.out = io.StringIO()
        self.upgrade = Upgrade(Session("us-east-1", boto3.Session(region_name="us-east-1")), self.clusters,
                               Steps(deploy=self.deploy, destroy=self.destroy, head_node=self.head_node,
                                     sleep=lambda _: None, clock=self.clock), self.out, poll=10)
        self.now = 0.0

    def clock(self) -> float:
        self.now += 10
        return self.now

    def deploy(self, cluster: str) -> int:
        self.deploys.append(cluster)
        if cluster in self.fail_deploy:
            self.fail_deploy.discard(cluster)
            return 1
        settings = self.upgrade.cluster(cluster)
        bridge = {"JobBridgePrefix": "jobs/"} if settings.job_bridge else {}
        put_stack(settings.stack_name, ClusterName=cluster, HeadNodeInstanceId="i-0123456789abcdef0", **bridge)
        return 0

    def destroy(self, stack: str) -> int:
        self.destroyed.append(stack)
        boto3.client("cloudformation").delete_stack(StackName=stack)
        return 0

    def head_node(self, aws: Session, stack: str, commands: list[str]) -> str:
        self.commands += commands
        if commands == ["squeue -h -o %i | wc -l"]:
            return f"{self.jobs_left.pop(0) if len(self.jobs_left) > 1 else self.jobs_left[0]}\n"
        if "sinfo -h -o '%R %a'" in commands[0]:
            return self.partitions
        return ""


MOVED = {OLD: {"parallelcluster_version": "3.15.1", "job_bridge": False},
         NEW: {"parallelcluster_version": "3.16.1", "job_bridge": True}}


def test_move_bridge_takes_it_off_the_old_cluster_before_the_new_one_starts_it(aws):
    world = World(bridge_on=OLD, entries=MOVED)
    assert world.upgrade.move_bridge(OLD, NEW) == 0, world.out.getvalue()
    assert world.deploys == [OLD, NEW]  # never on both head nodes at once
    assert world.upgrade.move_bridge(OLD, NEW) == 0 and world.deploys == [OLD, NEW]  # done: nothing more to do


def test_an_interrupted_move_goes_on_where_it_stopped(aws):
    world = World(bridge_on=OLD, entries=MOVED, fail_deploy={NEW})
    assert world.upgrade.move_bridge(OLD, NEW) == 1
    assert world.upgrade.move_bridge(OLD, NEW) == 0
    assert world.deploys == [OLD, NEW, NEW]  # the old cluster was not deployed again


def test_move_bridge_waits_for_the_cdk_json_edit():
    out = io.StringIO()
    unmoved = clusters(parallelcluster_version="3.15.1", clusters={OLD: {}, NEW: {"parallelcluster_version": "3.16.1"}},
                       **BRIDGE)
    upgrade = Upgrade(Session("us-east-1", None), unmoved, Steps(deploy=lambda c: 0, destroy=lambda s: 0), out)
    assert upgrade.move_bridge(OLD, NEW) == 1
    assert f"\"job_bridge\": true on {NEW} and false on {OLD}" in out.getvalue()


def test_drain_refuses_while_the_old_cluster_runs_the_bridge(aws):
    world = World(bridge_on=OLD, entries={OLD: {"job_bridge": True}, NEW: {"parallelcluster_version": "3.16.1"}})
    assert world.upgrade.drain(OLD) == 1 and world.commands == []
    assert "still runs the job bridge" in world.out.getvalue()


def test_drain_waits_for_the_queue_and_says_how_to_go_on(aws):
    world = World(bridge_on=NEW, entries=MOVED)
    world.jobs_left = [3, 3, 3]
    assert world.upgrade.drain(OLD, timeout=15) == 1
    assert "3 job(s) still queued or running there. Run hpc-upgrade drain hpc-cluster again" in world.out.getvalue()
    world.jobs_left = [1, 0]
    assert world.upgrade.drain(OLD, timeout=600) == 0
    assert "drained, no job left; next: hpc-upgrade remove hpc-cluster" in world.out.getvalue()


def test_remove_only_a_drained_empty_cluster_and_only_once(aws):
    world = World(bridge_on=NEW, entries=MOVED)
    world.partitions = "debug up\n"
    assert world.upgrade.remove(OLD) == 1 and world.destroyed == []
    assert "taking jobs: debug" in world.out.getvalue()
    world.partitions, world.jobs_left = "debug drain\n", [2]
    assert world.upgrade.remove(OLD) == 1 and world.destroyed == []
    world.jobs_left = [0]
    assert world.upgrade.remove(OLD) == 0 and world.destroyed == ["ClusterStack"]
    assert world.upgrade.remove(OLD) == 0 and world.destroyed == ["ClusterStack"]  # gone: nothing to do
    assert "remove hpc-cluster from cdk.json's clusters" in world.out.getvalue()


def test_the_last_cluster_is_not_an_upgrade():
    upgrade = Upgrade(Session("us-east-1", None), clusters(), Steps(deploy=lambda c: 0, destroy=lambda s: 0))
    with pytest.raises(OpsError, match="the only cluster in cdk.json"):
        upgrade.remove(OLD)
