"""`hpc-deploy`: `cdk deploy` with the steps a careful operator takes, in order.

1. synthesize once (the templates checked below are exactly the ones deployed: `cdk deploy --app cdk.out`);
2. preflight against the account (ops/preflight.py, read-only);
3. the update plan: ParallelCluster's update policies for every changed key against each deployed cluster
   stack (lifecycle/update_preview.py); an unsupported change stops here;
4. when the plan needs a stopped compute fleet: drain (--wait-for-jobs) or not (--stop-now), stop the
   fleet, deploy, and start the fleet again whatever the deploy did. A state file makes an interrupted
   run resumable: the next run finishes the deploy and starts the fleet; it is never left stopped silently;
5. `hpc-ops verify`, unless --no-verify.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, TextIO

from botocore.exceptions import ClientError

from lifecycle.templates import app_stacks, is_cluster_stack
from lifecycle.update_preview import Preview, to_terminal
from ops.cluster import OpsError, Session, fleet_status, on_head_node, set_fleet, stack_status
from ops.preflight import Preflight, Target
from settings.context import REPO_ROOT

STATE_FILE = REPO_ROOT / ".deploy-state.json"
PREREQ_STACK = "PrereqStack"
DRA = "AWS::FSx::DataRepositoryAssociation"
FLEET_STOPPED = ("STOPPED",)
FLEET_STOP_NEEDED = "needs compute fleet stop"
# Other effects that need something only the user can decide (edit the config, replace the head node).
BLOCKING = ("needs QueueUpdateStrategy", "needs login nodes stop", "needs head node stop")
# The drain, on the head node: a maintenance reservation on every node from now (running jobs go on, no new
# job starts), the count of jobs still running, and its removal. Tested on a real Slurm (test_deploy_slurm.py).
RESERVE = ("scontrol create reservation ReservationName={name} Users=root StartTime=now Duration=infinite "
           "Nodes=ALL Flags=MAINT,IGNORE_JOBS")
RUNNING_JOBS = "squeue -h -t RUNNING,COMPLETING,CONFIGURING -o %i | wc -l"
RELEASE = "scontrol delete ReservationName={name}"


@dataclass
class Options:
    wait_for_jobs: bool = False
    stop_now: bool = False
    drain_timeout: int = 3600  # seconds the running jobs get to finish
    fleet_timeout: int = 1800  # seconds ParallelCluster gets to stop or start the fleet
    poll: float = 30.0
    verify: bool = True
    skip: tuple[str, ...] = ()  # preflight checks to skip
    approve: bool = False  # cdk deploy --require-approval never
    context: dict[str, str] = field(default_factory=dict)
    cluster: str | None = None  # with several clusters: deploy PrereqStack and this cluster's stack only


class DeployState:
    """What an interrupted run left to finish: the fleet it stopped and the Slurm reservation it made."""

    def __init__(self, path: Path = STATE_FILE) -> None:
        self.path = path
        self.data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}

    def __bool__(self) -> bool:
        return bool(self.data)

    def update(self, **values: Any) -> None:
        self.data.update(values)
        self.path.write_text(json.dumps(self.data, indent=2) + "\n")

    def clear(self) -> None:
        self.data = {}
        self.path.unlink(missing_ok=True)


@dataclass
class Steps:
    """The side effects of a deploy, replaceable in tests (the defaults are the real ones)."""
    synth: Callable[[Path, dict[str, str]], Path]
    cdk_deploy: Callable[[Path, bool, list[str]], int]  # (assembly, approve, exactly these stacks)
    preview: Callable[..., Preview]  # (deployed cluster stack, its target, fleet running, prereq=(both PrereqStacks))
    verify: Callable[[Session, str], int]  # (aws, cluster stack)
    head_node: Callable[[Session, list[str]], str] | None = None  # commands -> stdout; default SSM Run Command
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic


def default_steps(out: TextIO = sys.stdout, profile: str | None = None) -> Steps:
    """``profile``: the AWS profile the commands were given, handed on to the CDK CLI."""
    from lifecycle.synth import CDK, synth, synth_env
    from lifecycle.update_preview import preview

    def cdk_deploy(assembly: Path, approve: bool, stacks: list[str]) -> int:
        args = [str(CDK), "deploy", "--app", str(assembly), "--exclusively", *stacks, "--progress", "events"]
        if approve:
            args += ["--require-approval", "never"]
        return subprocess.run(args, cwd=REPO_ROOT, env=cli_env(synth_env(), profile)).returncode

    def verify(aws: Session, stack: str) -> int:
        from ops.verify import Options as VerifyOptions, table, verify as run_verify

        results = run_verify(aws, VerifyOptions(), stack=stack)
        print(table(results), file=out)
        return 1 if any(r.status == "FAIL" for r in results) else 0

    return Steps(synth=lambda directory, context: synth(directory, context=context), cdk_deploy=cdk_deploy,
                 preview=lambda base, target, running, prereq=None: preview(base, target, running=running, prereq=prereq),
                 verify=verify)


def cli_env(env: dict[str, str], profile: str | None) -> dict[str, str]:
    """The CDK CLI's environment, with the profile the command was given (the CLI does not see our --profile)."""
    return {**env, "AWS_PROFILE": profile} if profile else env


