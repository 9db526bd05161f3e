"""Preflight of hpc-deploy, on the synthesized templates of the shipped configs: moto answers for
CloudFormation, SSM and EC2's instance-type offerings; capacity reservations and Service Quotas, which moto
does not emulate, are stubbed with botocore's Stubber (responses validated against the real API models)."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timezone
from typing import Any

import boto3
from botocore.stub import Stubber

from ops.cluster import Session
from ops.preflight import Preflight, Target
from tests.conftest import synth

REGION = "us-east-1"
CAPACITY = {"CAPACITY_RESERVATION_ID": "cr-0123456789abcdef0"}


def target(config: str = "vanilla", **context: Any) -> Target:
    app = synth(cluster_config=config, **context)
    return Target({name: app.synthesis.template(name) for name in ("PrereqStack", "ClusterStack")})


class Clients(Session):
    """A session whose clients may be swapped for stubbed ones, service by service."""

    def __init__(self, region: str = REGION, **clients: Any) -> None:
        super().__init__(region, boto3.Session(region_name=region))
        self.clients = clients

    def client(self, service: str) -> Any:
        return self.clients.get(service.replace("-", "_")) or super().client(service)


def by_check(findings, check: str) -> list:
    return [f for f in findings if f.check == check]


def bootstrapped(version: str = "21") -> None:
    boto3.client("ssm").put_parameter(Name="/cdk-bootstrap/hnb659fds/version", Value=version, Type="String")


# -- bootstrap and region --------------------------------------------------------------------------------
def test_an_account_without_cdk_bootstrap_fails_with_the_command(aws):
    [finding] = Preflight(Clients(), target()).bootstrap()
    assert finding.status == "FAIL" and finding.detail == "us-east-1 is not bootstrapped for CDK (no /cdk-bootstrap/hnb659fds/version)"
    assert finding.fix.startswith("npx cdk bootstrap aws://<account>/us-east-1")


def test_an_old_bootstrap_fails_and_a_recent_one_passes(aws):
    bootstrapped("5")
    [old] = Preflight(Clients(), target()).bootstrap()
    assert old.status == "FAIL" and "version 5 is older than the 6 these templates need" in old.detail
    boto3.client("ssm").put_parameter(Name="/cdk-bootstrap/hnb659fds/version", Value="21", Overwrite=True, Type="String")
    assert Preflight(Clients(), target()).bootstrap()[0].status == "PASS"


def test_a_session_in_another_region_than_the_availability_zone_fails(aws):
    [finding] = Preflight(Clients("us-west-2"), target()).region()
    assert finding.status == "FAIL" and "your AWS session is in us-west-2, availability_zone (cdk.json) is in us-east-1" in finding.detail
    assert finding.fix.startswith("pass --region us-east-1")


# -- instance types ----------------------------------------------------------------------------------------
def test_every_instance_type_of_the_shipped_configs_is_offered_in_their_az(aws):
    for config, context in (("vanilla", {}), ("multi-queue", {}), ("gpu-p5", CAPACITY)):
        findings = Preflight(Clients(), target(config, **context)).instance_types()
        assert [f.status for f in findings] == ["PASS"], (config, findings)


def test_a_type_not_offered_in_the_az_names_the_config_line_and_where_it_is(aws):
    t = target()
    t.templates = copy.deepcopy(t.templates)
    for resource in t.templates["PrereqStack"]["Resources"].values():
        if resource["Type"] == "AWS::EC2::Subnet":
            resource["Properties"]["AvailabilityZone"] = "us-east-1e"  # moto's offerings: no c5 family there
    findings = Preflight(Clients(), t).instance_types()
    messages = [f.detail for f in findings if f.status == "FAIL"]
    assert "c5.9xlarge is not offered in us-east-1e (cluster_configs/vanilla.yaml:13 HeadNode.InstanceType)" in messages
    [compute] = [f for f in findings if "ComputeResources[0].InstanceType" in f.detail]
    assert compute.detail.startswith("c5n.9xlarge is not offered in us-east-1e (cluster_configs/vanilla.yaml:51 Scheduling.SlurmQueues[0]")
    assert "us-east-1a" in compute.fix


# -- capacity reservations (Stubber: moto has none) ------------------------------------------------------------
def reservation(**overrides: Any) -> dict[str, Any]:
    return {"CapacityReservationId": CAPACITY["CAPACITY_RESERVATION_ID"], "InstanceType": "p5.48xlarge",
            "AvailabilityZone": "us-east-1a", "TotalInstanceCount": 2, "AvailableInstanceCount": 2,
            "State": "active", "ReservationType": "default", **overrides}


def capacity(aws_response: dict[str, Any] | None = None, error: str | None = None) -> list:
    ec2 = boto3.client("ec2", region_name=REGION)
    with Stubber(ec2) as stub:
        expected = {"CapacityReservationIds": [CAPACITY["CAPACITY_RESERVATION_ID"]]}
        if error:
            stub.add_client_error("describe_capacity_reservations", error, "The capacity reservation ID is not found",
                                  expected_params=expected)
        else:
            stub.add_response("describe_capacity_reservations", {"CapacityReservations": [aws_response]}, expected)
        return Preflight(Clients(ec2=ec2), target("gpu-p5", **CAPACITY)).capacity()


def test_an_active_reservation_of_the_right_type_size_and_az_passes(aws):
    [finding] = capacity(reservation())
    assert finding.status == "PASS" and finding.detail == ("capacity reservation cr-0123456789abcdef0: active, "
                                                           "2 x p5.48xlarge in us-east-1a")


def test_a_reservation_that_does_not_fit_lists_every_mismatch_with_the_config_line(aws):
    [finding] = capacity(reservation(InstanceType="p4d.24xlarge", AvailabilityZone="us-east-1b", TotalInstanceCount=1,
                                     State="expired"))
    assert finding.status == "FAIL"
    for problem in ("is expired", "is for p4d.24xlarge, the config launches p5.48xlarge",
                    "is in us-east-1b, the queue's subnet in us-east-1a", "holds 1 instances, MaxCount is 2",
                    "gpu-p5.yaml:65 Scheduling.SlurmQueues[0].ComputeResources[0].CapacityReservationTarget"):
        assert problem in finding.detail


def test_a_capacity_block_not_started_yet_warns_with_its_start(aws):
    start = datetime(2026, 12, 1, 11, 30, tzinfo=timezone.utc)
    [finding] = capacity(reservation(ReservationType="capacity-block", State="scheduled", StartDate=start))
    assert finding.status == "WARN" and finding.detail.startswith("Capacity Block cr-0123456789abcdef0 starts at 2026-12-01")


def test_an_unknown_reservation_fails(aws):
    [finding] = capacity(error="InvalidCapacityReservationId.NotFound")
    assert finding.status == "FAIL" and "gpu-p5.yaml:65" in finding.detail
    assert finding.fix.startswith("use a reservation id of this account and region")


# -- OpenZFS deployment type ----------------------------------------------------------------------------------
def with_openzfs(deployment: str) -> Target:
    t = target()
    t.templates = copy.deepcopy(t.templates)
    for resource in t.templates["PrereqStack"]["Resources"].values():
        if resource["Properties"].get("FileSystemType") == "OPENZFS":
            resource["Properties"]["OpenZFSConfiguration"]["DeploymentType"] = deployment
    return t


def test_the_default_openzfs_deployment_type_is_offered(aws):
    assert Preflight(Clients(), target()).openzfs()[0].status == "PASS"


def test_an_openzfs_deployment_type_missing_in_the_region_names_the_context_key(aws):
    [finding] = Preflight(Clients("ap-northeast-3"), with_openzfs("SINGLE_AZ_2")).openzfs()
    assert finding.status == "FAIL"
    assert finding.detail == "openzfs_deployment_type SINGLE_AZ_2 is not offered in ap-northeast-3 (cdk.json)"
    assert finding.fix.startswith("set openzfs_deployment_type to one of SINGLE_AZ_1, SINGLE_AZ_HA_1, MULTI_AZ_1")


def test_a_region_the_data_does_not_list_is_a_warning_not_a_failure(aws):
    [finding] = Preflight(Clients("eu-west-1"), with_openzfs("SINGLE_AZ_2")).openzfs()
    assert finding.status == "WARN" and "docs.aws.amazon.com/fsx/latest/OpenZFSGuide" in finding.detail


# -- vCPU quotas (Stubber: moto has no EC2 quotas) ---------------------------------------------------------------
QUOTAS = [("L-1216C47A", "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances"),
          ("L-DB2E81BA", "Running On-Demand G and VT instances"), ("L-417A185B", "Running On-Demand P instances"),
          ("L-F7808C92", "Running On-Demand HPC instances"), ("L-34B43A08", "All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests")]


def quotas(config: str, standard: float, p: float = 192.0, **context: Any) -> list:
    service_quotas = boto3.client("service-quotas", region_name=REGION)
    values = {"L-1216C47A": standard, "L-417A185B": p}
    with Stubber(service_quotas) as stub:
        stub.add_response("list_service_quotas", {"Quotas": [
            {"QuotaCode": code, "QuotaName": name, "Value": values.get(code, 64.0), "ServiceCode": "ec2"}
            for code, name in QUOTAS]}, {"ServiceCode": "ec2"})
        return Preflight(Clients(service_quotas=service_quotas), target(config, **context)).vcpu_quota()


def test_queues_at_max_count_over_the_quota_fail_with_the_increase_command(aws):
    [finding] = quotas("multi-queue", standard=64)
    assert finding.status == "FAIL"
    assert finding.detail.startswith("'Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances' (L-1216C47A) "
                                     "is 64 vCPUs; the head node, queues at MaxCount and login nodes need ")
    assert "multi-queue.yaml:14 HeadNode.InstanceType" in finding.detail
    assert "LoginNodes.Pools[0].InstanceType" in finding.detail
    assert finding.fix.startswith("lower MaxCount, or request an increase: aws service-quotas "
                                  "request-service-quota-increase --service-code ec2 --quota-code L-1216C47A")


def test_gpu_nodes_count_against_the_p_quota(aws):
    """Two p5.48xlarge (192 vCPUs each, as EC2 describes them) at MaxCount need 384 vCPUs of the P quota."""
    findings = {f.detail.split("'")[1]: f for f in quotas("gpu-p5", standard=10000, p=192, **CAPACITY)}
    p = findings["Running On-Demand P instances"]
    assert p.status == "FAIL" and "(L-417A185B) is 192 vCPUs;" in p.detail and " need 384 (" in p.detail
    assert findings["Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances"].status == "PASS"
    findings = {f.detail.split("'")[1]: f for f in quotas("gpu-p5", standard=10000, p=384, **CAPACITY)}
    assert findings["Running On-Demand P instances"].detail == "'Running On-Demand P instances': 384 of 384 vCPUs at MaxCount"


# -- cluster name ----------------------------------------------------------------------------------------------------
def stack(name: str, outputs: dict[str, str] | None = None) -> None:
    template = {"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
                "Outputs": {k: {"Value": v} for k, v in (outputs or {}).items()}}
    boto3.client("cloudformation").create_stack(StackName=name, TemplateBody=json.dumps(template))


def test_a_stack_with_the_clusters_name_that_is_not_ours_fails(aws):
    stack("hpc-cluster")
    [finding] = Preflight(Clients(), target()).name()
    assert finding.status == "FAIL" and finding.detail.startswith("a stack named hpc-cluster already exists")
    assert finding.fix.startswith("set cluster_name in cdk.json")


def test_our_own_cluster_is_an_update(aws):
    stack("hpc-cluster")
    stack("ClusterStack", {"ClusterName": "hpc-cluster"})
    assert Preflight(Clients(), target()).name()[0].detail == "cluster hpc-cluster is this app's (update)"


def test_the_whole_preflight_of_the_default_config_passes_on_a_ready_account(aws):
    bootstrapped()
    findings = Preflight(Clients(), target(), skip=("vcpu-quota",)).run()
    assert {f.check: f.status for f in findings} == {
        "region": "PASS", "bootstrap": "PASS", "instance-types": "PASS", "capacity": "SKIP", "openzfs": "PASS",
        "vcpu-quota": "SKIP", "cluster-name": "PASS"}
