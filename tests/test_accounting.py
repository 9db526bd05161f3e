"""Slurm accounting (opt-in): Aurora MySQL Serverless v2 in PrereqStack, wired into the cluster config."""

from __future__ import annotations

import importlib.util
import json
import py_compile
from pathlib import Path

import pytest
from aws_cdk import App

from hpc_constructs.accounting_database import USER_FUNCTION
from settings.context import shipped_context
from settings.errors import ConfigError, ConfigErrors
from stacks.app_builder import synthesize
from tests.conftest import Synthesized, synth
from tests.kept_template_validation import validated_app

ON = {"slurm_accounting": True, "secondary_availability_zone": "us-east-1b"}


@pytest.fixture(scope="module")
def accounting() -> Synthesized:
    return synth(**ON)


def test_off_by_default(default_app: Synthesized):
    default_app.template("PrereqStack").resource_count_is("AWS::RDS::DBCluster", 0)
    [cluster] = default_app.template("ClusterStack").find_resources("Custom::PclusterCluster").values()
    assert "Database" not in cluster["Properties"]["ClusterConfiguration"]["Scheduling"]["SlurmSettings"]


def test_needs_a_second_zone_for_the_subnet_group():
    with pytest.raises((ConfigError, ConfigErrors)) as info:
        synthesize(App(context={**shipped_context(), "slurm_accounting": True}))
    assert "secondary_availability_zone" in str(info.value) and "required by slurm_accounting=true" in str(info.value)


def test_encrypted_serverless_v2_kept_as_a_snapshot(accounting: Synthesized):
    template = accounting.template("PrereqStack")
    [(_, db)] = template.find_resources("AWS::RDS::DBCluster").items()
    props = db["Properties"]
    assert props["Engine"] == "aurora-mysql" and props["StorageEncrypted"] is True
    assert props["ServerlessV2ScalingConfiguration"] == {"MinCapacity": 0.5, "MaxCapacity": 4}
    # Kept as a final snapshot: deletion protection would make RDS refuse the deletion that takes it.
    assert props["DeletionProtection"] is False
    assert db["DeletionPolicy"] == "Snapshot" and db["UpdateReplacePolicy"] == "Snapshot"
    template.has_resource_properties("AWS::RDS::DBInstance", {"DBInstanceClass": "db.serverless"})
    [subnet_group] = template.find_resources("AWS::RDS::DBSubnetGroup").values()
    assert len(subnet_group["Properties"]["SubnetIds"]) == 2


def test_passwords_are_secrets_and_never_template_text(accounting: Synthesized):
    template = accounting.template("PrereqStack")
    secrets = template.find_resources("AWS::SecretsManager::Secret")
    [(user_id, user_secret)] = [(k, s) for k, s in secrets.items() if "slurmdbd" in s["Properties"]["Description"]]
    assert "SecretStringTemplate" not in user_secret["Properties"]["GenerateSecretString"]  # the plain password
    [(admin_id, admin_secret)] = [(k, s) for k, s in secrets.items() if k != user_id]
    assert json.loads(admin_secret["Properties"]["GenerateSecretString"]["SecretStringTemplate"]) == {
        "username": "admin_slurm"}
    assert all(s["DeletionPolicy"] == "Retain" for s in secrets.values())
    [db] = template.find_resources("AWS::RDS::DBCluster").values()
    password = json.dumps(db["Properties"]["MasterUserPassword"])
    assert "{{resolve:secretsmanager:" in password and admin_id in password
    assert db["Properties"]["EnableHttpEndpoint"] is True  # the Data API, for the user function


def test_slurmdbd_gets_its_own_user_created_by_the_stack(accounting: Synthesized):
    template = accounting.template("PrereqStack")
    [user] = template.find_resources("Custom::SlurmdbdUser").values()
    props = user["Properties"]
    assert (props["UserName"], props["DatabaseName"]) == ("slurm", "slurm_acct_db")
    assert "Password" not in json.dumps({k: v for k, v in props.items() if k != "UserSecretArn"})
    [function] = [f for f in template.find_resources("AWS::Lambda::Function").values()
                  if "slurmdbd" in f["Properties"].get("Description", "")]
    assert function["Properties"]["Runtime"].startswith("python3.")
    [policy] = [p for p in template.find_resources("AWS::IAM::ManagedPolicy").values()
                if "rds-data:ExecuteStatement" in json.dumps(p)]
    actions = {s["Action"] for s in policy["Properties"]["PolicyDocument"]["Statement"] if isinstance(s["Action"], str)}
    assert {"rds-data:ExecuteStatement", "secretsmanager:GetSecretValue"} <= actions


