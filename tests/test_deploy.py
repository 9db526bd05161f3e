"""hpc-deploy end to end without AWS: moto holds the stacks' outputs, the bootstrap parameter and
ParallelCluster's compute-fleet table; ParallelCluster's own update policies (the real ConfigPatch, through
the update preview) decide whether the fleet must stop; `cdk deploy`, the head node's Slurm and
ParallelCluster's fleet daemon are stand-ins that record what they were asked.

Every branch: no stop needed, stop needed without a flag, --stop-now, --wait-for-jobs (and its timeout),
a failed deploy, an interrupted deploy resumed by the next run, an unsupported change, a failed preflight.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from lifecycle.update_preview import REPLACE_PATH, preview
from ops import deploy as deploy_module
from ops.cluster import Session
from ops.deploy import Deployer, DeployState, Options, Steps
from tests.conftest import synth

CLUSTER = "hpc-cluster"
TABLE = f"parallelcluster-{CLUSTER}"


def template(**context: Any) -> dict[str, dict]:
    app = synth(**context)
    return {name: app.synthesis.template(name) for name in app.stacks}


def fleet() -> str:
    item = boto3.client("dynamodb").get_item(TableName=TABLE, Key={"Id": {"S": "COMPUTE_FLEET"}})["Item"]
    return item["Data"]["M"]["status"]["S"]


def parallelcluster_daemon(_: float = 0) -> None:
    """What ParallelCluster's fleet management does on the head node, one step per poll."""
    moves = {"STOP_REQUESTED": "STOPPED", "START_REQUESTED": "RUNNING"}
    if fleet() in moves:
        boto3.client("dynamodb").update_item(
            TableName=TABLE, Key={"Id": {"S": "COMPUTE_FLEET"}}, UpdateExpression="set #d.#s = :s",
            ExpressionAttributeNames={"#d": "Data", "#s": "status"}, ExpressionAttributeValues={":s": {"S": moves[fleet()]}})


@pytest.fixture
def account(aws):
    """A bootstrapped account with this app deployed (vanilla) and its fleet RUNNING."""
    boto3.client("ssm").put_parameter(Name="/cdk-bootstrap/hnb659fds/version", Value="21", Type="String")
    for name, outputs in (("PrereqStack", {"DataBucketName": "data"}),
                          ("ClusterStack", {"ClusterName": CLUSTER, "HeadNodeInstanceId": "i-0123456789abcdef0"})):
        body = {"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}, "Outputs": {k: {"Value": v} for k, v in outputs.items()}}
        boto3.client("cloudformation").create_stack(StackName=name, TemplateBody=json.dumps(body))
    dynamodb = boto3.client("dynamodb")
    dynamodb.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                          KeySchema=[{"AttributeName": "Id", "KeyType": "HASH"}],
                          AttributeDefinitions=[{"AttributeName": "Id", "AttributeType": "S"}])
    dynamodb.put_item(TableName=TABLE, Item={"Id": {"S": "COMPUTE_FLEET"}, "Data": {"M": {"status": {"S": "RUNNING"}}}})


class World:
    """The stand-ins, and what happened to them."""

    def __init__(self, tmp_path: Path, deployed: dict[str, dict], target: dict[str, dict],
                 deploy_results: list[Any] | None = None, running_jobs: list[int] | None = None) -> None:
        self.tmp_path, self.deployed, self.target = tmp_path, deployed, target
        self.deploy_results = list(deploy_results or [0])
        self.running_jobs = list(running_jobs or [0])
        self.deploys: list[str] = []  # the fleet status at each cdk deploy
        self.deployed_stacks: list[list[str]] = []  # the stacks of each cdk deploy
        self.commands: list[str] = []
        self.verified = 0
        self.now = 0.0
        self.out = io.StringIO()
        self.state = DeployState(tmp_path / "state.json")

    def synth(self, assembly: Path, context: dict[str, str]) -> Path:
        assembly.mkdir(parents=True, exist_ok=True)
        for name, body in self.target.items():
            (assembly / f"{name}.template.json").write_text(json.dumps(body))
        return assembly

    def cdk_deploy(self, assembly: Path, approve: bool, stacks: list[str]) -> int:
        self.deploys.append(fleet())
        self.deployed_stacks.append(stacks)
        result = self.deploy_results.pop(0)
        if isinstance(result, BaseException):
            raise result
        return result

    def head_node(self, aws: Session, commands: list[str]) -> str:
        self.commands += commands
        if commands[0].startswith("squeue"):
            return f"{self.running_jobs.pop(0) if len(self.running_jobs) > 1 else self.running_jobs[0]}\n"
        return ""

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        parallelcluster_daemon()

    def verify(self, aws: Session, stack: str) -> int:
        self.verified += 1
        return 0

    def run(self, monkeypatch, **options: Any) -> int:
        monkeypatch.setattr(deploy_module, "deployed_template",
                            lambda aws, stack: self.deployed.get(stack))
        steps = Steps(synth=self.synth, cdk_deploy=self.cdk_deploy,
                      preview=lambda base, target, running, prereq=None: preview(base, target, running=running,
                                                                                 prereq=prereq),
                      verify=self.verify, head_node=self.head_node, sleep=self.sleep, clock=lambda: self.now)
        aws = Session("us-east-1", boto3.Session(region_name="us-east-1"))
        options = Options(poll=10, skip=("vcpu-quota",), **options)
        return Deployer(aws, options, steps, self.tmp_path / "cdk.out", self.out, self.state).run()


