"""Preflight for `hpc-deploy`: read-only questions to the account that ParallelCluster's offline
validation cannot answer, asked about exactly the templates about to be deployed (a synthesized cdk.out).

Each answer is a Finding; a FAIL names the context key or the config line to change. Nothing here
writes to the account.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator

import yaml
from botocore.exceptions import ClientError

from cluster_yaml.sections import QUEUES, instance_types, queues
from cluster_yaml.stack_values import CLUSTER_CONFIG, CLUSTER_NAME
from ops.cluster import Session
from settings.context import REPO_ROOT
from settings.errors import ConfigError

OPENZFS_DATA = Path(__file__).resolve().parent / "data" / "openzfs_deployment_types.yaml"
# Instance family -> the label EC2's On-Demand vCPU quota names use ("Running On-Demand G and VT
# instances", "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances"); the quotas and their
# codes are read from Service Quotas itself. Longer prefixes first; otherwise the family's first letter.
FAMILY_LABELS = (("hpc", "HPC"), ("trn", "Trn"), ("inf", "Inf"), ("dl", "DL"), ("vt", "VT"), ("u-", "High Memory"),
                 ("mac", "Mac"))
QUOTA_NAME = re.compile(r"^Running On-Demand (?P<labels>.+) instances$")


@dataclass
class Finding:
    check: str
    status: str  # PASS, FAIL, WARN or SKIP
    detail: str
    fix: str = ""

    def __str__(self) -> str:
        return f"{self.status:4}  {self.check:16} {self.detail}" + (f"\n      fix: {self.fix}" if self.fix else "")


@dataclass
class Node:
    """One kind of instance the cluster launches, with where its config says so."""
    path: tuple[str | int, ...]  # YAML path of its InstanceType
    instance_type: str
    subnets: list[Any]  # as in the template: ids or intrinsics
    max_count: int
    min_count: int = 0
    capacity_type: str = "ONDEMAND"
    reservation: str | None = None
    reservation_path: tuple[str | int, ...] = ()


@dataclass
class Target:
    """The synthesized templates about to be deployed, seen from one cluster stack."""
    templates: dict[str, dict[str, Any]]
    cluster_stack: str = "ClusterStack"

    @cached_property
    def cluster(self) -> dict[str, Any]:
        [resource] = [r for r in self.templates[self.cluster_stack]["Resources"].values()
                      if r["Type"] == "Custom::PclusterCluster"]
        return resource["Properties"]

    @property
    def cluster_name(self) -> str:
        return str(self.cluster[CLUSTER_NAME])

    @property
    def config(self) -> dict[str, Any]:
        return self.cluster["ClusterConfiguration"]

    @cached_property
    def config_source(self) -> str:
        return str(self.templates[self.cluster_stack].get("Outputs", {}).get(CLUSTER_CONFIG, {}).get("Value", "cluster config"))

    @cached_property
    def _document(self) -> Any:
        from cluster_yaml.document import load_document

        path = REPO_ROOT / self.config_source
        try:
            return load_document(path, self.config_source) if path.is_file() else None
        except ConfigError:  # it synthesized, so it parses; line numbers are a courtesy anyway
            return None

    def where(self, path: tuple[str | int, ...]) -> str:
        """``file:line Key.Path`` of a config value, for messages."""
        from cluster_yaml.document import format_path

        line = self._document.line_of(path) if self._document else None
        return f"{self.config_source}{f':{line}' if line else ''} {format_path(path)}"

    def subnet_az(self, subnet: Any) -> str | None:
        """The AZ of a subnet the template names through PrereqStack (None: a literal id, ask EC2)."""
        if isinstance(subnet, dict) and "Fn::GetStackOutput" in subnet:
            output = self.templates["PrereqStack"]["Outputs"][subnet["Fn::GetStackOutput"]["OutputName"]]["Value"]
            resource = self.templates["PrereqStack"]["Resources"].get(output.get("Ref", ""), {})
            return resource.get("Properties", {}).get("AvailabilityZone")
        return None

    def nodes(self) -> Iterator[Node]:
        head = self.config.get("HeadNode") or {}
        yield Node(("HeadNode", "InstanceType"), str(head.get("InstanceType")),
                   [(head.get("Networking") or {}).get("SubnetId")], 1, 1)
        for qi, queue in enumerate(queues(self.config)):
            subnets = (queue.get("Networking") or {}).get("SubnetIds") or []
            queue_reservation = (queue.get("CapacityReservationTarget") or {}).get("CapacityReservationId")
            for ci, resource in enumerate(queue.get("ComputeResources") or []):
                own = (resource.get("CapacityReservationTarget") or {}).get("CapacityReservationId")
                reservation_path = ((*QUEUES, qi, "ComputeResources", ci, "CapacityReservationTarget") if own else
                                    (*QUEUES, qi, "CapacityReservationTarget"))
                for path, instance_type in instance_types(resource):
                    yield Node((*QUEUES, qi, "ComputeResources", ci, *path), instance_type, subnets, int(resource.get("MaxCount", 10)),
                               int(resource.get("MinCount", 0)), str(queue.get("CapacityType", "ONDEMAND")),
                               own or queue_reservation, reservation_path)
        for pi, pool in enumerate((self.config.get("LoginNodes") or {}).get("Pools") or []):
            yield Node(("LoginNodes", "Pools", pi, "InstanceType"), str(pool.get("InstanceType")),
                       (pool.get("Networking") or {}).get("SubnetIds") or [], int(pool.get("Count", 1)),
                       int(pool.get("Count", 1)))

    def openzfs_deployment_type(self) -> str | None:
        for resource in self.templates["PrereqStack"]["Resources"].values():
            props = resource.get("Properties", {})
            if resource["Type"] == "AWS::FSx::FileSystem" and props.get("FileSystemType") == "OPENZFS":
                return props["OpenZFSConfiguration"]["DeploymentType"]
        return None

    def bootstrap(self) -> tuple[str, int]:
        """The SSM parameter CDK reads the bootstrap version from, and the lowest version the templates accept."""
        template = self.templates[self.cluster_stack]
        parameter = template["Parameters"]["BootstrapVersion"]["Default"]
        [assertion] = template["Rules"]["CheckBootstrapVersion"]["Assertions"]
        refused = assertion["Assert"]["Fn::Not"][0]["Fn::Contains"][0]
        return parameter, max(int(v) for v in refused) + 1

    def azs(self) -> set[str]:
        return {r["Properties"]["AvailabilityZone"] for r in self.templates["PrereqStack"]["Resources"].values()
                if r["Type"] == "AWS::EC2::Subnet" and isinstance(r["Properties"].get("AvailabilityZone"), str)}


class Preflight:
    def __init__(self, aws: Session, target: Target, skip: tuple[str, ...] = ()) -> None:
        self.aws, self.target, self.skip = aws, target, skip
        self._subnet_azs: dict[str, str] = {}

    def run(self) -> list[Finding]:
        findings: list[Finding] = []
        for name, check in (("region", self.region), ("bootstrap", self.bootstrap),
                            ("instance-types", self.instance_types), ("capacity", self.capacity),
                            ("openzfs", self.openzfs), ("vcpu-quota", self.vcpu_quota), ("cluster-name", self.name)):
            if name in self.skip:
                findings.append(Finding(name, "SKIP", "skipped with --skip"))
                continue
            findings.extend(check())
        return findings

    # -- the checks -------------------------------------------------------------------------------------
    def region(self) -> list[Finding]:
        regions = {az[:-1] for az in self.target.azs()}
        if regions and self.aws.region not in regions:
            return [Finding("region", "FAIL", f"your AWS session is in {self.aws.region}, availability_zone "
                            f"(cdk.json) is in {', '.join(sorted(regions))}",
                            f"pass --region {sorted(regions)[0]} (or AWS_DEFAULT_REGION), or change availability_zone")]
        return [Finding("region", "PASS", f"{self.aws.region}: {', '.join(sorted(self.target.azs()))}")]

    def bootstrap(self) -> list[Finding]:
        parameter, needed = self.target.bootstrap()
        fix = f"npx cdk bootstrap aws://<account>/{self.aws.region} (once per account and region)"
        try:
            value = self.aws.client("ssm").get_parameter(Name=parameter)["Parameter"]["Value"]
        except ClientError as error:
            if error.response["Error"]["Code"] == "ParameterNotFound":
                return [Finding("bootstrap", "FAIL", f"{self.aws.region} is not bootstrapped for CDK (no {parameter})",
                                fix)]
            return [Finding("bootstrap", "WARN", f"cannot read {parameter}: {error.response['Error']['Message']}")]
        if int(value) < needed:
            return [Finding("bootstrap", "FAIL", f"CDK bootstrap version {value} is older than the {needed} these "
                            "templates need", fix)]
        return [Finding("bootstrap", "PASS", f"CDK bootstrap version {value} (>= {needed})")]

    def _az_of(self, subnet: Any) -> str | None:
        az = self.target.subnet_az(subnet)
        if az or not isinstance(subnet, str):
            return az
        if subnet not in self._subnet_azs:
            try:
                [found] = self.aws.client("ec2").describe_subnets(SubnetIds=[subnet])["Subnets"]
                self._subnet_azs[subnet] = found["AvailabilityZone"]
            except ClientError:
                return None
        return self._subnet_azs[subnet]

    def instance_types(self) -> list[Finding]:
        nodes = list(self.target.nodes())
        azs = sorted({az for node in nodes for az in map(self._az_of, node.subnets) if az})
        offered = self._offerings(sorted({n.instance_type for n in nodes}), azs)
        missing = [n for n in nodes if not any((n.instance_type, az) in offered for az in map(self._az_of, n.subnets))]
        anywhere = self._offerings(sorted({n.instance_type for n in missing})) if missing else set()
        findings = []
        for node in nodes:
            node_azs = sorted({az for az in map(self._az_of, node.subnets) if az})
            if node_azs and node in missing:
                elsewhere = sorted(az for t, az in anywhere if t == node.instance_type)
                findings.append(Finding(
                    "instance-types", "FAIL", f"{node.instance_type} is not offered in {', '.join(node_azs)} "
                    f"({self.target.where(node.path)})",
                    f"choose another InstanceType, or an availability_zone where it is offered"
                    f"{': ' + ', '.join(elsewhere) if elsewhere else ' (aws ec2 describe-instance-type-offerings)'}"))
        if not findings:
            findings.append(Finding("instance-types", "PASS", f"{len({n.instance_type for n in nodes})} instance types "
                                    f"offered in {', '.join(azs)}"))
        return findings

    def _offerings(self, types: list[str], azs: list[str] | None = None) -> set[tuple[str, str]]:
        """(instance type, AZ) pairs EC2 offers, in AZS or anywhere in the region."""
        filters = [{"Name": "instance-type", "Values": types}] + ([{"Name": "location", "Values": azs}] if azs else [])
        paginator = self.aws.client("ec2").get_paginator("describe_instance_type_offerings")
        return {(o["InstanceType"], o["Location"]) for page in paginator.paginate(
            LocationType="availability-zone", Filters=filters) for o in page["InstanceTypeOfferings"]}

    def capacity(self) -> list[Finding]:
        nodes = [n for n in self.target.nodes() if n.reservation]
        if not nodes:
            return [Finding("capacity", "SKIP", "no capacity reservation in the config")]
        ids = sorted({str(n.reservation) for n in nodes})
        try:
            reservations = {r["CapacityReservationId"]: r for r in self.aws.client("ec2").describe_capacity_reservations(
                CapacityReservationIds=ids)["CapacityReservations"]}
        except ClientError as error:
            return [Finding("capacity", "FAIL", f"{', '.join(ids)}: {error.response['Error']['Message']} "
                            f"({self.target.where(nodes[0].reservation_path)})",
                            "use a reservation id of this account and region (aws ec2 describe-capacity-reservations)")]
        findings = []
        for node in nodes:
            where = self.target.where(node.reservation_path)
            found = reservations.get(str(node.reservation))
            if found is None:
                findings.append(Finding("capacity", "FAIL", f"{node.reservation} does not exist here ({where})",
                                        "use a reservation id of this account and region"))
                continue
            block = found.get("ReservationType") == "capacity-block"
            kind = "Capacity Block" if block else "capacity reservation"
            problems = []
            if found["State"] == "scheduled" and block:
                findings.append(Finding("capacity", "WARN", f"{kind} {node.reservation} starts at "
                                        f"{found.get('StartDate')}: nodes start only then ({where})"))
            elif found["State"] != "active":
                problems.append(f"is {found['State']}")
            if found["InstanceType"] != node.instance_type:
                problems.append(f"is for {found['InstanceType']}, the config launches {node.instance_type}")
            node_azs = {az for az in map(self._az_of, node.subnets) if az}
            if node_azs and found["AvailabilityZone"] not in node_azs:
                problems.append(f"is in {found['AvailabilityZone']}, the queue's subnet in {', '.join(sorted(node_azs))}")
            if int(found["TotalInstanceCount"]) < node.max_count:
                problems.append(f"holds {found['TotalInstanceCount']} instances, MaxCount is {node.max_count}")
            if not problems and found["State"] == "scheduled":
                continue  # the warning above says it all
            if problems:
                findings.append(Finding("capacity", "FAIL", f"{kind} {node.reservation} " + "; ".join(problems) +
                                        f" ({where})", "fix the reservation id, or the queue's InstanceType, MaxCount or "
                                        "subnet (availability_zone) to match it"))
            else:
                findings.append(Finding("capacity", "PASS", f"{kind} {node.reservation}: {found['State']}, "
                                        f"{found['TotalInstanceCount']} x {found['InstanceType']} in "
                                        f"{found['AvailabilityZone']}"))
        return findings

    def openzfs(self) -> list[Finding]:
        deployment = self.target.openzfs_deployment_type()
        if deployment is None:
            return [Finding("openzfs", "SKIP", "no FSx for OpenZFS file system")]
        data = yaml.safe_load(OPENZFS_DATA.read_text())
        offered = data["regions"].get(self.aws.region)
        if offered is None:
            return [Finding("openzfs", "WARN", f"{self.aws.region} is not in {OPENZFS_DATA.name}: check that "
                            f"{deployment} is offered there ({data['source']})")]
        if deployment not in offered:
            return [Finding("openzfs", "FAIL", f"openzfs_deployment_type {deployment} is not offered in "
                            f"{self.aws.region} (cdk.json)", f"set openzfs_deployment_type to one of "
                            f"{', '.join(offered)} ({data['source']})")]
        return [Finding("openzfs", "PASS", f"{deployment} is offered in {self.aws.region}")]

    def vcpu_quota(self) -> list[Finding]:
        nodes = [n for n in self.target.nodes() if n.capacity_type == "ONDEMAND"]
        types = sorted({n.instance_type for n in nodes})
        described = self.aws.client("ec2").describe_instance_types(InstanceTypes=types)["InstanceTypes"]
        vcpus = {t["InstanceType"]: t["VCpuInfo"]["DefaultVCpus"] for t in described}
        try:
            quotas = [q for page in self.aws.client("service-quotas").get_paginator("list_service_quotas").paginate(
                ServiceCode="ec2") for q in page["Quotas"] if QUOTA_NAME.match(q["QuotaName"])]
        except ClientError as error:
            return [Finding("vcpu-quota", "WARN", "cannot read EC2 quotas from Service Quotas: "
                            f"{error.response['Error']['Message']}")]
        needed: dict[str, int] = {}
        paths: dict[str, list[tuple[str | int, ...]]] = {}
        names: dict[str, str] = {}
        for node in nodes:
            quota = _quota_for(node.instance_type, quotas)
            if quota is None:
                continue
            code = quota["QuotaCode"]
            needed[code] = needed.get(code, 0) + node.max_count * vcpus.get(node.instance_type, 0)
            paths.setdefault(code, []).append(node.path)
            names[code] = quota["QuotaName"]
        findings = []
        for code, vcpu in needed.items():
            value = next(q["Value"] for q in quotas if q["QuotaCode"] == code)
            if vcpu > value:
                findings.append(Finding(
                    "vcpu-quota", "FAIL", f"'{names[code]}' ({code}) is {value:g} vCPUs; the head node, queues at "
                    f"MaxCount and login nodes need {vcpu} ({'; '.join(self.target.where(p) for p in paths[code])})",
                    f"lower MaxCount, or request an increase: aws service-quotas request-service-quota-increase "
                    f"--service-code ec2 --quota-code {code} --desired-value {vcpu} --region {self.aws.region}"))
            else:
                findings.append(Finding("vcpu-quota", "PASS", f"'{names[code]}': {vcpu} of {value:g} vCPUs at MaxCount"))
        return findings or [Finding("vcpu-quota", "SKIP", "no On-Demand instances")]

    def name(self) -> list[Finding]:
        cloudformation = self.aws.client("cloudformation")
        name = self.target.cluster_name
        ours = None
        try:
            outputs = cloudformation.describe_stacks(StackName=self.target.cluster_stack)["Stacks"][0].get("Outputs", [])
            ours = next((o["OutputValue"] for o in outputs if o["OutputKey"] == CLUSTER_NAME), None)
        except ClientError:
            pass
        if ours == name:
            return [Finding("cluster-name", "PASS", f"cluster {name} is this app's (update)")]
        try:
            stack = cloudformation.describe_stacks(StackName=name)["Stacks"][0]
        except ClientError:
            return [Finding("cluster-name", "PASS", f"no stack or cluster named {name} yet")]
        return [Finding("cluster-name", "FAIL", f"a stack named {name} already exists ({stack['StackStatus']}), not "
                        f"created by this app's {self.target.cluster_stack}: ParallelCluster names the cluster's stack after it",
                        "set cluster_name in cdk.json (or -c cluster_name=...) to a new name")]


def _quota_for(instance_type: str, quotas: list[dict[str, Any]]) -> dict[str, Any] | None:
    family = instance_type.split(".")[0]
    label = next((name for prefix, name in FAMILY_LABELS if family.startswith(prefix)), family[:1].upper())
    for quota in quotas:
        labels = QUOTA_NAME.match(quota["QuotaName"])["labels"]
        inner = re.search(r"\((.+)\)", labels)
        members = [s.strip() for s in (inner.group(1).split(",") if inner else labels.split(" and "))]
        if label in members or (label == "High Memory" and labels == "High Memory"):
            return quota
    return None