def test_only_the_cluster_security_group_reaches_mysql(accounting: Synthesized):
    template = accounting.template("PrereqStack")
    [(sg_id, _)] = template.find_resources("AWS::EC2::SecurityGroup", {"Properties": {
        "GroupDescription": "Slurm accounting database: MySQL from cluster nodes"}}).items()
    rules = [r["Properties"] for r in template.find_resources("AWS::EC2::SecurityGroupIngress").values()
             if r["Properties"]["GroupId"] == {"Fn::GetAtt": [sg_id, "GroupId"]}]
    assert len(rules) == 1 and (rules[0]["FromPort"], rules[0]["ToPort"]) == (3306, 3306)
    assert rules[0]["SourceSecurityGroupId"]["Fn::GetAtt"][0].startswith("SecurityGroupsCluster")


def test_cluster_config_gets_the_database_settings(accounting: Synthesized):
    [cluster] = accounting.template("ClusterStack").find_resources("Custom::PclusterCluster").values()
    database = cluster["Properties"]["ClusterConfiguration"]["Scheduling"]["SlurmSettings"]["Database"]
    assert database["UserName"] == "slurm" and database["DatabaseName"] == "slurm_acct_db"
    assert database["Uri"]["Fn::Join"][1][1] == ":3306"
    assert "Password" in database["PasswordSecretArn"]["Fn::GetStackOutput"]["OutputName"]
    outputs = accounting.template("PrereqStack").to_json()["Outputs"]
    assert {"AccountingDatabaseUri", "AccountingDatabaseUser", "AccountingDatabaseSecretArn"} <= set(outputs)


def test_cluster_name_limit_with_accounting():
    with pytest.raises((ConfigError, ConfigErrors)) as info:
        synthesize(App(context={**shipped_context(), **ON, "cluster_name": "c" * 45}))
    message = str(info.value)
    assert message.startswith("cdk.json or -c: context 'cluster_name' = 'ccccccccccccccccccccccccccccccccccccccccccccc': ")
    assert "ParallelCluster ClusterNameValidator" in message and "when using Slurm accounting it can't be longer " \
        "than 40 characters" in message


def test_throwaway_environment_deletes_the_database():
    [db] = synth(**ON, destroy_data_on_delete=True).template("PrereqStack").find_resources(
        "AWS::RDS::DBCluster").values()
    assert db["DeletionPolicy"] == "Delete" and db["Properties"]["DeletionProtection"] is False


def test_slurmdbd_waits_for_locks_as_parallelclusters_own_database_template(accounting: Synthesized):
    template = accounting.template("PrereqStack")
    [(logical, group)] = template.find_resources("AWS::RDS::DBClusterParameterGroup").items()
    assert group["Properties"]["Parameters"] == {"innodb_lock_wait_timeout": "900"}
    [db] = template.find_resources("AWS::RDS::DBCluster").values()
    assert db["Properties"]["DBClusterParameterGroupName"] == {"Ref": logical}


def test_the_function_ships_its_source_only_even_beside_compiled_copies():
    # Any local import of index.py (its own tests do) leaves __pycache__ beside it; shipping that would change the
    # asset's hash, so `cdk diff` would show the function edited and deploy it again.
    source = USER_FUNCTION / "index.py"
    py_compile.compile(str(source), cfile=importlib.util.cache_from_source(str(source)), doraise=True)
    synthesis = synthesize(validated_app({**shipped_context(), **ON}))
    [function] = [f for f in synthesis.template("PrereqStack")["Resources"].values()
                  if f["Type"] == "AWS::Lambda::Function" and "slurmdbd" in f["Properties"].get("Description", "")]
    asset = function["Properties"]["Code"]["S3Key"].removesuffix(".zip")
    staged = Path(synthesis.assembly.directory) / f"asset.{asset}"
    assert sorted(path.name for path in staged.iterdir()) == ["index.py"]
