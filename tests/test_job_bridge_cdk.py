"""Job bridge wiring in ClusterStack, its cluster-config changes, and the client's clear errors."""

from __future__ import annotations

import fnmatch
import io
import json
import re
from typing import Any
from pathlib import Path

import boto3
import pytest
from aws_cdk.assertions import Match

from job_bridge.client import JobBridgeError, JobStore
from tests.conftest import BRIDGE, Synthesized, synth


@pytest.fixture(scope="module")
def bridged() -> Synthesized:
    return synth(**BRIDGE)


def cluster_config(app: Synthesized) -> dict:
    [resource] = app.template("ClusterStack").find_resources("Custom::PclusterCluster").values()
    return resource["Properties"]["ClusterConfiguration"]


def test_off_by_default(default_app: Synthesized):
    default_app.template("ClusterStack").resource_count_is("AWS::Events::Rule", 0)
    assert "CustomSlurmSettings" not in cluster_config(default_app)["Scheduling"]["SlurmSettings"]


def test_rule_matches_state_file_uploads_in_the_data_bucket(bridged: Synthesized):
    [rule] = bridged.template("ClusterStack").find_resources("AWS::Events::Rule").values()
    pattern = rule["Properties"]["EventPattern"]
    assert pattern["source"] == ["aws.s3"] and pattern["detail-type"] == ["Object Created"]
    assert "DataBucket" in json.dumps(pattern["detail"]["bucket"]["name"])
    assert pattern["detail"]["object"]["key"] == [{"wildcard": "jobs/*/job-aws-stat.txt"}]


def test_target_is_a_fixed_command_on_the_head_node_given_only_the_key(bridged: Synthesized):
    template = bridged.template("ClusterStack")
    [rule] = template.find_resources("AWS::Events::Rule").values()
    [target] = rule["Properties"]["Targets"]
    [(document_id, document)] = [(k, d) for k, d in template.find_resources("AWS::SSM::Document").items()
                                 if "submit" in json.dumps(d)]
    assert {"Ref": document_id} in target["Arn"]["Fn::Join"][1]  # our document, not AWS-RunShellScript
    assert "AWS-RunShellScript" not in json.dumps(template.to_json())
    [instance_target] = target["RunCommandParameters"]["RunCommandTargets"]
    assert instance_target["Key"] == "InstanceIds"
    assert instance_target["Values"][0]["Fn::GetAtt"][1] == "headNode.instanceId"
    assert target["InputTransformer"] == {"InputPathsMap": {"key": "$.detail.object.key"},
                                          "InputTemplate": '{"Key": [<key>]}'}
    content = document["Properties"]["Content"]
    assert content["mainSteps"][0]["inputs"]["runCommand"] == ["/opt/job-bridge/job_bridge.sh submit --key '{{Key}}'"]
    pattern = re.compile(content["parameters"]["Key"]["allowedPattern"])
    assert pattern.match("jobs/onprem-submitter/job0001/job-aws-stat.txt")
    for key in ("jobs/onprem-submitter/a b/job-aws-stat.txt", "jobs/onprem-submitter/team/x/job-aws-stat.txt",
                "jobs/onprem-submitter/x/job-aws-stat.txt'; reboot #", "other/onprem-submitter/x/job-aws-stat.txt",
                "jobs/job0001/job-aws-stat.txt", "jobs/someone-else/job0001/job-aws-stat.txt"):
        assert not pattern.match(key), key


def test_eventbridge_may_send_that_document_and_nothing_else(bridged: Synthesized):
    template = bridged.template("ClusterStack")
    roles = {k: r for k, r in template.find_resources("AWS::IAM::Role").items()
             if r["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
                 "Service": "events.amazonaws.com"}}
    [(role_id, role)] = roles.items()
    [trust] = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert set(trust["Condition"]) == {"StringEquals", "ArnEquals"}
    assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    assert "rule/hpc-cluster-job-bridge" in json.dumps(trust["Condition"]["ArnEquals"]["aws:SourceArn"])
    policies = [p for kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")
                for p in template.find_resources(kind).values() if p["Properties"].get("Roles") == [{"Ref": role_id}]]
    [policy] = policies  # one policy, of one statement
    [statement] = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Action"] == "ssm:SendCommand"
    resources = json.dumps(statement["Resource"])
    assert ":document/" in resources and "instance/" in resources and '"*"' not in resources