def deployed_template(aws: Session, stack: str) -> dict[str, Any] | None:
    try:
        body = aws.client("cloudformation").get_template(StackName=stack, TemplateStage="Original")["TemplateBody"]
    except ClientError as error:
        if "does not exist" in str(error):
            return None
        raise OpsError(f"cannot read the deployed {stack}: {error.response['Error']['Message']}") from None
    return body if isinstance(body, dict) else json.loads(body)


class Deployer:
    def __init__(self, aws: Session, options: Options, steps: Steps, assembly: Path, out: TextIO = sys.stdout,
                 state: DeployState | None = None) -> None:
        self.aws, self.options, self.steps, self.assembly, self.out = aws, options, steps, assembly, out
        self.state = state if state is not None else DeployState()
        self.step = 0
        self.stacks: list[str] = [PREREQ_STACK]  # what this run deploys
        self.fleet_stack = str(self.state.data.get("stack", "ClusterStack"))  # the cluster whose fleet it stops

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def title(self, text: str) -> None:
        self.step += 1
        self.say(f"\n[{self.step}/5] {text}")

    # -- the run ------------------------------------------------------------------------------------
    def run(self) -> int:
        if self.state:
            if self.state.data.get("region") != self.aws.region:
                raise OpsError(f"{self.state.path.name} is from a deploy in {self.state.data.get('region')}: "
                               f"run there (--region {self.state.data.get('region')}) to finish it")
            self.say(f"resuming the deploy interrupted while {self.state.data.get('phase')} "
                     f"(started {self.state.data.get('started')}): the fleet of {self.state.data.get('cluster')} "
                     "is started again at the end")
            if self.state.data.get("phase") == "starting":  # the deploy itself had finished
                self._restore()
        try:
            return self._run()
        except KeyboardInterrupt:
            if self.state:
                self.say(f"\ninterrupted while {self.state.data.get('phase')}: run hpc-deploy again to finish "
                         "(it deploys and starts the compute fleet), or hpc-ops start-fleet")
            return 130

    def _run(self) -> int:
        self.title("synthesize")
        self.steps.synth(self.assembly, self.options.context)
        templates = {s: json.loads((self.assembly / f"{s}.template.json").read_text())
                     for s in app_stacks(str(self.assembly))}
        targets = [Target(templates, s) for s in templates if is_cluster_stack(s)]
        if self.options.cluster:
            targets = [t for t in targets if t.cluster_name == self.options.cluster]
            if not targets:
                return self._stop_here(f"no cluster named {self.options.cluster} in this app (cdk.json's clusters)")
        self.stacks = [PREREQ_STACK, *(t.cluster_stack for t in targets)]
        for target in targets:
            self.say(f"cluster {target.cluster_name} ({target.cluster_stack}) from {target.config_source} -> "
                     f"{self.assembly}")

        self.title("preflight (read-only)")
        findings = [f for target in targets for f in Preflight(self.aws, target, self.options.skip).run()]
        for finding in dict.fromkeys(str(f) for f in findings):  # account-wide checks run once per cluster
            self.say(f"  {finding}")
        if any(f.status == "FAIL" for f in findings):
            return self._stop_here("preflight failed: fix the lines above, then run again")

        self.title("update plan")
        needs_stop: list[Target] = []
        for target in targets:
            stop = self._plan(target, templates)
            if stop is None:
                return 1
            if stop:
                needs_stop.append(target)
        if len(needs_stop) > 1:
            return self._stop_here("the compute fleets of " + ", ".join(t.cluster_name for t in needs_stop) +
                                   " must stop: deploy one at a time, hpc-deploy --cluster NAME")

        self.title("deploy")
        if needs_stop and not self.state and not (self.options.wait_for_jobs or self.options.stop_now):
            self.say("  this update needs the compute fleet stopped. Run again with --wait-for-jobs (no new jobs "
                     "start, running ones finish, then the fleet stops) or --stop-now (running jobs are requeued "
                     "or lost now)")
            return 1
        if needs_stop and not self.state:
            self.fleet_stack = needs_stop[0].cluster_stack
        stopped_by_us = bool(self.state) or bool(needs_stop)
        if stopped_by_us:
            try:
                self._stop_fleet(needs_stop[0].cluster_name if needs_stop else self.state.data["cluster"])
            except OpsError as error:
                self.say(f"  {error}")
                self._restore()
                return 1
        self._wait_for_stacks()
        if self.state:
            self.state.update(phase="deploying")
        code = self._move_data_repositories(templates)
        if code == 0:
            self.say(f"  cdk deploy --app {self.assembly} --exclusively {' '.join(self.stacks)}")
            code = self.steps.cdk_deploy(self.assembly, self.options.approve, self.stacks)
        if stopped_by_us:
            self._restore()
        if code != 0:
            self.say(f"  cdk deploy failed (exit {code})" + ("; the compute fleet was started again" if stopped_by_us
                                                             else ""))
            return code

        self.title("verify")
        if not self.options.verify:
            self.say("  skipped (--no-verify): run hpc-ops verify")
            return 0
        return max(self.steps.verify(self.aws, target.cluster_stack) for target in targets) if targets else 0

    def _plan(self, target: Target, templates: dict[str, dict[str, Any]]) -> bool | None:
        """Prints one cluster's update plan: whether it needs the fleet stopped; None when it cannot go on."""
        deployed = deployed_template(self.aws, target.cluster_stack)
        fleet = fleet_status(self.aws, target.cluster_name) if deployed else "none (no cluster yet)"
        plan = self.steps.preview(deployed, templates[target.cluster_stack], fleet not in FLEET_STOPPED,
                                  prereq=(deployed_template(self.aws, PREREQ_STACK), templates.get(PREREQ_STACK)))
        if len(self.stacks) > 2:
            self.say(f"  {target.cluster_stack}:")
        self.say(f"  compute fleet: {fleet}")
        self.say("  " + to_terminal(plan).rstrip().replace("\n", "\n  "))
        if plan.has_errors:
            self._stop_here("this update cannot be applied to the running cluster. Recommended: "
                            f"{plan.recommended}")
            return None
        blocking = [c for c in plan.changes if c.category in BLOCKING and c.check != "SUCCEEDED"]
        if blocking:
            self._stop_here("these changes need a decision first: " + "; ".join(
                f"{c.path} ({c.category})" for c in blocking))
            return None
        return any(c.category == FLEET_STOP_NEEDED and c.check != "SUCCEEDED" for c in plan.changes)

    def _move_data_repositories(self, templates: dict[str, dict[str, Any]]) -> int:
        """Deployed before the associations moved to PrereqStack, a cluster stack still holds them: FSx refuses a
        second association on the same path, so that stack is deployed alone first (its associations go; the data
        stays on Lustre and in S3), then PrereqStack creates them."""
        if not any(r["Type"] == DRA for r in templates[PREREQ_STACK].get("Resources", {}).values()):
            return 0
        for stack in self.stacks[1:]:
            deployed = deployed_template(self.aws, stack) or {}
            if any(r.get("Type") == DRA for r in deployed.get("Resources", {}).values()):
                self.say(f"  the data repository associations move from {stack} to PrereqStack: {stack} first "
                         "(auto-export pauses until PrereqStack links them again)")
                code = self.steps.cdk_deploy(self.assembly, self.options.approve, [stack])
                if code != 0:
                    return code
        return 0

    def _stop_here(self, message: str) -> int:
        self.say(f"  {message}")
        if self.state:
            self._restore()  # a resumed run that cannot go on still hands the fleet back
        return 1

    # -- the fleet ----------------------------------------------------------------------------------
    def _head_node(self, commands: list[str]) -> str:
        if self.steps.head_node:
            return self.steps.head_node(self.aws, commands)
        return on_head_node(self.aws, self.fleet_stack, commands, "hpc-deploy", sleep=self.steps.sleep)

    def _stop_fleet(self, cluster: str) -> None:
        if not self.state:
            self.state.update(cluster=cluster, stack=self.fleet_stack, region=self.aws.region,
                              phase="draining" if self.options.wait_for_jobs
                              else "stopping", reservation=None,
                              started=datetime.now(tz=timezone.utc).isoformat(timespec="seconds"))
        if self.options.wait_for_jobs and not self.state.data.get("reservation") and \
                self.state.data.get("phase") == "draining":
            self._drain()
        self.state.update(phase="stopping")
        self.say(f"  {set_fleet(self.aws, 'STOP_REQUESTED', self.fleet_stack)}")
        self._wait_fleet(cluster, "STOPPED")

    def _drain(self) -> None:
        name = f"deploy-{int(time.time())}"
        self._head_node([RESERVE.format(name=name)])
        self.state.update(reservation=name)
        self.say(f"  Slurm reservation {name}: no new job starts; waiting up to {self.options.drain_timeout}s for the "
                 "running ones")
        started = self.steps.clock()
        while True:
            running = int(self._head_node([RUNNING_JOBS]).strip() or 0)
            if running == 0:
                self.say("  no job running")
                return
            if self.steps.clock() - started >= self.options.drain_timeout:
                raise OpsError(f"{running} job(s) still running after {self.options.drain_timeout}s: nothing was "
                               "deployed. Run again with a longer --drain-timeout, or --stop-now")
            self.say(f"  {running} job(s) running")
            self.steps.sleep(self.options.poll)

    def _wait_fleet(self, cluster: str, wanted: str) -> None:
        started = self.steps.clock()
        while (status := fleet_status(self.aws, cluster)) != wanted:
            if self.steps.clock() - started >= self.options.fleet_timeout:
                raise OpsError(f"the compute fleet is {status}, not {wanted}, after {self.options.fleet_timeout}s: "
                               "see hpc-ops status")
            self.steps.sleep(self.options.poll)
        self.say(f"  compute fleet {wanted}")

    def _wait_for_stacks(self) -> None:
        """An interrupted `cdk deploy` leaves CloudFormation working: a new one would be refused until it ends."""
        started = self.steps.clock()
        for stack in self.stacks:
            while (status := stack_status(self.aws, stack) or "").endswith("_IN_PROGRESS"):
                if self.steps.clock() - started >= self.options.fleet_timeout:
                    raise OpsError(f"{stack} is still {status}: wait for it, then run again")
                self.say(f"  {stack} is {status}: waiting")
                self.steps.sleep(self.options.poll)

    def _restore(self) -> None:
        """Start the fleet again and drop the reservation: after a deploy, a failed one, or a refused resume."""
        cluster = self.state.data.get("cluster")
        self.state.update(phase="starting")
        try:
            self.say(f"  {set_fleet(self.aws, 'START_REQUESTED', self.fleet_stack)}")
            self._wait_fleet(cluster, "RUNNING")
        except OpsError as error:
            self.say(f"  could not start the fleet: {error}. Run hpc-ops start-fleet")
            return  # the state file stays: the next run tries again
        reservation = self.state.data.get("reservation")
        if reservation:
            try:
                self._head_node([RELEASE.format(name=reservation)])
                self.say(f"  Slurm reservation {reservation} removed: jobs start again")
            except OpsError as error:
                self.say(f"  could not remove reservation {reservation}: {error}. On the head node: "
                         f"{RELEASE.format(name=reservation)}")
        self.state.clear()


__all__ = ["Deployer", "DeployState", "Options", "Steps", "default_steps", "deployed_template"]