@pytest.fixture(scope="module")
def base() -> dict[str, dict]:
    return template()


@pytest.fixture(scope="module")
def new_instance_type() -> dict[str, dict]:
    """A compute resource's InstanceType: ParallelCluster's COMPUTE_FLEET_STOP policy."""
    return template(INSTANCE="c5n.18xlarge")


def test_an_update_that_applies_live_deploys_without_touching_the_fleet(account, base, tmp_path, monkeypatch):
    world = World(tmp_path, base, template(NUM_INSTANCES=4))
    assert world.run(monkeypatch) == 0, world.out.getvalue()
    assert world.deploys == ["RUNNING"] and world.verified == 1 and fleet() == "RUNNING"
    text = world.out.getvalue()
    for step in ("[1/5] synthesize", "[2/5] preflight (read-only)", "[3/5] update plan", "[4/5] deploy", "[5/5] verify"):
        assert step in text
    assert "PASS  bootstrap" in text and "RESIZE_UPDATE_STRATEGY_ON_REMOVE" in text


def test_an_update_that_needs_the_fleet_stopped_asks_how(account, base, new_instance_type, tmp_path, monkeypatch):
    world = World(tmp_path, base, new_instance_type)
    assert world.run(monkeypatch) == 1
    assert world.deploys == [] and fleet() == "RUNNING" and not world.state
    assert "COMPUTE_FLEET_STOP" in world.out.getvalue()
    assert "Run again with --wait-for-jobs" in world.out.getvalue() and "--stop-now" in world.out.getvalue()


def test_stop_now_stops_deploys_and_starts_the_fleet(account, base, new_instance_type, tmp_path, monkeypatch):
    world = World(tmp_path, base, new_instance_type)
    assert world.run(monkeypatch, stop_now=True) == 0, world.out.getvalue()
    assert world.deploys == ["STOPPED"] and fleet() == "RUNNING" and world.verified == 1
    assert world.commands == []  # no drain
    assert not world.state and not world.state.path.exists()


def test_wait_for_jobs_drains_with_a_reservation_first(account, base, new_instance_type, tmp_path, monkeypatch):
    world = World(tmp_path, base, new_instance_type, running_jobs=[2, 1, 0])
    assert world.run(monkeypatch, wait_for_jobs=True) == 0, world.out.getvalue()
    [create, *polls, delete] = world.commands
    assert create.startswith("scontrol create reservation ReservationName=deploy-") and "Flags=MAINT,IGNORE_JOBS" in create
    assert polls == ["squeue -h -t RUNNING,COMPLETING,CONFIGURING -o %i | wc -l"] * 3
    assert delete == f"scontrol delete ReservationName={create.split('ReservationName=')[1].split()[0]}"
    assert world.deploys == ["STOPPED"] and fleet() == "RUNNING"
    assert "2 job(s) running" in world.out.getvalue() and "no job running" in world.out.getvalue()


def test_jobs_that_outlast_the_drain_timeout_leave_the_cluster_as_it_was(account, base, new_instance_type, tmp_path,
                                                                           monkeypatch):
    world = World(tmp_path, base, new_instance_type, running_jobs=[3])
    assert world.run(monkeypatch, wait_for_jobs=True, drain_timeout=60) == 1
    assert world.deploys == [] and fleet() == "RUNNING" and not world.state
    assert world.commands[-1].startswith("scontrol delete ReservationName=deploy-")
    assert "3 job(s) still running after 60s: nothing was deployed" in world.out.getvalue()


def test_a_failed_deploy_still_starts_the_fleet(account, base, new_instance_type, tmp_path, monkeypatch):
    world = World(tmp_path, base, new_instance_type, deploy_results=[1])
    assert world.run(monkeypatch, stop_now=True) == 1
    assert world.deploys == ["STOPPED"] and fleet() == "RUNNING" and world.verified == 0 and not world.state
    assert "cdk deploy failed (exit 1); the compute fleet was started again" in world.out.getvalue()