def test_only_named_roles_and_the_clusters_nodes_may_write_jobs(bridged: Synthesized):
    [policy] = [p for p in bridged.template("PrereqStack").find_resources("AWS::S3::BucketPolicy").values()
                if p["Properties"]["Bucket"]["Ref"].startswith("DataBucketBD")]
    [deny] = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s.get("Sid") == "JobBridgeWritersOnly"]
    assert deny["Effect"] == "Deny" and deny["Principal"] == {"AWS": "*"} and deny["Action"] == "s3:PutObject"
    assert deny["Resource"]["Fn::Join"][1][-1] == "/jobs/*"
    allowed = deny["Condition"]["ArnNotLike"]["aws:PrincipalArn"]
    assert allowed[0] == "arn:aws:iam::123456789012:role/onprem-submitter"
    assert "role/parallelcluster/hpc-cluster/*" in json.dumps(allowed[1])


def test_the_bridge_needs_its_submitters_each_a_role_of_its_own():
    from tests.test_cluster_stack import build_error

    assert "context 'job_bridge_submitters' = []: is empty" in build_error(job_bridge=True)
    wildcard = build_error(job_bridge=True, job_bridge_submitters=["arn:aws:iam::123456789012:role/team/*"])
    assert "does not name one role" in wildcard and "without wildcards" in wildcard
    same_name = build_error(job_bridge=True, job_bridge_submitters=[
        "arn:aws:iam::111122223333:role/submitter", "arn:aws:iam::444455556666:role/submitter"])
    assert "would share the name 'submitter'" in same_name
    # The one shared job user (by default the OS user, a sudoer) is gone, with a message saying why.
    removed = build_error(**BRIDGE, job_bridge_user="ubuntu")
    assert "context 'job_bridge_user'" in removed and "is no longer used" in removed and "jb-<role name>" in removed


def test_each_submitter_has_its_own_linux_user_with_a_uid_every_node_derives_alike():
    from job_bridge.submitters import FIRST_UID, UID_COUNT, submitter, submitters

    one = submitter("arn:aws:iam::123456789012:role/path/OnPrem.Submitter@lab")
    assert one.name == "OnPrem.Submitter@lab" and one.user == "jb-onprem-submitter-lab"
    assert FIRST_UID <= one.uid < FIRST_UID + UID_COUNT and one.spec == f"OnPrem.Submitter@lab:jb-onprem-submitter-lab:{one.uid}"
    assert submitter(one.role_arn) == one  # no state: the same role gives the same uid on every node and every synth
    found, problems = submitters(["arn:aws:iam::1:role/x", "arn:aws:iam::123456789012:role/" + "a" * 40])
    assert len(found) == 1 and "not an IAM role ARN" in problems[0]
    [long] = submitters(["arn:aws:iam::123456789012:role/" + "a" * 40])[0]
    assert len(long.user) == 32


