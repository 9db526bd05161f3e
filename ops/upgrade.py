"""A ParallelCluster upgrade as blue/green, behind `hpc-upgrade`: ParallelCluster updates a cluster only with the
version that created it, so a new version is a new cluster beside the old one, on the same PrereqStack.

    plan         the cdk.json edit (a second entry in ``clusters``) and the steps, offline
    (create)     hpc-deploy --cluster NEW; (verify) hpc-ops --cluster NEW verify
    move-bridge  the job bridge leaves OLD's head node, then starts on NEW's (jobs wait in S3 meanwhile)
    drain        OLD's partitions stop taking jobs; queued and running ones finish there (no job lost)
    remove       once OLD's queue is empty: `cdk destroy` of OLD's stack (its data is on /fsx, /home, S3)

Every step reads where things stand from CloudFormation, Slurm and cdk.json, so running it again after an
interruption goes on from there; none keeps state of its own.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TextIO

from cluster_yaml.stack_values import JOB_BRIDGE_PREFIX
from ops.cluster import OpsError, Session, on_head_node, outputs, stack_status
from settings.context import CDK_JSON, REPO_ROOT
from settings.cluster import CLUSTER_NAME as VALID_NAME, DEFAULT_STACK, ClusterSettings, Clusters

# On OLD's head node (root, through SSM). Partition names come from the cluster config, but are still read as
# lines, never split by the shell. State=DRAIN (scontrol): Slurm queues no new job on the partition but still
# allocates and runs those already queued, so the drain loses no job.
DRAIN = ("sinfo -h -o %R | sort -u | while IFS= read -r partition; do "
         "scontrol update PartitionName=\"$partition\" State=DRAIN || exit 1; done")
PARTITION_STATES = "sinfo -h -o '%R %a' | sort -u"
JOBS_LEFT = "squeue -h -o %i | wc -l"


@dataclass
class Steps:
    """The side effects, replaceable in tests (the defaults are the real ones)."""
    deploy: Callable[[str], int]  # cluster name -> exit code of `hpc-deploy --cluster NAME`
    destroy: Callable[[str], int]  # stack -> exit code of `cdk destroy --force STACK`
    head_node: Callable[[Session, str, list[str]], str] | None = None  # (aws, stack, commands) -> stdout; SSM
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic


def default_steps(aws: Session, profile: str | None = None) -> Steps:
    """The real steps, in ``aws``'s region and with ``profile`` handed on to the CDK CLI."""
    import subprocess
    import tempfile

    from lifecycle.synth import CDK, synth, synth_env
    from ops.deploy import Deployer, Options, cli_env, default_steps as deploy_steps

    def deploy(cluster: str) -> int:  # hpc-deploy --cluster NAME --no-verify (verify is a step of its own)
        with tempfile.TemporaryDirectory(prefix="upgrade-") as tmp:
            return Deployer(aws, Options(cluster=cluster, verify=False), deploy_steps(profile=profile),
                            Path(tmp) / "cdk.out").run()

    def destroy(stack: str) -> int:
        with tempfile.TemporaryDirectory(prefix="upgrade-") as tmp:
            assembly = synth(Path(tmp) / "cdk.out")
            return subprocess.run([str(CDK), "destroy", "--app", str(assembly), "--exclusively", "--force", stack],
                                  cwd=REPO_ROOT, env=cli_env(synth_env(), profile)).returncode

    return Steps(deploy=deploy, destroy=destroy)


def new_cluster_name(old: str, version: str) -> str:
    return f"{old}-{version.replace('.', '-')}"


