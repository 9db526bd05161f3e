"""ParallelCluster's full validation, offline: runs inside .venv-pcluster-<version> (stdlib, boto3, moto and
pcluster only; no project imports), driven by worker.py.

``pcluster.lib.create_cluster(dryrun=True)`` runs every validator ParallelCluster runs before it
creates a cluster (networking, FSx security groups, EFA, instance types, placement groups,
capacity reservations, key pair, launch-template dry runs, counts, ...). Its AWS calls go to moto,
in an account built from the description that cluster_yaml/simulation.py reads off our
synthesized templates. What moto lacks is answered here, from that same description, through
botocore event hooks on boto3's default session (which ParallelCluster's clients use):

- FSx (file systems with their VpcId, network interfaces and mount names; OpenZFS/ONTAP volumes),
  EFS, capacity reservations, Secrets Manager, KMS and IAM lookups of stand-ins;
- CloudFormation ``DescribeStacks``: no cluster stack exists yet;
- ``RunInstances`` dry runs: moto rejects instance-store and size-less EBS mappings, which EC2 accepts.

Values in a config that point outside our templates (an existing subnet, security group, file system,
reservation, placement group, bucket, AMI, key pair, role, ... : every kind lookups.yaml lists)
cannot be known offline: each gets a stand-in that passes, and the answer lists it so synth prints a
WARNING that it was not checked. A call that neither moto nor a handler answers is a gap: the validator
that made it reports a WARNING naming the key, never an ERROR.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import ipaddress
import json
import os
import re
import tempfile
import time
from typing import Any

REGION_ENV = "AWS_DEFAULT_REGION"
# EC2 calls that moto answers from its packaged data alone (never from the simulated account's state).
OFFERINGS = "DescribeInstanceTypeOfferings"
ID_PATTERN = re.compile(r"\b(?:vpc|subnet|sg|eni|igw|nat|rtb|vpce|ami|cr|fs|fsvol|fc|pg|key|eipalloc|i)-[0-9a-f]{8,17}\b")


def _share_botocore_models() -> None:
    """moto builds a new botocore loader for each backend and parses the same service models (EC2's is
    megabytes of JSON) again each time; one parse per file serves them all, read-only as botocore uses them."""
    import botocore.loaders

    load = botocore.loaders.JSONFileLoader.load_file
    if getattr(load, "shared", False):
        return
    parsed: dict[str, Any] = {}

    def shared(self: Any, file_path: str) -> Any:
        if file_path not in parsed:
            parsed[file_path] = load(self, file_path)
        return parsed[file_path]

    shared.shared = True  # type: ignore[attr-defined]
    botocore.loaders.JSONFileLoader.load_file = shared


def _official_amis() -> str:
    """ParallelCluster finds its official AMIs by name and owner alias; moto loads these from MOTO_AMIS_PATH
    (a file written before moto is imported, which also keeps moto from loading its large default list)."""
    from pcluster.constants import OS_TO_IMAGE_NAME_PART_MAP, SUPPORTED_OSES
    from pcluster.utils import get_installed_version

    images = []
    for index, (os_name, arch) in enumerate((o, a) for o in SUPPORTED_OSES for a in ("x86_64", "arm64")):
        images.append({
            "ami_id": f"ami-{index + 1:017x}", "owner_id": "247102896272", "public": True, "state": "available",
            "name": f"aws-parallelcluster-{get_installed_version()}-{OS_TO_IMAGE_NAME_PART_MAP[os_name]}-{arch}-"
                    "202611010000",
            "description": f"AWS ParallelCluster AMI for {os_name} (simulated)", "architecture": arch,
            "virtualization_type": "hvm", "root_device_type": "ebs", "creation_date": "2026-11-01T00:00:00.000Z",
            "root_device_name": "/dev/sda1" if os_name.startswith("ubuntu") else "/dev/xvda"})
    handle, path = tempfile.mkstemp(prefix="pcluster-amis-", suffix=".json")
    with os.fdopen(handle, "w") as out:
        json.dump(images, out)
    return path


class SimulatedAccount:
    """One moto account at a time; ``validate`` builds it from a description and dry-runs configs in it."""

    def __init__(self, region: str) -> None:
        os.environ.update({REGION_ENV: region, "AWS_ACCESS_KEY_ID": "simulated", "AWS_SECRET_ACCESS_KEY": "simulated",
                           "AWS_SESSION_TOKEN": "simulated"})
        os.environ.setdefault("MOTO_AMIS_PATH", _official_amis())
        _share_botocore_models()
        from importlib.resources import files

        import boto3
        import pcluster.lib  # noqa: F401 - builds the API functions once
        import pcluster.utils
        from moto import mock_aws

        # Supported regions come from a URL unless cached: take the list packaged with pcluster.
        pcluster.utils.retrieve_supported_regions.cache = (
            files("pcluster") / "resources" / "supported-regions").read_text().split("\n")
        self.region, self.boto3, self.mock_aws = region, boto3, mock_aws
        self.mock = None
        self.used = False
        self.config: dict[str, Any] = {}
        self.checking: str | None = None  # the key a stand-in is being made for (named if the machinery fails)
        self.current_validator: str | None = None
        self.gaps: list[dict[str, Any]] = []
        self.ahead: str | None = None  # the account built ahead of its request, untouched since
        self.state: dict[str, Any] = {}
        self.static_answers: dict[str, Any] = {}
        self._attribution()
        self._record_gaps()
        self._refuse_network()
        self._region_from_default_session()
        self._start()

    # -- the account --------------------------------------------------------------------------------
    def _start(self) -> None:
        from pcluster.aws.aws_api import AWSApi
        from pcluster.aws.common import Cache

        if self.mock is not None:
            self.mock.stop()
        self.mock = self.mock_aws()
        self.mock.start()
        AWSApi.reset()
        Cache.clear_all()
        self.boto3.setup_default_session(region_name=self.region)
        self._hooks(self.boto3.DEFAULT_SESSION.events)
        self.state = {"ids": {}, "file_systems": {}, "volumes": {}, "capacity_reservations": {}, "secrets": set(),
                      "kms": set(), "policies": set(), "efs": {}, "stand_ins": [], "vpc": None, "azs": [], "known": set(),
                      "free_cidrs": None, "placement_groups": {}, "file_caches": {}, "backups": {}, "svms": {},
                      "ebs_volumes": {}, "snapshots": {}, "addresses": {}, "hosted_zones": {},
                      "reservation_groups": {}, "instance_types": {}}
        # The first EC2 and S3 calls load moto's data (instance types, service models): pay it now, while
        # the caller is still building its stacks.
        self.ec2 = self.boto3.client("ec2")
        self.ec2.describe_instance_types(InstanceTypes=["c5.large"])
        self.iam = self.boto3.client("iam")
        self.s3 = self.boto3.client("s3")
        self.s3.list_buckets()
        import moto.iam.aws_managed_policies  # noqa: F401 - the list of AWS managed policies, for GetPolicy
        for page in self.ec2.get_paginator("describe_instance_type_offerings").paginate():
            pass  # ParallelCluster lists every offering once per dry run: answered from static_answers after this

    @staticmethod
    def _refuse_network() -> None:
        """ParallelCluster opens https:// script URLs to check them: offline, that is a WARNING (its own level for an
        unreachable URL), never a connection attempt."""
        from urllib.error import URLError

        import pcluster.validators.s3_validators as s3_validators

        def offline(url: Any, *args: Any, **kwargs: Any) -> Any:
            raise URLError("not checked offline; ParallelCluster opens it at deploy time")

        s3_validators.urlopen = offline

    def _region_from_default_session(self) -> None:
        """ParallelCluster builds a new boto3 Session for every AWS call only to log its region, and again
        in get_region() (pcluster/aws/common.py): a third of a dry run. The region is fixed here, so that
        module reads it from the default session.

        Never creates the default session: the schema check runs while the warm-up thread sets the default
        session up (with the hooks of ``_hooks``); a default session made meanwhile by ``boto3.client`` would
        replace it, and later clients would reach moto without the hooks (seen: DescribeStacks went to moto's
        CloudFormation and crashed the dry run). Before the warm-up is done, a throwaway session serves."""
        import types

        import pcluster.aws.common as common

        boto3, region = self.boto3, self.region

        def current() -> Any:
            return boto3.DEFAULT_SESSION or boto3.session.Session(region_name=region)

        common.boto3 = types.SimpleNamespace(  # type: ignore[attr-defined]
            client=lambda *args, **kwargs: current().client(*args, **kwargs),
            resource=lambda *args, **kwargs: current().resource(*args, **kwargs),
            session=types.SimpleNamespace(Session=current))

    def reset(self) -> None:
        self.used = False
        self._start()

    def prepare(self, account: dict[str, Any]) -> bool:
        """A fresh account as ``account`` describes it: the one built ahead if it matches (returns True),
        else a new one."""
        if self.ahead is not None and self.ahead == _canonical(account):
            self.ahead = None
            return True
        self.ahead = None
        if self.used:
            self.reset()
        self.build(account)
        return False

    def build_ahead(self, account: dict[str, Any]) -> None:
        """Builds ``account`` before it is asked for (the last one asked, while the caller synthesizes)."""
        self.prepare(account)
        self.ahead = _canonical(account)

    def build(self, account: dict[str, Any]) -> None:
        self.used = True
        ids, ec2 = self.state["ids"], self.ec2
        for vpc in account["vpcs"]:
            real = ec2.create_vpc(CidrBlock=vpc["cidr"])["Vpc"]["VpcId"]
            ids[vpc["id"]] = real
            ec2.modify_vpc_attribute(VpcId=real, EnableDnsSupport={"Value": vpc["dns_support"]})
            ec2.modify_vpc_attribute(VpcId=real, EnableDnsHostnames={"Value": vpc["dns_hostnames"]})
            self.state["vpc"] = self.state["vpc"] or vpc
        for subnet in account["subnets"]:
            real = ec2.create_subnet(VpcId=ids[subnet["vpc"]], CidrBlock=subnet["cidr"],
                                     AvailabilityZone=subnet["az"])["Subnet"]["SubnetId"]
            ids[subnet["id"]] = real
            if subnet["public_ip"]:
                ec2.modify_subnet_attribute(SubnetId=real, MapPublicIpOnLaunch={"Value": True})
            if subnet["az"] not in self.state["azs"]:
                self.state["azs"].append(subnet["az"])
        for gateway in account["internet_gateways"]:
            ids[gateway["id"]] = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
            if gateway.get("vpc"):
                ec2.attach_internet_gateway(InternetGatewayId=ids[gateway["id"]], VpcId=ids[gateway["vpc"]])
        for nat in account["nat_gateways"]:
            allocation = ec2.allocate_address(Domain="vpc")["AllocationId"]
            ids[nat["id"]] = ec2.create_nat_gateway(SubnetId=ids[nat["subnet"]],
                                                    AllocationId=allocation)["NatGateway"]["NatGatewayId"]
        for table in account["route_tables"]:
            real = ec2.create_route_table(VpcId=ids[table["vpc"]])["RouteTable"]["RouteTableId"]
            ids[table["id"]] = real
            for route in table["routes"]:
                target = {k: ids.get(v, v) for k, v in route.items() if k in ("GatewayId", "NatGatewayId")}
                ec2.create_route(RouteTableId=real, DestinationCidrBlock=route["destination"], **target)
            for subnet in table["subnets"]:
                ec2.associate_route_table(RouteTableId=real, SubnetId=ids[subnet])
        for endpoint in account["vpc_endpoints"]:
            ec2.create_vpc_endpoint(VpcId=ids[endpoint["vpc"]], ServiceName=endpoint["service"],
                                    VpcEndpointType=endpoint["type"],
                                    RouteTableIds=[ids[r] for r in endpoint["route_tables"] if r in ids])
        for group in account["security_groups"]:
            ids[group["id"]] = ec2.create_security_group(GroupName=group["name"], Description=group["description"],
                                                         VpcId=ids[group["vpc"]])["GroupId"]
        for group in account["security_groups"]:
            self._rules(group)
        for name in account["key_pairs"]:
            ec2.create_key_pair(KeyName=name, KeyType="ed25519")
            self.state["known"].add(name)
        for bucket in account["buckets"]:
            self._bucket(bucket["name"], bucket["objects"])
        for policy in account["managed_policies"]:
            self._policy(policy["arn"], policy["document"])
        self.state["secrets"].update(s["arn"] for s in account["secrets"])
        for file_system in account["file_systems"]:
            self._file_system(file_system)

    def _rules(self, group: dict[str, Any]) -> None:
        real = self.state["ids"][group["id"]]
        for direction in ("ingress", "egress"):
            rules = group[direction]
            if rules is None:
                continue
            if direction == "egress":  # the template's egress replaces EC2's default allow-all rule
                self.ec2.revoke_security_group_egress(GroupId=real, IpPermissions=[
                    {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
            permissions = [self._permission(rule) for rule in rules]
            call = self.ec2.authorize_security_group_ingress if direction == "ingress" else \
                self.ec2.authorize_security_group_egress
            for permission in permissions:
                call(GroupId=real, IpPermissions=[permission])

    def _permission(self, rule: dict[str, Any]) -> dict[str, Any]:
        permission: dict[str, Any] = {"IpProtocol": rule["protocol"]}
        if rule["protocol"] not in ("-1", "all"):
            permission.update(FromPort=int(rule["from"]), ToPort=int(rule["to"]))
        peer, value = rule.get("peer"), rule.get("value")
        if peer == "cidr":
            permission["IpRanges"] = [{"CidrIp": value}]
        elif peer == "cidr6":
            permission["Ipv6Ranges"] = [{"CidrIpv6": value}]
        elif peer == "group":
            permission["UserIdGroupPairs"] = [{"GroupId": self.state["ids"].get(value, value)}]
        elif peer == "prefix_list":
            permission["PrefixListIds"] = [{"PrefixListId": value}]
        return permission

    def _bucket(self, name: str, objects: list[str]) -> None:
        config = {} if self.region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": self.region}}
        try:
            self.s3.create_bucket(Bucket=name, **config)
        except self.s3.exceptions.BucketAlreadyOwnedByYou:
            pass
        for key in objects:
            self.s3.put_object(Bucket=name, Key=key, Body=b"#!/bin/bash\n")

    def _policy(self, arn: str, document: Any) -> None:
        match = re.match(r"arn:[^:]+:iam::(\d{12}):policy(/.*/|/)([^/]+)$", arn)
        if match and match.group(1) == "123456789012":  # moto's account: the simulated one
            try:
                self.iam.create_policy(PolicyName=match.group(3), Path=match.group(2),
                                       PolicyDocument=json.dumps(document))
            except self.iam.exceptions.MalformedPolicyDocumentException:
                pass  # a simulated value moto does not take: the GetPolicy hook still answers for it
        self.state["policies"].add(arn)

    def _file_system(self, fs: dict[str, Any]) -> None:
        ids = self.state["ids"]
        subnets = [ids.get(s, s) for s in fs["subnets"]]
        groups = [ids.get(g, g) for g in fs["security_groups"]]
        enis = [self.ec2.create_network_interface(SubnetId=subnet, Groups=groups)["NetworkInterface"]
                ["NetworkInterfaceId"] for subnet in subnets[:1]]
        vpc = self.ec2.describe_subnets(SubnetIds=subnets[:1])["Subnets"][0]["VpcId"]
        data: dict[str, Any] = {
            "FileSystemId": fs["id"], "FileSystemType": fs["type"], "Lifecycle": "AVAILABLE", "VpcId": vpc,
            "SubnetIds": subnets, "NetworkInterfaceIds": enis, "DNSName": fs.get("dns_name", f"{fs['id']}.fsx"),
            "StorageCapacity": int(fs.get("storage_capacity") or 1200),
            "ResourceARN": f"arn:aws:fsx:{self.region}:123456789012:file-system/{fs['id']}"}
        if fs["type"] == "LUSTRE":
            data["LustreConfiguration"] = {"DeploymentType": fs.get("deployment_type", "PERSISTENT_2"),
                                           "MountName": fs.get("mount_name", "abcdefgh")}
            data["FileSystemTypeVersion"] = fs.get("version", "2.15")
        elif fs["type"] == "OPENZFS":
            data["OpenZFSConfiguration"] = {"DeploymentType": fs.get("deployment_type", "SINGLE_AZ_1"),
                                            "RootVolumeId": fs["root_volume"]}
            self.state["volumes"][fs["root_volume"]] = {
                "VolumeId": fs["root_volume"], "FileSystemId": fs["id"], "VolumeType": "OPENZFS",
                "Lifecycle": "AVAILABLE", "OpenZFSConfiguration": {"VolumePath": "/fsx"}}
        elif fs["type"] == "ONTAP":
            data["OntapConfiguration"] = {"DeploymentType": "SINGLE_AZ_1"}
        self.state["file_systems"][fs["id"]] = data

    # -- stand-ins for ids outside our templates ------------------------------------------------------
    def stand_ins(self, config: dict[str, Any]) -> list[dict[str, Any]]:
        """Creates a passing stand-in for every literal reference the account does not have. A stand-in that
        cannot be made is reported (``note``) instead of failing the check."""
        self.config = config
        found: list[dict[str, Any]] = []
        known = (set(self.state["ids"]) | set(self.state["file_systems"]) | set(self.state["volumes"])
                 | self.state["known"] | self.state["policies"] | self.state["secrets"])
        for path, key, value, parent, queue in _references(config):
            kind = _REFERENCE_KINDS.get(key)
            if kind is None or not isinstance(value, str) or not value or value in known:
                continue
            self.checking = f"{'.'.join(str(p) for p in path)} = {value!r}"
            try:
                made = getattr(self, f"_stand_in_{kind}")(value, parent, queue)
            except Exception as error:  # noqa: BLE001 - a gap of the simulation: never a crash of the check
                made = (f"not checked offline: the simulation could not stand in for it "
                        f"({type(error).__name__}: {error})")
            if made:
                known.add(value)
                found.append({"path": path, "kind": kind, "value": value,
                              **({"note": made} if isinstance(made, str) else {})})
        self.checking = None
        self.state["stand_ins"] += found
        return found

    def _vpc(self) -> tuple[dict[str, Any], str]:
        vpc = self.state["vpc"]
        if vpc is None:
            vpc = {"id": "vpc-simulated", "cidr": "10.255.0.0/16", "dns_support": True, "dns_hostnames": True}
            self.build({"vpcs": [vpc], "subnets": [], "internet_gateways": [], "nat_gateways": [], "route_tables": [],
                        "vpc_endpoints": [], "security_groups": [], "key_pairs": [], "buckets": [],
                        "managed_policies": [], "secrets": [], "file_systems": []})
        return vpc, self.state["ids"][vpc["id"]]

    def _stand_in_subnet(self, value: str, parent: dict[str, Any], queue: Any) -> bool:
        vpc, vpc_real = self._vpc()
        self.state["ids"][value] = self.ec2.create_subnet(VpcId=vpc_real, CidrBlock=self._free_cidr(vpc["cidr"]),
                                                          AvailabilityZone=self._az())["Subnet"]["SubnetId"]
        return True

    def _stand_in_security_group(self, value: str, parent: dict[str, Any], queue: Any) -> bool:
        _, vpc_real = self._vpc()
        real = self.ec2.create_security_group(GroupName=f"stand-in-{value}", Description="stand-in",
                                              VpcId=vpc_real)["GroupId"]
        self.ec2.authorize_security_group_ingress(GroupId=real, IpPermissions=[
            {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": real}]},
            {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
        self.state["ids"][value] = real
        return True

    def _storage_network(self) -> tuple[str, str]:
        _, vpc_real = self._vpc()
        return self._open_group(vpc_real), self._any_subnet()

    def _stand_in_fsx_file_system(self, value: str, parent: dict[str, Any], queue: Any) -> bool:
        group, subnet = self._storage_network()
        self._file_system({"id": value, "type": "LUSTRE", "subnets": [subnet], "security_groups": [group]})
        return True

    def _stand_in_fsx_volume(self, value: str, parent: dict[str, Any], queue: Any) -> bool:
        group, subnet = self._storage_network()
        self._file_system({"id": _file_system_of(value), "type": "OPENZFS", "subnets": [subnet],
                           "security_groups": [group], "root_volume": value})
        return True

    def _stand_in_fsx_ontap_volume(self, value: str, parent: dict[str, Any], queue: Any) -> bool:
        group, subnet = self._storage_network()
        fs_id, svm = _file_system_of(value), "svm-0" + value.split("-", 1)[1][-16:].rjust(16, "0")
        self._file_system({"id": fs_id, "type": "ONTAP", "subnets": [subnet], "security_groups": [group]})
        self.state["volumes"][value] = {
            "VolumeId": value, "FileSystemId": fs_id, "VolumeType": "ONTAP", "Lifecycle": "CREATED",
            "OntapConfiguration": {"JunctionPath": "/vol1", "StorageVirtualMachineId": svm}}
        self.state["svms"][svm] = {"StorageVirtualMachineId": svm, "FileSystemId": fs_id, "Lifecycle": "CREATED",
                                   "Endpoints": {"Nfs": {"DNSName": f"{svm}.{fs_id}.fsx.{self.region}.amazonaws.com"}}}
        return True

    def _stand_in_file_cache(self, value: str, parent: dict[str, Any], queue: Any) -> bool:
        group, subnet = self._storage_network()
        eni = self.ec2.create_network_interface(SubnetId=subnet, Groups=[group])["NetworkInterface"]
        self.state["file_caches"][value] = {
            "FileCacheId": value, "FileCacheType": "LUSTRE", "Lifecycle": "AVAILABLE", "VpcId": eni["VpcId"],
            "SubnetIds": [subnet], "NetworkInterfaceIds": [eni["NetworkInterfaceId"]],
            "DNSName": f"{value}.fsx.{self.region}.amazonaws.com",
            "LustreConfiguration": {"MountName": "standin", "DeploymentType": "CACHE_1"}}
        return True

    def _stand_in_fsx_backup(self, value: str, parent: dict[str, Any], queue: Any) -> bool:
        self.state["backups"][value] = {"BackupId": value, "Lifecycle": "AVAILABLE", "Type": "USER_INITIATED",
                                        "FileSystem": {"FileSystemType": "LUSTRE"}}
        return True

    def _stand_in_efs(self, value: str, parent: dict[str, Any], queue: Any) -> bool:
        group, subnet = self._storage_network()
        self.state["efs"][value] = {"group": group, "subnet": subnet}
        return True

    def _stand_in_ebs_volume(self, value: str, parent: dict[str, Any], queue: Any) -> bool:
        self.state["ebs_volumes"][value] = {
            "VolumeId": value, "State": "available", "Size": int(str(parent.get("Size") or 35)),
            "AvailabilityZone": self._head_node_az(), "VolumeType": "gp3", "Encrypted": True, "Attachments": []}
        return True

    def _stand_in_ebs_snapshot(self, value: str, parent: dict[str, Any], queue: Any) -> bool:
        self.state["snapshots"][value] = {"SnapshotId": value, "State": "completed", "Progress": "100%",
                                          "VolumeSize": int(str(parent.get("Size") or 35)), "Encrypted": True,
                                          "OwnerId": "123456789012", "VolumeId": "vol-ffffffff"}
        return True

    def _reservation_count(self, value: str, key: str) -> int:
        """Room for every compute resource that targets the reservation (or group): ParallelCluster sums them."""
        total = 0
        for queue in ((self.config.get("Scheduling") or {}).get("SlurmQueues") or []):
            queue_target = queue.get("CapacityReservationTarget") or {}
            for resource in queue.get("ComputeResources") or []:
                target = resource.get("CapacityReservationTarget") or queue_target
                if target.get(key) == value:
                    total += int(str(resource.get("MaxCount", 10)))
        return max(total, 1)

    def _reservation(self, value: str, parent: dict[str, Any], queue: Any, count: int) -> dict[str, Any]:
        resources = (queue or {}).get("ComputeResources") or []
        resource = parent if "InstanceType" in parent or "Instances" in parent else (resources[0] if resources else {})
        instance_type = resource.get("InstanceType") or next(
            (i.get("InstanceType") for i in resource.get("Instances") or []), "c5.large")
        subnet_ids = ((queue or {}).get("Networking") or {}).get("SubnetIds") or []
        az = self._az_of(subnet_ids[0]) if subnet_ids else self._az()
        block = str((queue or {}).get("CapacityType", "")).upper() == "CAPACITY_BLOCK"
        return {"CapacityReservationId": value, "InstanceType": instance_type, "AvailabilityZone": az,
                "CapacityReservationArn": f"arn:aws:ec2:{self.region}:123456789012:capacity-reservation/{value}",
                "State": "active", "TotalInstanceCount": count, "AvailableInstanceCount": count,
                "InstancePlatform": "Linux/UNIX", "Tenancy": "default", "InstanceMatchCriteria": "targeted",
                "ReservationType": "capacity-block" if block else "default", "OwnerId": "123456789012"}

    def _stand_in_capacity_reservation(self, value: str, parent: dict[str, Any], queue: Any) -> bool:
        count = self._reservation_count(value, "CapacityReservationId")
        self.state["capacity_reservations"][value] = self._reservation(value, parent, queue, count)
        return True

    def _stand_in_capacity_reservation_group(self, value: str, parent: dict[str, Any], queue: Any) -> bool:
        # A service-linked capacity-reservation pool holding one reservation for this compute resource.
        reservation = "cr-0" + hashlib.sha256(value.encode()).hexdigest()[:16]
        count = self._reservation_count(value, "CapacityReservationResourceGroupArn")
        self.state["capacity_reservations"][reservation] = self._reservation(reservation, parent, queue, count)
        self.state["reservation_groups"][value] = [reservation]
        return True

    def _stand_in_ami(self, value: str, parent: dict[str, Any], queue: Any) -> bool:
        from moto.ec2.models import ec2_backends

        real = self.ec2.register_image(Name=f"stand-in-{value}", RootDeviceName="/dev/xvda", BlockDeviceMappings=[
            {"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 40}}])["ImageId"]
        # moto's RegisterImage leaves the architecture empty; EC2 takes it from the image.
        ec2_backends["123456789012"][self.region].amis[real].architecture = self._architecture()
        self.state["ids"][value] = real
        return True

    def _stand_in_key_pair(self, value: str, parent: dict[str, Any], queue: Any) -> bool:
        self.ec2.create_key_pair(KeyName=value, KeyType="ed25519")
        return True

    def _stand_in_placement_group(self, value: str, parent: dict[str, Any], queue: Any) -> bool:
        self.state["placement_groups"][value] = {
            "GroupName": value, "GroupId": "pg-0" + hashlib.sha256(value.encode()).hexdigest()[:16],
            "Strategy": "cluster", "State": "available",
            "GroupArn": f"arn:aws:ec2:{self.region}:123456789012:placement-group/{value}"}
        return True

    def _stand_in_role(self, value: str, parent: dict[str, Any], queue: Any) -> bool:
        match = re.match(r"arn:[^:]+:iam::\d*:role(/.*/|/)([^/]+)$", value)
        if not match:
            return False  # not an ARN: ParallelCluster's schema or validator says so
        self.iam.create_role(RoleName=match.group(2), Path=match.group(1), AssumeRolePolicyDocument="{}")
        return True

    def _stand_in_instance_profile(self, value: str, parent: dict[str, Any], queue: Any) -> bool:
        match = re.match(r"arn:[^:]+:iam::\d*:instance-profile(/.*/|/)([^/]+)$", value)
        if not match:
            return False
        self.iam.create_instance_profile(InstanceProfileName=match.group(2), Path=match.group(1))
        return True

    def _stand_in_policy(self, value: str, parent: dict[str, Any], queue: Any) -> bool:
        if ":iam::aws:policy/" in value:
            return False  # AWS managed: moto knows them; a wrong name stays ParallelCluster's error
        self.state["policies"].add(value)
        return True

    def _stand_in_secret(self, value: str, parent: dict[str, Any], queue: Any) -> bool:
        self.state["secrets"].add(value)  # a Secrets Manager secret or an SSM parameter ARN
        return True

    def _stand_in_munge_key_secret(self, value: str, parent: dict[str, Any], queue: Any) -> bool:
        self.state["secrets"].add(value)
        return True

    def _stand_in_kms_key(self, value: str, parent: dict[str, Any], queue: Any) -> bool:
        self.state["kms"].add(value)
        return True

    def _stand_in_bucket(self, value: str, parent: dict[str, Any], queue: Any) -> bool:
        if self._bucket_exists(value):
            return False
        self._bucket(value, [])
        self.s3.put_bucket_versioning(Bucket=value, VersioningConfiguration={"Status": "Enabled"})
        return True

    def _stand_in_bucket_url(self, value: str, parent: dict[str, Any], queue: Any) -> bool:
        match = re.match(r"s3://([^/]+)", value)
        return bool(match) and self._stand_in_bucket(match.group(1), parent, queue)

    def _bucket_exists(self, name: str) -> bool:
        try:
            self.s3.head_bucket(Bucket=name)
            return True
        except Exception:  # noqa: BLE001 - moto's 404
            return False

    def _stand_in_hosted_zone(self, value: str, parent: dict[str, Any], queue: Any) -> bool:
        vpc, vpc_real = self._vpc()
        self.state["hosted_zones"][value] = {
            "HostedZone": {"Id": f"/hostedzone/{value}", "Name": "stand-in.internal.", "CallerReference": "stand-in",
                           "Config": {"PrivateZone": True}},
            "VPCs": [{"VPCRegion": self.region, "VPCId": vpc_real}]}
        return True

    def _stand_in_elastic_ip(self, value: str, parent: dict[str, Any], queue: Any) -> bool:
        if value.lower() in ("true", "false"):
            return False
        self.state["addresses"][value] = {"PublicIp": value, "Domain": "vpc",
                                          "AllocationId": "eipalloc-0" + hashlib.sha256(value.encode()).hexdigest()[:16]}
        return True

    def _stand_in_instance_type(self, value: str, parent: dict[str, Any], queue: Any) -> bool | str:
        """A type EC2 may offer that the catalogue (instance_catalogue.py) does not know yet: simulated like its
        closest relative; a name that looks like a typo is left to ParallelCluster (with a did-you-mean)."""
        from instance_catalogue import architecture, plausible_new_type, relative

        if value in self.catalogue_types() or not plausible_new_type(value, self.catalogue_types()):
            return False
        model = relative(value, self.catalogue_types())
        data = copy.deepcopy(self.instance_type_data(model))
        data["InstanceType"] = value
        data["ProcessorInfo"]["SupportedArchitectures"] = [architecture(value)]
        self.state["instance_types"][value] = data
        return (f"not in the instance-type catalogue ({self.catalogue_source()}): simulated like {model}, so its "
                "EFA, GPU, memory and architecture checks are not checked offline; ParallelCluster checks it "
                "against EC2 at deploy time")

    def _head_node_az(self) -> str:
        subnet = ((self.config.get("HeadNode") or {}).get("Networking") or {}).get("SubnetId")
        return self._az_of(subnet) if subnet else self._az()

    def _open_group(self, vpc_real: str) -> str:
        real = self.ec2.create_security_group(GroupName=f"stand-in-storage-{len(self.state['stand_ins'])}-"
                                              f"{time.monotonic_ns()}", Description="stand-in", VpcId=vpc_real)["GroupId"]
        self.ec2.authorize_security_group_ingress(GroupId=real, IpPermissions=[
            {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
        return real

    def _any_subnet(self) -> str:
        subnets = self.ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [
            self.state["ids"][self.state["vpc"]["id"]]]}])["Subnets"]
        if subnets:
            return subnets[0]["SubnetId"]
        real = self.ec2.create_subnet(VpcId=self.state["ids"][self.state["vpc"]["id"]],
                                      CidrBlock=self._free_cidr(self.state["vpc"]["cidr"]),
                                      AvailabilityZone=self._az())["Subnet"]["SubnetId"]
        return real

    def _az(self) -> str:
        return self.state["azs"][0] if self.state["azs"] else f"{self.region}a"

    def _az_of(self, subnet: str) -> str:
        real = self.state["ids"].get(subnet, subnet)
        try:
            return self.ec2.describe_subnets(SubnetIds=[real])["Subnets"][0]["AvailabilityZone"]
        except Exception:  # noqa: BLE001 - an unknown subnet: ParallelCluster reports it
            return self._az()

    def _free_cidr(self, vpc_cidr: str) -> str:
        used = [ipaddress.ip_network(s["CidrBlock"]) for s in self.ec2.describe_subnets()["Subnets"]]
        for candidate in ipaddress.ip_network(vpc_cidr).subnets(new_prefix=28):
            if not any(candidate.overlaps(u) for u in used):
                return str(candidate)
        raise RuntimeError(f"no free /28 left in {vpc_cidr} for a stand-in subnet")

    def _architecture(self, default: str = "x86_64") -> str:
        """The architecture of the head node's instance type (ParallelCluster checks every node against it)."""
        instance_type = str((self.config.get("HeadNode") or {}).get("InstanceType", "c5.large"))
        data = self.instance_type_data(instance_type)
        return data["ProcessorInfo"]["SupportedArchitectures"][0] if data else default

    # -- the instance-type catalogue (moto's data, see instance_catalogue.json) -----------------------
    def catalogue_types(self) -> dict[str, Any]:
        from moto.ec2.models.instance_types import INSTANCE_TYPES

        return INSTANCE_TYPES

    def instance_type_data(self, name: str) -> dict[str, Any] | None:
        return self.state["instance_types"].get(name) or self.catalogue_types().get(name)

    @staticmethod
    def catalogue_source() -> str:
        from instance_catalogue import record

        data = record()
        return f"{data['package']} {data['version']}, {data['data_date']}"

    # -- hooks: what moto lacks, one handler per AWS operation ----------------------------------------
    # Each ``_on_<service>_<Operation>`` answers from the simulated account's state; returning None lets moto
    # answer. Operations moto does not implement and no handler serves are recorded as gaps (see _gap).
    @staticmethod
    def _answer(body: dict[str, Any], status: int = 200) -> tuple[Any, dict[str, Any]]:
        from botocore.awsrequest import AWSResponse

        return AWSResponse("https://simulated", status, {}, None), {**body, "ResponseMetadata": {
            "HTTPStatusCode": status}}

    def _error(self, code: str, message: str) -> tuple[Any, dict[str, Any]]:
        return self._answer({"Error": {"Code": code, "Message": message}}, 400)

    def _lookup(self, table: str, wanted: list[str], code: str, message: str, key: str):
        missing = [i for i in wanted if i not in self.state[table]]
        if missing:
            return self._error(code, message.format(missing[0]))
        return self._answer({key: [self.state[table][i] for i in wanted]})

    def _on_fsx_DescribeFileSystems(self, params: dict[str, Any]):
        return self._lookup("file_systems", params.get("FileSystemIds") or list(self.state["file_systems"]),
                            "FileSystemNotFound", "File system '{}' does not exist.", "FileSystems")

    def _on_fsx_DescribeVolumes(self, params: dict[str, Any]):
        return self._lookup("volumes", params.get("VolumeIds") or [], "VolumeNotFound",
                            "Volume '{}' does not exist.", "Volumes")

    def _on_fsx_DescribeFileCaches(self, params: dict[str, Any]):
        return self._lookup("file_caches", params.get("FileCacheIds") or list(self.state["file_caches"]),
                            "FileCacheNotFound", "File cache '{}' does not exist.", "FileCaches")

    def _on_fsx_DescribeBackups(self, params: dict[str, Any]):
        return self._lookup("backups", params.get("BackupIds") or [], "BackupNotFound",
                            "Backup '{}' does not exist.", "Backups")

    def _on_fsx_DescribeStorageVirtualMachines(self, params: dict[str, Any]):
        return self._lookup("svms", params.get("StorageVirtualMachineIds") or [], "StorageVirtualMachineNotFound",
                            "Storage virtual machine '{}' does not exist.", "StorageVirtualMachines")

    def _on_ec2_DescribeCapacityReservations(self, params: dict[str, Any]):
        return self._lookup("capacity_reservations",
                            params.get("CapacityReservationIds") or list(self.state["capacity_reservations"]),
                            "InvalidCapacityReservationId.NotFound",
                            "The capacity reservation ID '{}' does not exist", "CapacityReservations")

    def _on_ec2_DescribeCapacityBlockStatus(self, params: dict[str, Any]):
        blocks = [r for r in self.state["capacity_reservations"].values() if r["ReservationType"] == "capacity-block"]
        wanted = params.get("CapacityBlockIds")
        return self._answer({"CapacityBlockStatuses": [
            {"CapacityBlockId": r["CapacityReservationId"], "InterconnectStatus": "ok",
             "TotalCapacity": r["TotalInstanceCount"], "TotalAvailableCapacity": r["AvailableInstanceCount"],
             "TotalUnavailableCapacity": 0} for r in blocks if not wanted or r["CapacityReservationId"] in wanted]})

    def _on_ec2_DescribePlacementGroups(self, params: dict[str, Any]):
        groups = self.state["placement_groups"]
        wanted = [g for g in groups.values() if g["GroupName"] in (params.get("GroupNames") or [])
                  or g["GroupId"] in (params.get("GroupIds") or [])]
        asked = (params.get("GroupNames") or []) + (params.get("GroupIds") or [])
        if len(wanted) < len(asked):
            missing = next(a for a in asked if all(a not in (g["GroupName"], g["GroupId"]) for g in wanted))
            return self._error("InvalidPlacementGroup.Unknown", f"The Placement Group '{missing}' is unknown.")
        return self._answer({"PlacementGroups": wanted if asked else list(groups.values())})

    def _stood_in(self, table: str, wanted: list[str], key: str):
        """Stand-ins answer for themselves; anything else is moto's (created by the templates, or not found)."""
        if wanted and all(v in self.state[table] for v in wanted):
            return self._answer({key: [self.state[table][v] for v in wanted]})
        return None

    def _on_ec2_DescribeVolumes(self, params: dict[str, Any]):
        return self._stood_in("ebs_volumes", params.get("VolumeIds") or [], "Volumes")

    def _on_ec2_DescribeSnapshots(self, params: dict[str, Any]):
        return self._stood_in("snapshots", params.get("SnapshotIds") or [], "Snapshots")

    def _on_ec2_DescribeAddresses(self, params: dict[str, Any]):
        return self._stood_in("addresses", params.get("PublicIps") or [], "Addresses")

    def _on_ec2_DescribeInstanceTypes(self, params: dict[str, Any]):
        # Every named type from the catalogue (or a stand-in), as moto would, without its serializer.
        wanted = params.get("InstanceTypes") or []
        if not wanted or params.get("Filters"):
            return None
        if any(self.instance_type_data(t) is None for t in wanted):
            return None  # moto's InvalidInstanceType
        return self._answer({"InstanceTypes": [copy.deepcopy(self.instance_type_data(t)) for t in wanted]})

    def _on_route_53_GetHostedZone(self, params: dict[str, Any]):
        zone = self.state["hosted_zones"].get(str(params.get("Id", "")).rsplit("/", 1)[-1])
        if zone is None:
            return self._error("NoSuchHostedZone", f"No hosted zone found with ID: {params.get('Id')}")
        return self._answer(copy.deepcopy(zone))

    def _on_resource_groups_ListGroupResources(self, params: dict[str, Any]):
        group = params.get("Group") or params.get("GroupName")
        if group not in self.state["reservation_groups"]:
            return self._error("NotFoundException", f"Cannot find group {group}.")
        return self._answer({"Resources": [{"Identifier": {
            "ResourceType": "AWS::EC2::CapacityReservation",
            "ResourceArn": self.state["capacity_reservations"][r]["CapacityReservationArn"]}}
            for r in self.state["reservation_groups"][group]]})

    def _on_resource_groups_GetGroupConfiguration(self, params: dict[str, Any]):
        group = params.get("Group")
        if group not in self.state["reservation_groups"]:
            return self._error("NotFoundException", f"Cannot find group {group}.")
        return self._answer({"GroupConfiguration": {"Status": "UPDATE_COMPLETE", "Configuration": [
            {"Type": "AWS::EC2::CapacityReservationPool"},
            {"Type": "AWS::ResourceGroups::Generic", "Parameters": [
                {"Name": "allowed-resource-types", "Values": ["AWS::EC2::CapacityReservation"]}]}]}})

    def _on_secrets_manager_DescribeSecret(self, params: dict[str, Any]):
        arn = params.get("SecretId", "")
        if arn not in self.state["secrets"]:
            return self._error("ResourceNotFoundException", "Secrets Manager can't find the specified secret.")
        return self._answer({"ARN": arn, "Name": arn.rsplit(":", 1)[-1]})

    def _on_secrets_manager_GetSecretValue(self, params: dict[str, Any]):
        arn = params.get("SecretId", "")
        if arn not in self.state["secrets"]:
            return self._error("ResourceNotFoundException", "Secrets Manager can't find the specified secret.")
        # A well-formed munge key (base64 of 128 bytes): the real one is checked at deploy time.
        return self._answer({"ARN": arn, "Name": arn.rsplit(":", 1)[-1], "SecretString": "QUFB" * 43 + "QQ=="})

    def _on_ssm_GetParameter(self, params: dict[str, Any]):
        name = params.get("Name", "")
        if not any(name == s or s.endswith(f":parameter{name}") or s.endswith(f":parameter/{name}")
                   for s in self.state["secrets"]):
            return self._error("ParameterNotFound", f"Parameter {name} not found.")
        return self._answer({"Parameter": {"Name": name, "Type": "SecureString", "Value": "stand-in"}})

    def _on_kms_DescribeKey(self, params: dict[str, Any]):
        key = params.get("KeyId", "")
        if key not in self.state["kms"]:
            return self._error("NotFoundException", f"Key '{key}' does not exist")
        return self._answer({"KeyMetadata": {"KeyId": key, "Arn": key, "Enabled": True, "KeyState": "Enabled"}})

    def _on_iam_GetPolicy(self, params: dict[str, Any]):
        arn = params.get("PolicyArn", "")
        if arn in self.state["policies"] or _aws_managed_policy_exists(arn):
            return self._answer({"Policy": {"PolicyName": arn.rsplit("/", 1)[-1], "Arn": arn, "DefaultVersionId": "v1",
                                            "AttachmentCount": 0, "IsAttachable": True}})
        if ":iam::aws:policy/" in arn:
            return self._error("NoSuchEntity", f"Policy {arn} does not exist or is not attachable.")
        return None  # moto answers (policies created in the account, or not found)

    def _on_efs_DescribeFileSystems(self, params: dict[str, Any]):
        wanted = params.get("FileSystemId")
        if wanted and wanted not in self.state["efs"]:
            return self._error("FileSystemNotFound", f"File system '{wanted}' does not exist.")
        return self._answer({"FileSystems": [{"FileSystemId": i, "LifeCycleState": "available", "Encrypted": True}
                                             for i in ([wanted] if wanted else list(self.state["efs"]))]})

    def _on_efs_DescribeMountTargets(self, params: dict[str, Any]):
        fs = self.state["efs"].get(params.get("FileSystemId", ""))
        if not fs:
            return self._answer({"MountTargets": []})
        details = self.ec2.describe_subnets(SubnetIds=[fs["subnet"]])["Subnets"][0]
        return self._answer({"MountTargets": [{"MountTargetId": f"fsmt-{params['FileSystemId'][3:]}",
                                               "FileSystemId": params["FileSystemId"], "SubnetId": fs["subnet"],
                                               "LifeCycleState": "available", "AvailabilityZoneName":
                                                   details["AvailabilityZone"], "VpcId": details["VpcId"]}]})

    def _on_efs_DescribeMountTargetSecurityGroups(self, params: dict[str, Any]):
        fs = self.state["efs"].get(f"fs-{params.get('MountTargetId', '')[5:]}")
        return self._answer({"SecurityGroups": [fs["group"]] if fs else []})

    def _on_cloudformation_DescribeStacks(self, params: dict[str, Any]):
        return self._error("ValidationError", f"Stack with id {params.get('StackName')} does not exist")

    def _hooks(self, events: Any) -> None:
        def remember(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
            context["simulated_params"] = copy.deepcopy(params)

        def reply(handler):
            def hook(context: dict[str, Any], **_: Any):
                return handler(context.get("simulated_params", {}))
            return hook

        def instance_store_free(params: dict[str, Any], **_: Any) -> None:
            # moto rejects instance-store mappings and size-less EBS in RunInstances; EC2 accepts both.
            mappings = []
            for mapping in params.get("BlockDeviceMappings") or []:
                if "VirtualName" in mapping or "NoDevice" in mapping:
                    continue
                mapping.setdefault("Ebs", {}).setdefault("VolumeSize", 8)
                mappings.append(mapping)
            if "BlockDeviceMappings" in params:
                params["BlockDeviceMappings"] = mappings

        # moto answers the offerings from its static data, the same in every account: each distinct call is
        # serialized and parsed once per worker (the full offering list is 1,400 entries in 2 pages); the
        # account's stand-in instance types are added to each answer.
        def static_key(context: dict[str, Any], operation: str) -> str:
            return f"{operation} {json.dumps(context.get('simulated_params', {}), sort_keys=True, default=str)}"

        def static_answer(context: dict[str, Any], **_: Any):
            known = self.static_answers.get(static_key(context, OFFERINGS))
            return None if known is None else (self._answer({})[0], copy.deepcopy(known))

        def keep_static_answer(context: dict[str, Any], http_response: Any, parsed: dict[str, Any], **_: Any) -> None:
            if http_response.status_code != 200:
                return
            self.static_answers.setdefault(static_key(context, OFFERINGS), copy.deepcopy(parsed))
            if not parsed.get("NextToken"):
                params = context.get("simulated_params", {})
                location_type = params.get("LocationType", "region")
                locations = [v for f in params.get("Filters") or [] if f.get("Name") == "location"
                             for v in f.get("Values", [])] or [self.region if location_type == "region" else self._az()]
                parsed.setdefault("InstanceTypeOfferings", []).extend(
                    {"InstanceType": name, "LocationType": location_type, "Location": location}
                    for name in self.state["instance_types"] for location in locations)

        events.register(f"before-parameter-build.ec2.{OFFERINGS}", remember)
        events.register(f"before-call.ec2.{OFFERINGS}", static_answer)
        events.register(f"after-call.ec2.{OFFERINGS}", keep_static_answer)
        for name in dir(self):
            if name.startswith("_on_"):
                service, operation = name[len("_on_"):].rsplit("_", 1)
                service = service.replace("_", "-")
                events.register(f"before-parameter-build.{service}.{operation}", remember)
                events.register(f"before-call.{service}.{operation}", reply(getattr(self, name)))
        events.register("before-parameter-build.ec2.RunInstances", instance_store_free)

    def _record_gaps(self) -> None:
        """An AWS call neither moto nor a handler here answers is a gap of the simulation, not a finding about
        the config: it is recorded with the validator that made it (see dry_run), and answered with an error."""
        from moto.core.botocore_stubber import BotocoreStubber

        if getattr(BotocoreStubber.process_request, "records_gaps", False):
            return
        original = BotocoreStubber.process_request
        simulator = self

        def process_request(stubber: Any, request: Any):
            try:
                answer = original(stubber, request)
            except NotImplementedError as error:
                answer = (404, {}, str(error))
            if answer is not None and answer[0] == 404 and (answer[2] == "Not yet implemented"
                                                             or "has not been implemented" in str(answer[2])):
                target = request.headers.get("X-Amz-Target", b"")
                operation = target.decode() if isinstance(target, bytes) else str(target)
                simulator.gaps.append({"validator": simulator.current_validator,
                                       "operation": operation or request.url.split("?")[0],
                                       "detail": str(answer[2])})
                return 400, {}, "NotCheckedOffline"
            return answer

        process_request.records_gaps = True  # type: ignore[attr-defined]
        BotocoreStubber.process_request = process_request

    # -- ParallelCluster's validation, with each finding tied to the config object it came from ------------
    def _attribution(self) -> None:
        from pcluster.config.common import Resource

        self.findings: list[tuple[Any, Any]] = []
        self.validators: dict[str, int] = {}
        self.root: Any = None
        original_self, original_execute = Resource._validate_self, Resource._validator_execute
        simulator = self

        async def tagged(future, resource):
            results = await future
            for result in results or []:
                simulator.findings.append((resource, result))
            return results

        def validate_self(resource, context, suppressors):
            failures, futures = len(resource._validation_failures), len(resource._validation_futures)
            original_self(resource, context, suppressors)
            for failure in resource._validation_failures[failures:]:
                simulator.findings.append((resource, failure))
            added = resource._validation_futures[futures:]
            del resource._validation_futures[futures:]
            resource._validation_futures.extend(tagged(f, resource) for f in added)
            if type(resource).__name__.endswith("ClusterConfig"):
                simulator.root = resource

        def execute(validator_class, validator_args, suppressors, validation_executor):
            name = validator_class.__name__.removeprefix("AsyncTimed")
            simulator.validators[name] = simulator.validators.get(name, 0) + 1
            simulator.current_validator = name
            try:
                result = original_execute(validator_class, validator_args, suppressors, validation_executor)
            finally:
                simulator.current_validator = None
            if asyncio.iscoroutine(result):  # an async validator runs later: name it while it runs
                async def named(coroutine=result):
                    simulator.current_validator = name
                    try:
                        return await coroutine
                    finally:
                        simulator.current_validator = None
                return named()
            return result

        Resource._validate_self = validate_self
        Resource._validator_execute = staticmethod(execute)

    def dry_run(self, cluster_name: str, config: dict[str, Any]) -> dict[str, Any]:
        import pcluster.lib as pc
        from pcluster.api.errors import (BadRequestException, CreateClusterBadRequestException,
                                         DryrunOperationException)

        ids = self.state["ids"]
        real_config = _replace(config, ids)
        self.findings, self.validators, self.root, self.gaps = [], {}, None, []
        # Each config has its own stand-ins (a reservation id may stand for another type in the next config):
        # nothing ParallelCluster cached for the previous one may answer for this one.
        from pcluster.aws.aws_api import AWSApi
        from pcluster.aws.common import Cache

        AWSApi.reset()
        Cache.clear_all()
        asyncio.set_event_loop(asyncio.new_event_loop())
        problem = None
        started = time.monotonic()
        try:
            pc.create_cluster(cluster_name=cluster_name, cluster_configuration=real_config, dryrun=True)
            problem = "create_cluster returned without a dry-run answer"
        except DryrunOperationException:
            pass
        except CreateClusterBadRequestException as error:
            content = error.content
            if not getattr(content, "configuration_validation_errors", None):
                problem = getattr(content, "message", str(error))
        except BadRequestException as error:
            problem = getattr(error.content, "message", str(error))
        except Exception as error:  # noqa: BLE001 - the machinery failed, not the config: say where
            where = f"validator {self.current_validator}" if self.current_validator else "loading the config"
            raise MachineryError(f"{type(error).__name__}: {error}", f"ParallelCluster's {where}") from error
        reverse = {real: simulated for simulated, real in ids.items()}
        paths = _paths(self.root, config) if self.root is not None else {}
        findings = []
        seen = set()
        for resource, result in self.findings:
            entry = (result.level.name, result.validator_type, _replace(result.message, reverse))
            if entry in seen:
                continue
            seen.add(entry)
            findings.append({"level": entry[0], "type": entry[1], "message": entry[2],
                             "path": paths.get(id(resource), [])})
        if problem:
            findings.append({"level": "ERROR", "type": "ConfigurationLoad", "message": _replace(problem, reverse),
                             "path": []})
        for finding in findings:
            self._explain(finding)
        return {"findings": findings, "validators": len(self.validators), "runs": sum(self.validators.values()),
                "seconds": round(time.monotonic() - started, 3)}


    def _explain(self, finding: dict[str, Any]) -> None:
        """What only the simulation knows about a finding: a gap it could not serve turns an ERROR into a WARNING,
        and an unknown or unoffered instance type gets its closest names or the regions that offer it."""
        gaps = [g for g in self.gaps if g["validator"] == finding["type"]
                or (finding["type"] == "ConfigurationLoad" and g["validator"] is None)]
        if gaps and finding["level"] == "ERROR":
            operations = ", ".join(sorted({g["operation"] for g in gaps}))
            finding.update(level="WARNING", message=(
                f"not checked offline: {finding['type']} needs {operations}, which the offline simulation does not "
                f"answer; ParallelCluster checks it at deploy time (offline it said: {finding['message']})"))
            return
        from instance_catalogue import closest

        guessed = [t for t in self.state["instance_types"] if re.search(rf"(?<![\w.-]){re.escape(t)}(?![\w-])",
                                                                         finding["message"])]
        if guessed and finding["level"] == "ERROR":
            finding.update(level="WARNING", message=(
                f"not checked offline: {guessed[0]} is not in the instance-type catalogue ({self.catalogue_source()}), "
                f"so its data is a guess; ParallelCluster checks it at deploy time (offline it said: "
                f"{finding['message']})"))
            return
        unknown = re.search(r"instance types do not exist: \[([^\]]*)\]", finding["message"])
        if unknown:
            names = [n.strip(" '\"") for n in unknown.group(1).split(",")]
            hints = [f"{n}: did you mean {' or '.join(close)}?" for n in names
                     if (close := closest(n, self.catalogue_types()))]
            finding["fix"] = "; ".join(hints) or "use an instance type EC2 offers (aws ec2 describe-instance-types)"
        unoffered = re.search(r"instance type '([^']+)' is not supported", finding["message"])
        if unoffered and self.instance_type_data(unoffered.group(1)):
            regions = _regions_offering(unoffered.group(1))
            finding["fix"] = (f"EC2 does not offer {unoffered.group(1)} in {self.region} (catalogue: "
                              f"{self.catalogue_source()}); it is offered in: {', '.join(regions) or 'no region'}. "
                              "Set -c availability_zone to a zone of one of those regions, or choose another type")

    def cluster_template(self, cluster_name: str, config: dict[str, Any]) -> dict[str, Any]:
        """The CloudFormation templates ParallelCluster itself generates for this cluster (its nodes' IAM roles
        and policies among them): ``create_cluster`` runs for real, and the CreateStack call is captured."""
        import pcluster.lib as pc
        from botocore.awsrequest import AWSResponse
        from pcluster.models.s3_bucket import S3Bucket

        captured: dict[str, Any] = {}
        events = self.boto3.DEFAULT_SESSION.events

        def remember(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
            captured.update(params)

        def created(**_: Any):
            return AWSResponse("https://simulated", 200, {}, None), {
                "StackId": f"arn:aws:cloudformation:{self.region}:123456789012:stack/{cluster_name}/simulated",
                "ResponseMetadata": {"HTTPStatusCode": 200}}

        def no_bucket_policy(**_: Any):  # moto would then deny its own plain-HTTP requests
            return AWSResponse("https://simulated", 204, {}, None), {"ResponseMetadata": {"HTTPStatusCode": 204}}

        bucket = S3Bucket.get_bucket_name("123456789012", self.region)
        self.s3.create_bucket(Bucket=bucket)
        self.s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        hooks = (("before-parameter-build.cloudformation.CreateStack", remember),
                 ("before-call.cloudformation.CreateStack", created), ("before-call.s3.PutBucketPolicy", no_bucket_policy))
        for event, hook in hooks:
            events.register(event, hook)
        try:
            asyncio.set_event_loop(asyncio.new_event_loop())
            pc.create_cluster(cluster_name=cluster_name, cluster_configuration=_replace(config, self.state["ids"]),
                              wait=False)
        finally:
            for event, hook in hooks:
                events.unregister(event, hook)
        key = captured["TemplateURL"].split(".amazonaws.com/", 1)[1]
        reverse = {real: simulated for simulated, real in self.state["ids"].items()}
        prefix = key.split("/templates/", 1)[0] + "/assets/"  # nested stacks (the queues) are template assets

        def text(object_key: str) -> str:
            return _replace(self.s3.get_object(Bucket=bucket, Key=object_key)["Body"].read().decode(), reverse)

        nested = [text(o["Key"]) for o in self.s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]
        return {"template": text(key), "nested": nested}


class MachineryError(Exception):
    """The validation machinery itself failed (a bug of the simulation), while checking ``where``."""

    def __init__(self, message: str, where: str) -> None:
        super().__init__(message)
        self.where = where


def _file_system_of(volume_id: str) -> str:
    return "fs-0" + volume_id.split("-", 1)[1][-16:].rjust(16, "0")


def _regions_offering(instance_type: str) -> list[str]:
    from moto.ec2.models.instance_types import INSTANCE_TYPE_OFFERINGS

    return sorted(region for region, offers in INSTANCE_TYPE_OFFERINGS["region"].items()
                  if any(o["InstanceType"] == instance_type for o in offers))


def _canonical(account: dict[str, Any]) -> str:
    return json.dumps(account, sort_keys=True, default=str)


def _aws_managed_policy_exists(arn: str) -> bool:
    """AWS managed policies, from moto's copy of their list, looked up in its text: loading all of them
    into moto's IAM would cost more than the rest of the account together."""
    match = re.fullmatch(r"arn:aws[a-z-]*:iam::aws:policy(/(?:.+/)?)([^/]+)", arn)
    if not match:
        return False
    from moto.iam.aws_managed_policies import aws_managed_policies_data

    found = re.search(rf'\n "{re.escape(match.group(2))}":\{{.*?\n  "Path":"([^"]*)"', aws_managed_policies_data,
                      re.DOTALL)
    return bool(found) and found.group(1) == match.group(1)


# Config keys (``Parent.Key`` where the key alone is ambiguous) whose literal values name something outside
# our templates that ParallelCluster looks up; each kind has a ``_stand_in_<kind>`` method. lookups.yaml
# lists every lookup of ParallelCluster's validators with the keys feeding it; a test keeps the two in step.
_REFERENCE_KINDS = {
    "SubnetId": "subnet", "SubnetIds": "subnet", "SecurityGroups": "security_group",
    "AdditionalSecurityGroups": "security_group", "SecurityGroupIds": "security_group",
    "CapacityReservationId": "capacity_reservation",
    "CapacityReservationResourceGroupArn": "capacity_reservation_group",
    "CustomAmi": "ami", "KeyName": "key_pair", "InstanceRole": "role", "LambdaFunctionsRole": "role",
    "InstanceProfile": "instance_profile", "Policy": "policy", "PermissionsBoundary": "policy",
    "PasswordSecretArn": "secret", "MungeKeySecretArn": "munge_key_secret", "KmsKeyId": "kms_key",
    "FsxLustreSettings.FileSystemId": "fsx_file_system", "FsxLustreSettings.BackupId": "fsx_backup",
    "FsxOpenZfsSettings.VolumeId": "fsx_volume", "FsxOntapSettings.VolumeId": "fsx_ontap_volume",
    "FileCacheSettings.FileCacheId": "file_cache", "EfsSettings.FileSystemId": "efs",
    "EbsSettings.VolumeId": "ebs_volume", "EbsSettings.SnapshotId": "ebs_snapshot",
    "PlacementGroup.Name": "placement_group", "PlacementGroup.Id": "placement_group",
    "CustomS3Bucket": "bucket", "ImportPath": "bucket_url", "ExportPath": "bucket_url",
    "DataRepositoryPath": "bucket_url", "HostedZoneId": "hosted_zone", "ElasticIp": "elastic_ip",
    "InstanceType": "instance_type",
}
_LIST_KEYS = ("SubnetIds", "SecurityGroups", "AdditionalSecurityGroups", "SecurityGroupIds")


def _references(data: Any, path: tuple = (), parent_key: str = "", queue: dict[str, Any] | None = None):
    """(path, key, value, the mapping holding it, its queue) for every scalar a stand-in may be needed for."""
    if isinstance(data, dict):
        if path[:2] == ("Scheduling", "SlurmQueues") and len(path) == 3:
            queue = data
        for key, value in data.items():
            qualified = f"{parent_key}.{key}" if parent_key else key
            name = qualified if qualified in _REFERENCE_KINDS else key
            if isinstance(value, (dict, list)) and name not in _LIST_KEYS:
                yield from _references(value, (*path, key), key, queue)
            elif isinstance(value, list):
                for index, item in enumerate(value):
                    yield list((*path, key, index)), name, item, data, queue
            else:
                yield list((*path, key)), name, value, data, queue
    elif isinstance(data, list):
        for index, item in enumerate(data):
            yield from _references(item, (*path, index), parent_key, queue)


def _replace(data: Any, mapping: dict[str, str]) -> Any:
    if not mapping:
        return data
    pattern = re.compile("|".join(re.escape(k) for k in sorted(mapping, key=len, reverse=True)))
    if isinstance(data, str):
        return pattern.sub(lambda m: mapping[m.group(0)], data)
    return json.loads(pattern.sub(lambda m: mapping[m.group(0)], json.dumps(data)))


def _data_keys() -> dict[str, set[str]]:
    """Attribute name -> the YAML keys ParallelCluster's schemas read it from (``queues`` -> ``SlurmQueues``)."""
    from pcluster.schemas.cluster_schema import ClusterSchema

    keys: dict[str, set[str]] = {}
    seen: set[type] = set()

    def walk(schema: Any) -> None:
        if type(schema) in seen:
            return
        seen.add(type(schema))
        for name, field in schema.fields.items():
            keys.setdefault(name, set()).add(field.data_key or name)
            field = getattr(field, "inner", field)
            nested = getattr(field, "schema", None)
            if nested is not None:
                walk(nested)

    walk(ClusterSchema(cluster_name="simulated"))
    return keys


def _paths(root: Any, config: dict[str, Any]) -> dict[int, list[Any]]:
    """id(config object) -> its path in the YAML (``["Scheduling", "SlurmQueues", 0]``), found by walking
    the objects and the config they were loaded from together."""
    from pcluster.config.common import Resource
    from pcluster.utils import to_pascal_case

    data_keys = _data_keys()
    paths: dict[int, list[Any]] = {}

    def walk(resource: Any, node: Any, path: list[Any]) -> None:
        if id(resource) in paths:
            return
        paths[id(resource)] = path
        for attribute, value in vars(resource).items():
            if attribute.startswith("_") or not isinstance(node, dict):
                continue
            candidates = data_keys.get(attribute, set()) | {to_pascal_case(attribute)}
            key = next((k for k in sorted(candidates) if k in node), None)
            if key is None:  # loaded under another name: queues <- SlurmQueues, settings <- SlurmSettings
                plain = attribute.replace("_", "").lower()
                suffixed = [k for k in node if k.lower().endswith(plain)]
                key = suffixed[0] if len(suffixed) == 1 else None
            if key is None:
                continue  # a default the YAML does not spell out
            if isinstance(value, Resource):
                walk(value, node[key], [*path, key])
            elif isinstance(value, list) and isinstance(node[key], list):
                for index, item in enumerate(value):
                    if isinstance(item, Resource) and index < len(node[key]):
                        walk(item, node[key][index], [*path, key, index])

    walk(root, config, [])
    return paths