def test_cluster_config_gets_list_and_write_access_and_the_epilog(bridged: Synthesized):
    config = cluster_config(bridged)
    assert config["Scheduling"]["SlurmSettings"]["CustomSlurmSettings"] == [
        {"EpilogSlurmctld": "/opt/job-bridge/epilog"}]
    write = [a for a in config["HeadNode"]["Iam"]["S3Access"] if a.get("KeyName") == "jobs/*"]
    assert write and write[0]["EnableWriteAccess"] == "true"
    policies = [p["Policy"] for p in config["HeadNode"]["Iam"]["AdditionalIamPolicies"]]
    [list_policy] = [p for p in policies if isinstance(p, dict)]
    [(policy_id, policy)] = bridged.template("ClusterStack").find_resources(
        "AWS::IAM::ManagedPolicy", {"Properties": {"Description": Match.string_like_regexp("job prefix")}}).items()
    assert list_policy == {"Ref": policy_id}
    [statement] = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Action"] == "s3:ListBucket" and statement["Condition"] == {"StringLike": {"s3:prefix": ["jobs/*"]}}
    assert policy["Properties"]["ManagedPolicyName"]["Fn::Join"][1][0] == "parallelcluster-hpc-cluster-"


def test_installed_by_an_ssm_association_not_a_node_action(bridged: Synthesized):
    """A head node's OnNodeConfigured cannot change on update: the bridge is installed beside it, so turning it
    on, off, or editing job_bridge.sh is an in-place update (tests/test_update_preview.py)."""
    config = cluster_config(bridged)
    assert "job_bridge" not in json.dumps(config["HeadNode"].get("CustomActions", {}))
    [association] = bridged.template("ClusterStack").find_resources("AWS::SSM::Association").values()
    props = association["Properties"]
    assert props["WaitForSuccessTimeoutSeconds"] == 600
    assert props["Targets"][0]["Values"][0]["Fn::GetAtt"][1] == "headNode.instanceId"
    assert re.fullmatch(r"[0-9a-f]{16}/job_bridge\.sh", props["Parameters"]["ScriptKey"][0])
    assert re.fullmatch(r"[0-9a-f]{16}/job_users\.sh", props["Parameters"]["UsersScriptKey"][0])
    [spec] = props["Parameters"]["Submitters"]
    assert props["Parameters"]["Prefix"] == ["jobs/"] and re.fullmatch(r"onprem-submitter:jb-onprem-submitter:4\d{4}", spec)
    [document] = [d for d in bridged.template("ClusterStack").find_resources("AWS::SSM::Document").values()
                  if "install" in json.dumps(d)]
    content = document["Properties"]["Content"]
    assert all("allowedPattern" in p for p in content["parameters"].values())
    assert re.fullmatch(content["parameters"]["Submitters"]["allowedPattern"], spec)
    assert not re.fullmatch(content["parameters"]["Submitters"]["allowedPattern"], spec + ";reboot")
    commands = " ".join(content["mainSteps"][0]["inputs"]["runCommand"])
    assert "install '{{Bucket}}' '{{Prefix}}' '{{Submitters}}'" in commands
    assert commands.index("job_users.sh\" {{Submitters}}") < commands.index("install")  # users first


def test_every_queue_creates_the_job_users_first_and_login_pools_do_not(bridged: Synthesized):
    """Jobs run on compute nodes as the submitters' users: every queue creates them before anything else, in
    OnNodeStart, before the scheduler is configured (a queue's custom actions update with its QueueUpdateStrategy). A login pool's OnNodeConfigured cannot change on update,
    and jobs do not run there."""
    config = cluster_config(bridged)
    for queue in config["Scheduling"]["SlurmQueues"]:
        [first, *_] = queue["CustomActions"]["OnNodeStart"]["Sequence"]
        assert "/job_users.sh" in json.dumps(first["Script"]) and re.fullmatch(
            r"onprem-submitter:jb-onprem-submitter:4\d{4}", first["Args"][0])
    assert "job_users" not in json.dumps(config.get("LoginNodes", {}))
    assert "job_users" not in json.dumps(config["HeadNode"].get("CustomActions", {}))


def test_without_the_bridge_the_head_node_uninstalls_it_on_every_update(default_app: Synthesized,
                                                                         bridged: Synthesized):
    """What an earlier deploy with the bridge installed (sweep timer, sudoers rule, epilog wrapper) is removed by the
    update that turns it off: OnNodeUpdated runs live on the head node (tests/test_update_preview.py)."""
    off = cluster_config(default_app)["HeadNode"]["CustomActions"]["OnNodeUpdated"]["Sequence"]
    [uninstall] = [step for step in off if "job_bridge.sh" in json.dumps(step.get("Script"))]
    assert uninstall["Args"] == ["uninstall"]
    on = cluster_config(bridged)["HeadNode"]["CustomActions"]["OnNodeUpdated"]["Sequence"]
    assert not [step for step in on if step.get("Args") == ["uninstall"]]


def test_prefix_from_context():
    app = synth(**BRIDGE, job_bridge_prefix="onprem/batch/")
    [association] = app.template("ClusterStack").find_resources("AWS::SSM::Association").values()
    assert association["Properties"]["Parameters"]["Prefix"] == ["onprem/batch/"]
    write = [a for a in cluster_config(app)["HeadNode"]["Iam"]["S3Access"] if a.get("EnableWriteAccess")]
    assert write[0]["KeyName"] == "onprem/batch/*"


# -- client errors (moto) -------------------------------------------------------------------------
@pytest.fixture
def store(aws) -> JobStore:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="data-bucket")
    return JobStore(s3, "data-bucket", "jobs/")


def folder(tmp_path: Path, name: str = "job1") -> Path:
    path = tmp_path / name
    path.mkdir()
    (path / "job-aws-run.sh").write_text("#!/bin/bash\nhostname\n")
    (path / "data.bin").write_bytes(b"x" * 300_000)
    return path


def test_submit_uploads_everything_then_the_state_with_progress(store: JobStore, tmp_path: Path):
    progress = io.StringIO()
    assert store.submit(folder(tmp_path), stream=progress) == "job1"
    keys = [o["Key"] for o in store.s3.list_objects_v2(Bucket="data-bucket")["Contents"]]
    assert sorted(keys) == ["jobs/job1/data.bin", "jobs/job1/job-aws-run.sh", "jobs/job1/job-aws-stat.txt"]
    assert "100% 0.3/0.3 MB job1 (2 files)" in progress.getvalue()
    assert store.status("job1") == {"job": "job1", "state": "FILE_UPLOAD"}


def test_existing_prefix_is_refused(store: JobStore, tmp_path: Path):
    store.submit(folder(tmp_path), stream=io.StringIO())
    with pytest.raises(JobBridgeError, match="s3://data-bucket/jobs/job1/ already exists: choose another --name"):
        store.submit(tmp_path / "job1", stream=io.StringIO())


def test_missing_bucket(aws, tmp_path: Path):
    with pytest.raises(JobBridgeError, match="bucket nope does not exist"):
        JobStore(boto3.client("s3"), "nope").submit(folder(tmp_path), stream=io.StringIO())


def test_missing_job_script_and_bad_name(store: JobStore, tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(JobBridgeError, match="job-aws-run.sh is missing"):
        store.submit(empty)
    with pytest.raises(JobBridgeError, match="job name 'my job' is not allowed"):
        store.submit(folder(tmp_path), name="my job")


def test_status_shows_the_sbatch_error(store: JobStore):
    store.s3.put_object(Bucket="data-bucket", Key="jobs/j/job-aws-stat.txt", Body=b"JOB_ERROR\n")
    store.s3.put_object(Bucket="data-bucket", Key="jobs/j/job-aws-sbatch.out", Body=b"sbatch failed: bad\n")
    assert store.status("j") == {"job": "j", "state": "JOB_ERROR", "error": "sbatch failed: bad"}
    with pytest.raises(JobBridgeError, match="no job other under s3://data-bucket/jobs/"):
        store.status("other")


def test_client_without_credentials(capsys, no_aws_credentials):
    from commands import job_client

    assert job_client.main(["--region", "us-east-1", "--bucket", "b", "status", "j"]) == 1
    assert capsys.readouterr().err.startswith("error: no AWS credentials found")


@pytest.mark.parametrize("key", ["../escaped.txt", "sub/../../escaped.txt", "/etc/cron.d/x"])
def test_fetch_refuses_keys_that_leave_the_destination(store: JobStore, tmp_path: Path, key: str):
    store.s3.put_object(Bucket="data-bucket", Key="jobs/j/result.txt", Body=b"ok")
    store.s3.put_object(Bucket="data-bucket", Key=f"jobs/j/{key}", Body=b"evil")
    with pytest.raises(JobBridgeError, match="would be written outside"):
        store.fetch("j", tmp_path / "dest", stream=io.StringIO())
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "dest").exists()


def test_status_of_a_failed_job_gives_slurms_reason(store: JobStore):
    store.s3.put_object(Bucket="data-bucket", Key="jobs/j/job-aws-stat.txt", Body=b"JOB_FAILED\n")
    store.s3.put_object(Bucket="data-bucket", Key="jobs/j/job-aws-reason.txt",
                        Body=b"Slurm job 7: CANCELLED (reason: None)\n")
    assert store.status("j")["reason"] == "Slurm job 7: CANCELLED (reason: None)"


CROSS_ACCOUNT = ("arn:aws:iam::111122223333:role/onprem-hpc-submitter", "arn:aws:iam::444455556666:role/team/lab")


def data_bucket_statements(app: Synthesized) -> list[dict]:
    [policy] = [p for p in app.template("PrereqStack").find_resources("AWS::S3::BucketPolicy").values()
                if p["Properties"]["Bucket"]["Ref"].startswith("DataBucketBD")]
    return policy["Properties"]["PolicyDocument"]["Statement"]


def test_submitters_of_other_accounts_are_granted_their_own_folder_by_the_bucket():
    """A role of another account gets nothing from Deny statements: the bucket must allow it. Each submitter's
    account is the principal (never "*": S3 would call the policy public and Block Public Access refuse it),
    narrowed to its role; reading, writing and listing only under its own folder."""
    app = synth(job_bridge=True, job_bridge_submitters=list(CROSS_ACCOUNT))
    statements = {s.get("Sid"): s for s in data_bucket_statements(app)}
    for index, (role, account, folder) in enumerate(((CROSS_ACCOUNT[0], "111122223333", "onprem-hpc-submitter"),
                                                     (CROSS_ACCOUNT[1], "444455556666", "lab"))):
        write, listing = statements[f"JobBridgeSubmitter{index}ReadWrite"], statements[f"JobBridgeSubmitter{index}List"]
        for statement in (write, listing):
            assert statement["Effect"] == "Allow" and account in json.dumps(statement["Principal"])
            assert '"*"' not in json.dumps(statement["Principal"])
            assert statement["Condition"]["ArnLike"]["aws:PrincipalArn"] == role
        assert sorted(write["Action"]) == ["s3:GetObject", "s3:PutObject"]
        assert write["Resource"]["Fn::Join"][1][-1] == f"/jobs/{folder}/*"
        assert listing["Action"] == "s3:ListBucket"
        assert listing["Condition"]["StringLike"]["s3:prefix"] == [f"jobs/{folder}/*"]
    allows = [s for s in statements.values() if s["Effect"] == "Allow"]
    assert all(s.get("Principal") not in ("*", {"AWS": "*"}) for s in allows)


def _denied(statements: list[dict], principal: str, action: str, key: str) -> bool:
    """Whether an explicit Deny of the bucket policy matches (S3 evaluates Deny first; no Allow overrides it). Only
    the condition operators these statements use are modelled: ArnLike / ArnNotLike on aws:PrincipalArn."""
    def matches(pattern: Any, value: str) -> bool:
        return isinstance(pattern, str) and fnmatch.fnmatchcase(value, pattern)

    for statement in statements:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        suffixes = [r["Fn::Join"][1][-1] for r in resources if isinstance(r, dict) and "Fn::Join" in r]
        if statement["Effect"] != "Deny" or action not in actions or not any(
                fnmatch.fnmatchcase("/" + key, suffix) for suffix in suffixes):
            continue
        conditions = statement.get("Condition", {})
        like = conditions.get("ArnLike", {}).get("aws:PrincipalArn")
        not_like = conditions.get("ArnNotLike", {}).get("aws:PrincipalArn")
        likes = like if isinstance(like, list) else [like] if like else []
        not_likes = not_like if isinstance(not_like, list) else [not_like] if not_like else []
        if likes and not any(matches(p, principal) for p in likes):
            continue
        if not_likes and any(matches(p, principal) for p in not_likes):
            continue
        return True
    return False


def test_a_submitter_neither_reads_nor_writes_another_submitters_folder():
    app = synth(job_bridge=True, job_bridge_submitters=list(CROSS_ACCOUNT))
    statements = data_bucket_statements(app)
    alice, bob = CROSS_ACCOUNT
    for action in ("s3:GetObject", "s3:PutObject"):
        assert not _denied(statements, alice, action, "jobs/onprem-hpc-submitter/job1/job-aws-run.sh")
        assert _denied(statements, alice, action, "jobs/lab/job1/job-aws-run.sh"), action
        assert _denied(statements, bob, action, "jobs/onprem-hpc-submitter/job1/result.txt"), action
        assert not _denied(statements, bob, action, "jobs/lab/job1/result.txt")
    # The cluster's nodes (the head node's bridge) and the account's administrators are not submitters.
    head_node = "arn:aws:iam::123456789012:role/parallelcluster/hpc-cluster/hpc-cluster-RoleHeadNode-X"
    assert not _denied(statements, head_node, "s3:GetObject", "jobs/lab/job1/result.txt")
    assert not _denied(statements, "arn:aws:iam::123456789012:role/Admin", "s3:GetObject", "jobs/lab/job1/result.txt")


def test_the_client_asks_s3_only_under_the_job_prefix(store: JobStore, tmp_path: Path):
    """What a submitter's role is granted (objects and listing under jobs/) is all the client needs: no HeadBucket,
    which would need s3:ListBucket on the whole bucket."""
    calls: list[tuple[str, dict]] = []
    store.s3.meta.events.register("before-parameter-build.s3.*",
                                  lambda params, model, **_: calls.append((model.name, dict(params))))
    store.submit(folder(tmp_path), stream=io.StringIO())
    store.status("job1")
    store.fetch("job1", tmp_path / "back", stream=io.StringIO())
    operations = {name for name, _ in calls}
    assert "HeadBucket" not in operations and {"ListObjectsV2", "PutObject", "GetObject"} <= operations
    for name, params in calls:
        if name == "ListObjectsV2":
            assert params["Prefix"].startswith("jobs/"), params
        elif "Key" in params:
            assert params["Key"].startswith("jobs/"), params


def test_the_client_uses_the_folder_of_its_callers_role(aws):
    from job_bridge.client import submitter_prefix

    sts = boto3.client("sts")
    credentials = sts.assume_role(RoleArn="arn:aws:iam::123456789012:role/team/onprem-submitter",
                                  RoleSessionName="laptop")["Credentials"]
    as_role = boto3.client("sts", aws_access_key_id=credentials["AccessKeyId"],
                           aws_secret_access_key=credentials["SecretAccessKey"], aws_session_token=credentials["SessionToken"])
    assert submitter_prefix("jobs/", as_role) == "jobs/onprem-submitter/"
    assert submitter_prefix("jobs/", sts, "other-role") == "jobs/other-role/"  # --submitter
    with pytest.raises(JobBridgeError, match="not an IAM role: the job bridge takes jobs from the roles"):
        submitter_prefix("jobs/", sts)  # moto's default caller is an IAM user
    with pytest.raises(JobBridgeError, match="is not an IAM role name"):
        submitter_prefix("jobs/", sts, "../x")