def plan(clusters: Clusters, version: str, old_name: str | None = None, new_name: str | None = None,
         accounting: bool = False) -> tuple[dict[str, Any], list[str]]:
    """The ``clusters`` value that adds the new cluster beside the old one, and the steps, as commands.
    ``accounting``: slurm_accounting is on, whose one database two clusters may not share (stacks/plan.py)."""
    if accounting:
        raise OpsError("slurm_accounting=true: a second cluster would run a second slurmdbd on the one accounting "
                       "database (synth refuses it). Upgrade the cold way: let the jobs finish, `npx cdk destroy "
                       "ClusterStack` (the database, file systems and data bucket stay in PrereqStack), deploy with "
                       "the new parallelcluster_version (docs/day2.md)")
    by_name = {c.cluster_name: c for c in clusters.clusters}
    old = by_name.get(old_name) if old_name else clusters.clusters[0]
    if old is None:
        raise OpsError(f"no cluster named {old_name} in cdk.json (clusters: {', '.join(by_name)})")
    if old.parallelcluster_version == version:
        raise OpsError(f"{old.cluster_name} already runs ParallelCluster {version}")
    new = new_name or new_cluster_name(old.cluster_name, version)
    if new in by_name:
        raise OpsError(f"a cluster named {new} is already in cdk.json's clusters: pass --name")
    if not VALID_NAME.match(new):
        raise OpsError(f"{new} is not a valid cluster name (a letter, then letters, digits, hyphens; at most 60): "
                       "pass --name")
    entries: dict[str, Any] = {}
    for cluster in clusters.clusters:  # every existing cluster pinned as it is, so nothing else changes
        entries[cluster.cluster_name] = {"config": cluster.cluster_config,
                                         "parallelcluster_version": cluster.parallelcluster_version,
                                         "job_bridge": cluster.job_bridge}
    entries[new] = {"config": old.cluster_config, "parallelcluster_version": version, "job_bridge": False}
    steps = [f"hpc-upgrade plan --to-version {version} --write   (or write the clusters above into cdk.json)",
             f"hpc-deploy --cluster {new}", f"hpc-ops --cluster {new} verify"]
    if old.job_bridge:
        steps.append(f"in cdk.json's clusters: \"job_bridge\": true on {new}, false on {old.cluster_name}; then "
                     f"hpc-upgrade move-bridge {old.cluster_name} {new}")
    steps += [f"hpc-upgrade drain {old.cluster_name}   (again until it says the queue is empty)",
              f"hpc-upgrade remove {old.cluster_name}", f"remove {old.cluster_name} from cdk.json's clusters"]
    if old.stack_name == DEFAULT_STACK:
        steps[-1] += f" (ClusterStack goes with it; {new} stays in ClusterStack-{new})"
    return entries, steps


def write_clusters(entries: dict[str, Any], path: Path = CDK_JSON) -> None:
    document = json.loads(path.read_text())
    document["context"]["clusters"] = entries
    path.write_text(json.dumps(document, indent=2) + "\n")


