"""What users rely on in the synthesized ClusterStack."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from aws_cdk import App
from aws_cdk.assertions import Template

from cluster_yaml import NODE_ACTIONS_DIR
from cluster_yaml.node_actions import script_digest
from settings.context import REPO_ROOT, shipped_context
from settings.errors import ConfigError, ConfigErrors
from stacks.app_builder import synthesize
from tests.conftest import Synthesized, synth

GPU = {"cluster_config": "gpu-p5", "CAPACITY_RESERVATION_ID": "cr-0123456789abcdef0"}


@pytest.fixture(scope="module")
def cluster(default_app: Synthesized) -> Template:
    return default_app.template("ClusterStack")


def cluster_resource(template: Template) -> dict[str, Any]:
    [resource] = template.find_resources("Custom::PclusterCluster").values()
    return resource


def test_official_provider_is_a_nested_stack_pinned_to_the_context_version(cluster: Template):
    [provider] = cluster.find_resources("AWS::CloudFormation::Stack").values()
    url = provider["Properties"]["TemplateURL"]["Fn::Sub"]
    version = shipped_context()["parallelcluster_version"]
    assert url == ("https://${AWS::Region}-aws-parallelcluster.s3.${AWS::Region}.${AWS::URLSuffix}"
                   f"/parallelcluster/{version}/templates/custom_resource/cluster.yaml")
    service_token = cluster_resource(cluster)["Properties"]["ServiceToken"]
    assert service_token["Fn::GetAtt"][1] == "Outputs.ServiceToken"


def test_each_supported_version_has_a_lock_pinning_that_version_and_the_shipped_one_is_supported():
    from settings.cluster import supported_parallelcluster_versions

    versions = supported_parallelcluster_versions()
    assert {"3.15.1", "3.16.1"} <= set(versions) and shipped_context()["parallelcluster_version"] in versions
    for version in versions:
        lock = (REPO_ROOT / f"requirements-pcluster-{version}.txt").read_text()
        assert re.search(r"^aws-parallelcluster==(\S+)$", lock, re.M).group(1) == version


def test_cluster_is_deleted_with_the_stack_and_named_apart_from_it(cluster: Template):
    resource = cluster_resource(cluster)
    assert resource["DeletionPolicy"] == "Delete" and resource["UpdateReplacePolicy"] == "Delete"
    props = resource["Properties"]
    assert props["ClusterName"] == "hpc-cluster" and props["ClusterName"] not in ("ClusterStack", "PrereqStack")
    assert props["DeletionPolicy"] == "Delete"


def test_custom_resource_has_only_the_properties_the_provider_passes_on(cluster: Template):
    # The provider turns every other property into a pcluster.lib argument (tests/test_provider_contract.py).
    assert set(cluster_resource(cluster)["Properties"]) == {"ServiceToken", "ClusterName", "DeletionPolicy",
                                                             "ClusterConfiguration"}


def scalars(value: Any):
    if isinstance(value, dict) and not any(k.startswith("Fn::") or k == "Ref" for k in value):
        for item in value.values():
            yield from scalars(item)
    elif isinstance(value, list):
        for item in value:
            yield from scalars(item)
    else:
        yield value


def test_every_config_scalar_is_the_string_the_provider_receives(cluster: Template):
    config = cluster_resource(cluster)["Properties"]["ClusterConfiguration"]
    values = list(scalars(config))
    assert all(isinstance(v, (str, dict)) for v in values), [v for v in values if not isinstance(v, (str, dict))]
    queue = config["Scheduling"]["SlurmQueues"][0]
    assert queue["ComputeResources"][0]["MinCount"] == "3"
    assert queue["ComputeResources"][0]["Efa"]["Enabled"] == "true"
    assert queue["Networking"]["PlacementGroup"]["Enabled"] == "true"


def test_prereq_values_flow_into_the_config(cluster: Template):
    config = cluster_resource(cluster)["Properties"]["ClusterConfiguration"]
    subnet = config["HeadNode"]["Networking"]["SubnetId"]
    assert subnet["Fn::GetStackOutput"]["StackName"] == "PrereqStack"
    assert "PublicSubnet" in subnet["Fn::GetStackOutput"]["OutputName"]
    volume = config["SharedStorage"][0]["FsxOpenZfsSettings"]["VolumeId"]
    assert "RootVolumeId" in volume["Fn::GetStackOutput"]["OutputName"]


def test_node_actions_are_shipped_from_this_repo_to_a_bucket_of_the_stack(cluster: Template):
    config = cluster_resource(cluster)["Properties"]["ClusterConfiguration"]
    [(bucket_id, _)] = cluster.find_resources("AWS::S3::Bucket").items()
    head = config["HeadNode"]["CustomActions"]
    configured = head["OnNodeConfigured"]["Sequence"][0]["Script"]
    updated = head["OnNodeUpdated"]["Sequence"][0]["Script"]
    queue = config["Scheduling"]["SlurmQueues"][0]["CustomActions"]["OnNodeConfigured"]["Sequence"][0]["Script"]
    digest = script_digest(NODE_ACTIONS_DIR / "enable_pyxis.sh")
    assert configured == {"Fn::Join": ["", ["s3://", {"Ref": bucket_id}, "/stable/enable_pyxis.sh"]]}
    for pinned in (updated, queue):
        assert pinned == {"Fn::Join": ["", ["s3://", {"Ref": bucket_id}, f"/{digest}/enable_pyxis.sh"]]}
    assert config["HeadNode"]["Iam"]["S3Access"] == [{"BucketName": {"Ref": bucket_id}}]
    assert "http" not in str(config) and "cdk-hnb659fds" not in str(config)


def test_each_script_is_written_with_its_content_at_both_keys(cluster: Template):
    writes = {}
    for resource in cluster.find_resources("Custom::AWS").values():
        create = json.loads(json.dumps(resource["Properties"]["Create"]))
        text = create if isinstance(create, str) else json.dumps(create)
        writes.update({key: text for key in re.findall(r'\\?"Key\\?":\\?"([^"\\]+)', text)})
    digest = script_digest(NODE_ACTIONS_DIR / "enable_pyxis.sh")
    assert {"stable/enable_pyxis.sh", f"{digest}/enable_pyxis.sh"} <= set(writes)
    assert "enable_pyxis: $*" in writes["stable/enable_pyxis.sh"]  # the script's own text
    [bucket] = cluster.find_resources("AWS::S3::Bucket").values()
    assert bucket["DeletionPolicy"] == "Delete"  # only copies of this repo's scripts


def test_outputs_give_the_head_node_and_an_ssm_command(cluster: Template):
    outputs = cluster.to_json()["Outputs"]
    [cluster_id] = cluster.find_resources("Custom::PclusterCluster")
    assert outputs["HeadNodeInstanceId"]["Value"] == {"Fn::GetAtt": [cluster_id, "headNode.instanceId"]}
    assert outputs["HeadNodePrivateIp"]["Value"] == {"Fn::GetAtt": [cluster_id, "headNode.privateIpAddress"]}
    assert outputs["ValidationMessages"]["Value"] == {"Fn::GetAtt": [cluster_id, "validationMessages"]}
    assert outputs["SsmSessionCommand"]["Value"]["Fn::Join"][1][0] == "aws ssm start-session --region us-east-1 --target "


def test_cluster_stack_is_deployed_after_and_destroyed_before_prereq_stack(default_app: Synthesized):
    assert default_app.stacks["PrereqStack"] in default_app.stacks["ClusterStack"].dependencies


def test_cluster_config_and_name_come_from_context():
    app = synth(cluster_name="training-1", **GPU)
    props = cluster_resource(app.template("ClusterStack"))["Properties"]
    assert props["ClusterName"] == "training-1"
    resource = props["ClusterConfiguration"]["Scheduling"]["SlurmQueues"][0]["ComputeResources"][0]
    assert resource["InstanceType"] == "p5.48xlarge"
    assert resource["CapacityReservationTarget"] == {"CapacityReservationId": "cr-0123456789abcdef0"}


def build_error(**context: Any) -> str:
    with pytest.raises((ConfigError, ConfigErrors)) as info:
        synthesize(App(context={**shipped_context(), **context}))
    return str(info.value)


def test_unknown_cluster_config_lists_the_shipped_ones():
    message = build_error(cluster_config="vanila")
    assert "context 'cluster_config' = 'vanila': names no file in cluster_configs/" in message
    assert "gpu-p5, multi-queue, vanilla" in message


@pytest.mark.parametrize("name,problem", [
    ("ClusterStack", "equals a stack name of this app"),
    ("1cluster", "is not a valid ParallelCluster cluster name"),
    ("my_cluster", "is not a valid ParallelCluster cluster name"),
    ("c" * 61, "is not a valid ParallelCluster cluster name"),
])
def test_bad_cluster_name(name: str, problem: str):
    assert problem in build_error(cluster_name=name)


def test_provider_version_must_be_3_6_or_later():
    assert "is not a ParallelCluster 3.6+ release" in build_error(parallelcluster_version="3.5.1")


def test_a_version_without_a_lock_is_refused_with_the_supported_ones():
    message = build_error(parallelcluster_version="3.14.0")
    assert "context 'parallelcluster_version' = '3.14.0': is not a version this app validates offline (supported: " \
           "3.15.1, 3.16.1)" in message and "add requirements-pcluster-<version>.txt" in message


def test_two_versions_side_by_side_each_cluster_validated_by_its_own_package():
    """The same config under 3.15.1 and 3.16.1: each version's provider, and each version's own package answers (a
    mismatch between the answering package and the context is a synth error)."""
    from cluster_yaml.sidecar import ask_once, pcluster_python
    from tests.conftest import synth

    for version in ("3.15.1", "3.16.1"):
        app = synth(parallelcluster_version=version)
        provider = next(r for r in app.template("ClusterStack").to_json()["Resources"].values()
                        if r["Type"] == "AWS::CloudFormation::Stack")
        assert f"/parallelcluster/{version}/templates/" in provider["Properties"]["TemplateURL"]["Fn::Sub"]
        assert ask_once({"configs": []}, "us-east-1", python=pcluster_python(version))["version"] == version


def test_a_version_whose_venv_is_not_installed_is_a_synth_error_naming_the_make_target(monkeypatch, tmp_path):
    from cluster_yaml import sidecar, validation

    monkeypatch.setattr(sidecar, "CACHE_DIR", tmp_path)  # nothing cached: the worker must start
    monkeypatch.setattr(validation, "CACHE_DIR", tmp_path)
    monkeypatch.setattr(validation, "pcluster_python", lambda version: tmp_path / f".venv-pcluster-{version}/bin/python")
    message = build_error(parallelcluster_version="3.15.1")
    assert "context 'parallelcluster_version' = '3.15.1': is validated by ParallelCluster 3.15.1's own package, in " \
           ".venv-pcluster-3.15.1, which is not installed" in message
    assert "make pcluster-venv PCLUSTER_VERSION=3.15.1" in message and "Traceback" not in message


@pytest.mark.parametrize("key,value,problem", [
    ("job_bridge_prefix", "/jobs", "is not an S3 key prefix ending in '/'"),
    ("job_bridge_prefix", "jobs", "is not an S3 key prefix ending in '/'"),
])
def test_bad_job_bridge_settings(key: str, value: str, problem: str):
    message = build_error(job_bridge=True, **{key: value})
    assert f"context '{key}' = {value!r}: {problem}" in message


def test_the_node_actions_bucket_says_truly_which_keys_are_overwritten(default_app: Synthesized):
    [bucket] = [r for logical, r in default_app.template("ClusterStack").find_resources("AWS::S3::Bucket").items()
                if logical.startswith("NodeActionsBucket")]
    reasons = {r["id"]: r["reason"] for r in bucket["Metadata"]["cdk_nag"]["rules_to_suppress"]}
    reason = reasons["NIST.800.53.R5-S3BucketVersioningEnabled"]
    assert "stable/ keys" in reason and "overwritten by each deploy" in reason