def test_an_interrupted_deploy_is_finished_by_the_next_run(account, base, new_instance_type, tmp_path, monkeypatch):
    world = World(tmp_path, base, new_instance_type, deploy_results=[KeyboardInterrupt()])
    assert world.run(monkeypatch, stop_now=True) == 130
    assert fleet() == "STOPPED" and world.state.data["phase"] == "deploying"
    assert "run hpc-deploy again to finish" in world.out.getvalue()
    # The next run, even without a flag, knows the fleet is stopped by the last one: deploy, then start it.
    again = World(tmp_path, base, new_instance_type)
    again.state = DeployState(world.state.path)
    assert again.run(monkeypatch) == 0, again.out.getvalue()
    assert again.deploys == ["STOPPED"] and fleet() == "RUNNING" and not again.state.path.exists()
    assert "resuming the deploy interrupted while deploying" in again.out.getvalue()


def test_an_unsupported_change_stops_before_anything_happens(account, base, tmp_path, monkeypatch):
    world = World(tmp_path, base, template(HEAD_NODE_INSTANCE_TYPE="c5.18xlarge"))
    assert world.run(monkeypatch, stop_now=True) == 1
    assert world.deploys == [] and fleet() == "RUNNING"
    assert "HeadNode.InstanceType" in world.out.getvalue() and REPLACE_PATH in world.out.getvalue()


def test_a_parallelcluster_upgrade_stops_before_anything_happens_with_the_path(account, tmp_path, monkeypatch):
    world = World(tmp_path, template(parallelcluster_version="3.15.1"), template())
    assert world.run(monkeypatch, stop_now=True) == 1
    assert world.deploys == [] and fleet() == "RUNNING"
    out = world.out.getvalue()
    assert "ParallelCluster 3.15.1 -> 3.16.1: needs a new cluster" in out
    assert "Recommended: keep parallelcluster_version=3.15.1 for this cluster" in out


def test_a_second_cluster_is_deployed_beside_the_first_and_each_verified(account, base, tmp_path, monkeypatch):
    two = template(clusters={CLUSTER: {}, "hpc-cluster-2": {}})
    world = World(tmp_path, base, two)
    assert world.run(monkeypatch) == 0, world.out.getvalue()
    assert world.deployed_stacks == [["PrereqStack", "ClusterStack", "ClusterStack-hpc-cluster-2"]]
    assert world.verified == 2
    out = world.out.getvalue()
    assert "cluster hpc-cluster-2 (ClusterStack-hpc-cluster-2) from cluster_configs/vanilla.yaml" in out
    assert "ClusterStack-hpc-cluster-2:\n  compute fleet: none (no cluster yet)\n  cluster hpc-cluster-2 will be " \
           "created" in out


def test_cluster_deploys_prereq_stack_and_that_cluster_only(account, base, tmp_path, monkeypatch):
    world = World(tmp_path, base, template(clusters={CLUSTER: {}, "hpc-cluster-2": {}}))
    assert world.run(monkeypatch, cluster="hpc-cluster-2") == 0, world.out.getvalue()
    assert world.deployed_stacks == [["PrereqStack", "ClusterStack-hpc-cluster-2"]] and world.verified == 1
    world = World(tmp_path, base, base)
    assert world.run(monkeypatch, cluster="nope") == 1 and world.deployed_stacks == []
    assert "no cluster named nope in this app (cdk.json's clusters)" in world.out.getvalue()


def test_associations_deployed_beside_the_cluster_move_to_prereq_stack_in_two_steps(account, base, tmp_path,
                                                                                    monkeypatch):
    """A cluster stack deployed when the associations lived beside the cluster is deployed alone first: FSx
    refuses a second association on the same path, so PrereqStack can create them only once they are gone."""
    import copy

    old = copy.deepcopy(base)
    old["ClusterStack"]["Resources"]["DataRepositoriesAssociation0"] = {
        "Type": "AWS::FSx::DataRepositoryAssociation", "Properties": {"FileSystemPath": "/data"}}
    world = World(tmp_path, old, base, deploy_results=[0, 0])
    assert world.run(monkeypatch) == 0, world.out.getvalue()
    assert world.deployed_stacks == [["ClusterStack"], ["PrereqStack", "ClusterStack"]]
    assert "the data repository associations move from ClusterStack to PrereqStack" in world.out.getvalue()
    world = World(tmp_path, base, base)  # once moved: one deploy
    assert world.run(monkeypatch) == 0 and world.deployed_stacks == [["PrereqStack", "ClusterStack"]]


def test_a_failed_preflight_stops_before_the_plan(account, base, tmp_path, monkeypatch):
    boto3.client("ssm").delete_parameter(Name="/cdk-bootstrap/hnb659fds/version")
    world = World(tmp_path, base, base)
    assert world.run(monkeypatch) == 1
    assert "FAIL  bootstrap" in world.out.getvalue() and "[3/5]" not in world.out.getvalue()
    assert world.deploys == []