@dataclass
class Upgrade:
    aws: Session
    clusters: Clusters
    steps: Steps
    out: TextIO = sys.stdout
    poll: float = 30.0

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def cluster(self, name: str) -> ClusterSettings:
        for cluster in self.clusters.clusters:
            if cluster.cluster_name == name:
                return cluster
        raise OpsError(f"no cluster named {name} in cdk.json (clusters: "
                       f"{', '.join(c.cluster_name for c in self.clusters.clusters)})")

    # -- what is deployed --------------------------------------------------------------------------
    def _runs_bridge(self, stack: str) -> bool:
        return stack_status(self.aws, stack) is not None and bool(outputs(self.aws, stack).get(JOB_BRIDGE_PREFIX))

    def _head_node(self, stack: str, commands: list[str]) -> str:
        if self.steps.head_node:
            return self.steps.head_node(self.aws, stack, commands)
        return on_head_node(self.aws, stack, commands, "hpc-upgrade", sleep=self.steps.sleep)

    def _jobs_left(self, stack: str) -> int:
        return int(self._head_node(stack, [JOBS_LEFT]).strip() or 0)

    # -- the steps ---------------------------------------------------------------------------------
    def move_bridge(self, old_name: str, new_name: str) -> int:
        old, new = self.cluster(old_name), self.cluster(new_name)
        if not new.job_bridge or old.job_bridge:
            self.say(f"first set, in cdk.json's clusters, \"job_bridge\": true on {new_name} and false on {old_name}")
            return 1
        if stack_status(self.aws, new.stack_name) is None:
            self.say(f"{new_name} is not deployed: hpc-deploy --cluster {new_name}, then hpc-ops --cluster {new_name} "
                     "verify")
            return 1
        if self._runs_bridge(old.stack_name):
            self.say(f"the job bridge leaves {old_name}: hpc-deploy --cluster {old_name} (jobs submitted meanwhile wait "
                     "in S3)")
            code = self.steps.deploy(old_name)
            if code != 0:
                return code
        else:
            self.say(f"the job bridge is off on {old_name}")
        if not self._runs_bridge(new.stack_name):
            self.say(f"the job bridge starts on {new_name}: hpc-deploy --cluster {new_name}")
            code = self.steps.deploy(new_name)
            if code != 0:
                return code
        self.say(f"the job bridge runs on {new_name}; next: hpc-upgrade drain {old_name}")
        return 0

    def drain(self, old_name: str, timeout: float = 0) -> int:
        """DRAIN every partition of the old cluster, then wait (up to ``timeout`` seconds) for its queue to empty."""
        old = self.cluster(old_name)
        self._refuse_if_last(old)
        if stack_status(self.aws, old.stack_name) is None:
            self.say(f"{old_name} is not deployed: nothing to drain")
            return 0
        if self._runs_bridge(old.stack_name):
            self.say(f"{old_name} still runs the job bridge, whose jobs a drained cluster would refuse: move it "
                     "first (hpc-upgrade move-bridge)")
            return 1
        self._head_node(old.stack_name, [DRAIN])
        started = self.steps.clock()
        while (left := self._jobs_left(old.stack_name)) > 0:
            if self.steps.clock() - started >= timeout:
                self.say(f"{old_name}: partitions DRAIN (no new job); {left} job(s) still queued or running there. "
                         f"Run hpc-upgrade drain {old_name} again to keep waiting")
                return 1
            self.say(f"{old_name}: {left} job(s) queued or running")
            self.steps.sleep(self.poll)
        self.say(f"{old_name}: drained, no job left; next: hpc-upgrade remove {old_name}")
        return 0

    def remove(self, old_name: str) -> int:
        old = self.cluster(old_name)
        self._refuse_if_last(old)
        status = stack_status(self.aws, old.stack_name)
        while status and status.endswith("_IN_PROGRESS"):
            self.say(f"{old.stack_name} is {status}: waiting")
            self.steps.sleep(self.poll)
            status = stack_status(self.aws, old.stack_name)
        if status is not None and status != "DELETE_COMPLETE":
            if self._runs_bridge(old.stack_name):
                self.say(f"{old_name} still runs the job bridge: hpc-upgrade move-bridge first")
                return 1
            states = self._head_node(old.stack_name, [PARTITION_STATES]).split()
            open_partitions = [p for p, a in zip(states[::2], states[1::2]) if a not in ("drain", "inact", "down")]
            left = self._jobs_left(old.stack_name)
            if open_partitions or left:
                self.say(f"{old_name} is not drained ({left} job(s) left; taking jobs: "
                         f"{', '.join(open_partitions) or 'none'}): run hpc-upgrade drain {old_name} until its queue "
                         "is empty")
                return 1
            self.say(f"cdk destroy {old.stack_name} (/fsx, /home, the data bucket and the other clusters stay)")
            code = self.steps.destroy(old.stack_name)
            if code != 0:
                return code
        self.say(f"{old.stack_name} is gone. Last step: remove {old_name} from cdk.json's clusters")
        return 0

    def _refuse_if_last(self, old: ClusterSettings) -> None:
        if len(self.clusters.clusters) < 2:
            raise OpsError(f"{old.cluster_name} is the only cluster in cdk.json: an upgrade adds the new one first "
                           "(hpc-upgrade plan --to-version VERSION)")