def test_a_first_deploy_creates_the_cluster(account, base, tmp_path, monkeypatch):
    world = World(tmp_path, {}, base)
    assert world.run(monkeypatch) == 0, world.out.getvalue()
    assert "cluster hpc-cluster will be created" in world.out.getvalue() and world.deploys == ["RUNNING"]


def test_help_has_examples(capsys):
    from commands import deploy

    with pytest.raises(SystemExit) as exit_:
        deploy.main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for example in ("hpc-deploy --wait-for-jobs", "hpc-deploy --stop-now", "--skip openzfs"):
        assert example in text


def test_the_real_deploy_step_deploys_the_checked_assembly(monkeypatch, tmp_path):
    """`cdk deploy --app <the synthesized cdk.out>`: what preflight and the plan saw is what CloudFormation gets."""
    calls = []
    monkeypatch.setattr(deploy_module.subprocess, "run", lambda args, **kw: calls.append(args) or
                        type("Done", (), {"returncode": 0})())
    steps = deploy_module.default_steps()
    assert steps.cdk_deploy(tmp_path / "cdk.out", True, ["PrereqStack", "ClusterStack"]) == 0
    [args] = calls
    assert args[0].endswith("node_modules/.bin/cdk") and args[1:6] == ["deploy", "--app", str(tmp_path / "cdk.out"),
                                                                          "--exclusively", "PrereqStack"]
    assert args[6] == "ClusterStack" and args[-2:] == ["--require-approval", "never"]


def test_the_profile_the_command_was_given_reaches_the_cdk_cli(monkeypatch, tmp_path):
    """`hpc-deploy --profile p` (and hpc-upgrade's steps): the CDK CLI deploys with that profile, not the default."""
    from ops import upgrade

    environments = []
    monkeypatch.setattr(deploy_module.subprocess, "run", lambda args, **kw: environments.append(kw["env"]) or
                        type("Done", (), {"returncode": 0})())
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    deploy_module.default_steps(profile="hpc-admin").cdk_deploy(tmp_path / "cdk.out", False, ["PrereqStack"])
    deploy_module.default_steps().cdk_deploy(tmp_path / "cdk.out", False, ["PrereqStack"])
    monkeypatch.setattr("lifecycle.synth.synth", lambda out_dir, **kw: out_dir)
    upgrade.default_steps(Session("us-east-1", None), "hpc-admin").destroy("ClusterStack")
    assert [env.get("AWS_PROFILE") for env in environments] == ["hpc-admin", None, "hpc-admin"]


def test_no_credentials_is_one_sentence(capsys, no_aws_credentials):
    from commands import deploy

    assert deploy.main(["--region", "us-east-1"]) == 1
    assert capsys.readouterr().err.startswith("error: no AWS credentials found")


def test_a_context_pair_without_a_value_is_refused(capsys):
    from commands import deploy

    with pytest.raises(SystemExit) as exit_:
        deploy.main(["-c", "cluster_config"])
    assert exit_.value.code == 2
    assert "-c takes KEY=VALUE, got 'cluster_config'" in capsys.readouterr().err


def test_a_state_file_from_another_region_is_not_resumed_here(account, base, tmp_path, monkeypatch):
    world = World(tmp_path, base, base)
    world.state.update(cluster=CLUSTER, region="eu-west-1", phase="deploying", started="2026-11-23T10:00:00+00:00")
    with pytest.raises(deploy_module.OpsError, match=r"state.json is from a deploy in eu-west-1: run there "
                                                     r"\(--region eu-west-1\) to finish it"):
        world.run(monkeypatch)
    assert world.deploys == [] and world.state.data["region"] == "eu-west-1"


def test_a_parallelcluster_venv_to_install_is_one_line_not_a_trace(capsys, monkeypatch):
    """hpc-deploy and hpc-pr-report read update policies from a version's venv; a missing one is said in one line."""
    from cluster_yaml.sidecar import WorkerError
    from commands import deploy, pr_report

    def missing(*args, **kwargs):
        raise WorkerError("ParallelCluster 3.15.1's own package, in .venv-pcluster-3.15.1, is not installed: run "
                          "`make pcluster-venv PCLUSTER_VERSION=3.15.1`")

    monkeypatch.setattr(deploy, "connect", lambda *args: None)
    monkeypatch.setattr(deploy.Deployer, "run", missing)
    monkeypatch.setattr(pr_report, "build_report", missing)
    assert deploy.main(["--region", "us-east-1"]) == 1
    assert pr_report.main(["--base", "a", "--head", "b"]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["error: ParallelCluster 3.15.1's own package, in .venv-pcluster-3.15.1, is not installed: run "
                     "`make pcluster-venv PCLUSTER_VERSION=3.15.1`"] * 2
