"""The AWS account as our synthesized templates will leave it, described for ParallelCluster's own
validators (run offline in .venv-pcluster-<version> against moto, see pcluster_sidecar/account.py).

Every resource the templates create gets a stable simulated id derived from its stack and logical id
(``subnet-0…`` with 17 hex digits, as the real ones), and the cluster config of ClusterStack is
resolved against them: ``Fn::GetStackOutput``, ``Ref``, ``Fn::GetAtt``, ``Fn::Sub``… become the ids,
names and ARNs the real deploy would produce. So ParallelCluster validates exactly the config in
the template, wired to exactly the subnets, security groups (with their rules), file systems, key
pair, buckets and policies the templates define.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Iterator

SIMULATED_ACCOUNT = "123456789012"
PARTITION, URL_SUFFIX = "aws", "amazonaws.com"
ID_PREFIXES = {
    "AWS::EC2::VPC": "vpc", "AWS::EC2::Subnet": "subnet", "AWS::EC2::SecurityGroup": "sg",
    "AWS::EC2::InternetGateway": "igw", "AWS::EC2::NatGateway": "nat", "AWS::EC2::RouteTable": "rtb",
    "AWS::EC2::VPCEndpoint": "vpce", "AWS::FSx::FileSystem": "fs", "AWS::EC2::PlacementGroup": "pg",
    "AWS::EC2::LaunchTemplate": "lt",
}


class SimulationError(Exception):
    """A template construct the simulation does not understand (a bug to fix here, not user input)."""


def simulated_id(prefix: str, *parts: str) -> str:
    return f"{prefix}-0{hashlib.sha256('/'.join(parts).encode()).hexdigest()[:16]}"


@dataclass
class Simulation:
    """``account``: what pcluster_sidecar/account.py creates in moto. ``configs``: each cluster stack's cluster
    configuration with intrinsics resolved (``cluster_names``: the name of each, in the same order).
    ``names``: simulated id -> what a user recognizes."""

    account: dict[str, Any]
    configs: list[dict[str, Any]] = field(default_factory=list)
    cluster_names: list[str] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)
    values: dict[str, str] = field(default_factory=dict)  # PrereqStack output name -> simulated value

    def readable(self, text: str) -> str:
        """``text`` with simulated ids followed by what they stand for: ``subnet-0ab… (${PublicSubnet})``."""
        names = {k: v for k, v in self.names.items() if len(k) >= 6}
        if not names:
            return text
        pattern = re.compile("|".join(re.escape(k) for k in sorted(names, key=len, reverse=True)))
        return pattern.sub(lambda m: f"{m.group(0)} ({names[m.group(0)]})", text)


class Templates:
    """Synthesized templates by stack name, with CloudFormation's intrinsic functions evaluated against
    simulated physical ids."""

    def __init__(self, templates: dict[str, dict[str, Any]], region: str, account: str = SIMULATED_ACCOUNT) -> None:
        self.templates, self.region, self.account = templates, region, account

    def resources(self, stack: str, type_: str | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        for logical, resource in self.templates[stack].get("Resources", {}).items():
            if type_ is None or resource.get("Type") == type_:
                yield logical, resource

    def resource(self, stack: str, logical: str) -> dict[str, Any]:
        try:
            return self.templates[stack]["Resources"][logical]
        except KeyError:
            raise SimulationError(f"{stack} has no resource {logical}") from None

    def props(self, stack: str, logical: str) -> dict[str, Any]:
        return self.resolve(stack, self.resource(stack, logical).get("Properties", {}))

    # -- physical ids and attributes --------------------------------------------------------------
    def ref(self, stack: str, logical: str) -> Any:
        pseudo = {"AWS::AccountId": self.account, "AWS::Partition": PARTITION, "AWS::Region": self.region,
                  "AWS::URLSuffix": URL_SUFFIX, "AWS::StackName": stack, "AWS::NoValue": None,
                  "AWS::StackId": f"arn:{PARTITION}:cloudformation:{self.region}:{self.account}:stack/{stack}/sim"}
        if logical in pseudo:
            return pseudo[logical]
        parameters = self.templates[stack].get("Parameters", {})
        if logical in parameters:
            return parameters[logical].get("Default", "")
        resource = self.resource(stack, logical)
        type_, props = resource["Type"], resource.get("Properties", {})
        if type_ in ID_PREFIXES:
            return simulated_id(ID_PREFIXES[type_], stack, logical)
        if type_ == "AWS::EC2::KeyPair":
            return self.resolve(stack, props["KeyName"])
        if type_ == "AWS::S3::Bucket":
            return self.resolve(stack, props["BucketName"]) if "BucketName" in props else self.bucket_name(stack, logical)
        if type_ == "AWS::IAM::ManagedPolicy":
            name = self.resolve(stack, props["ManagedPolicyName"]) if "ManagedPolicyName" in props else \
                f"{stack}-{logical}-sim"
            return f"arn:{PARTITION}:iam::{self.account}:policy{props.get('Path', '/')}{name}"
        if type_ == "AWS::IAM::Role":
            return self.resolve(stack, props["RoleName"]) if "RoleName" in props else f"{stack}-{logical}-sim"
        if type_ == "AWS::SecretsManager::Secret":
            return f"arn:{PARTITION}:secretsmanager:{self.region}:{self.account}:secret:{stack}-{logical}-AbCdEf"
        if type_ == "AWS::EC2::EIP":
            return "198.51.100.1"
        return f"{stack}-{logical}-sim"

    def bucket_name(self, stack: str, logical: str) -> str:
        # CloudFormation's generated names: lower-case stack and logical id plus a random suffix.
        return f"{stack}-{logical}"[:48].lower() + "-" + hashlib.sha256(f"{stack}/{logical}".encode()).hexdigest()[:12]

    def get_att(self, stack: str, logical: str, attribute: str) -> Any:
        resource = self.resource(stack, logical)
        type_ = resource["Type"]
        ident = self.ref(stack, logical)
        if type_ == "AWS::EC2::SecurityGroup" and attribute == "GroupId":
            return ident
        if type_ == "AWS::EC2::VPC" and attribute == "CidrBlock":
            return self.props(stack, logical)["CidrBlock"]
        if type_ == "AWS::EC2::Subnet" and attribute in ("SubnetId", "AvailabilityZone", "CidrBlock"):
            return ident if attribute == "SubnetId" else self.props(stack, logical).get(attribute)
        if type_ == "AWS::EC2::EIP" and attribute == "AllocationId":
            return simulated_id("eipalloc", stack, logical)
        if type_ == "AWS::FSx::FileSystem":
            return {"DNSName": f"{ident}.fsx.{self.region}.{URL_SUFFIX}",
                    "LustreMountName": hashlib.sha256(ident.encode()).hexdigest()[:8],
                    "RootVolumeId": simulated_id("fsvol", stack, logical),
                    "ResourceARN": f"arn:{PARTITION}:fsx:{self.region}:{self.account}:file-system/{ident}",
                    }.get(attribute) or self._unknown_attribute(stack, logical, attribute)
        if type_ == "AWS::EC2::KeyPair" and attribute == "KeyPairId":
            return simulated_id("key", stack, logical)
        if type_ == "AWS::S3::Bucket":
            return {"Arn": f"arn:{PARTITION}:s3:::{ident}", "DomainName": f"{ident}.s3.{URL_SUFFIX}",
                    "RegionalDomainName": f"{ident}.s3.{self.region}.{URL_SUFFIX}"}.get(attribute) or \
                self._unknown_attribute(stack, logical, attribute)
        if type_ == "AWS::IAM::Role" and attribute == "Arn":
            return f"arn:{PARTITION}:iam::{self.account}:role/{ident}"
        if type_ == "AWS::IAM::ManagedPolicy" and attribute == "PolicyArn":
            return ident
        if type_ == "AWS::RDS::DBCluster":
            return {"Endpoint.Address": f"{logical.lower()}.cluster-sim.{self.region}.rds.{URL_SUFFIX}",
                    "Endpoint.Port": "3306"}.get(attribute) or self._unknown_attribute(stack, logical, attribute)
        if type_ == "AWS::CloudFormation::Stack" and attribute.startswith("Outputs."):
            return f"{stack}-{logical}-{attribute[len('Outputs.'):]}-sim"
        if attribute.endswith("Arn"):  # an ARN of the resource's own service, well-formed for IAM documents
            service = type_.split("::")[1].lower() if type_.count("::") == 2 else "cloudformation"
            return f"arn:{PARTITION}:{service}:{self.region}:{self.account}:{type_.split('::')[-1].lower()}/{ident}"
        return f"{stack}-{logical}-{attribute}-sim"

    @staticmethod
    def _unknown_attribute(stack: str, logical: str, attribute: str) -> Any:
        raise SimulationError(f"{stack}/{logical}: attribute {attribute} is not simulated")

    def output(self, stack: str, name: str) -> Any:
        outputs = self.templates.get(stack, {}).get("Outputs", {})
        if name not in outputs:
            raise SimulationError(f"{stack} has no output {name}")
        return self.resolve(stack, outputs[name]["Value"])

    # -- intrinsic functions ----------------------------------------------------------------------
    def resolve(self, stack: str, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(stack, v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), = value.items()
            if key == "Ref":
                return self.ref(stack, arg)
            if key == "Fn::GetAtt":
                logical, attribute = (arg if isinstance(arg, list) else arg.split(".", 1))
                return self.get_att(stack, logical, self.resolve(stack, attribute))
            if key == "Fn::GetStackOutput":
                return self.output(arg["StackName"], arg["OutputName"])
            if key == "Fn::ImportValue":
                return self._import(self.resolve(stack, arg))
            if key == "Fn::Join":
                separator, parts = arg
                return separator.join(str(p) for p in self.resolve(stack, parts))
            if key == "Fn::Sub":
                return self._sub(stack, arg)
            if key == "Fn::Select":
                index, items = self.resolve(stack, arg)
                return items[int(index)]
            if key == "Fn::Split":
                separator, text = self.resolve(stack, arg)
                return text.split(separator)
            if key == "Fn::GetAZs":
                return [f"{self.region}{letter}" for letter in "abc"]
            if key.startswith("Fn::") or key == "Condition":
                raise SimulationError(f"{stack}: intrinsic {key} is not simulated")
        return {k: self.resolve(stack, v) for k, v in value.items()}

    def _import(self, export_name: str) -> Any:
        for stack, template in self.templates.items():
            for output in template.get("Outputs", {}).values():
                if output.get("Export", {}).get("Name") == export_name:
                    return self.resolve(stack, output["Value"])
        raise SimulationError(f"no stack exports {export_name}")

    def _sub(self, stack: str, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(stack, arg[1]))

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                logical, attribute = name.split(".", 1)
                return str(self.get_att(stack, logical, attribute))
            return str(self.ref(stack, name))

        return re.sub(r"\$\{([^}]+)\}", replace, text)


# -- the account description ------------------------------------------------------------------------
def simulate(templates: dict[str, dict[str, Any]], region: str, *, objects: dict[str, list[str]] | None = None,
             readable_outputs: str = "PrereqStack") -> Simulation:
    """The account our templates create, plus the cluster configs of ``Custom::PclusterCluster``
    resources resolved against it. ``objects``: S3 keys a deployment writes, by bucket logical id
    (``Stack/Logical``); custom resources that write objects cannot be read from the template."""
    t = Templates(templates, region)
    account: dict[str, Any] = {"region": region, "account": t.account, "vpcs": [], "subnets": [],
                               "internet_gateways": [], "nat_gateways": [], "route_tables": [],
                               "vpc_endpoints": [], "security_groups": [], "file_systems": [], "key_pairs": [],
                               "buckets": [], "managed_policies": [], "secrets": []}
    names: dict[str, str] = {}
    for stack in templates:
        _network(t, stack, account)
        _security_groups(t, stack, account)
        _file_systems(t, stack, account)
        for logical, _ in t.resources(stack, "AWS::EC2::KeyPair"):
            account["key_pairs"].append(t.ref(stack, logical))
        for logical, _ in t.resources(stack, "AWS::S3::Bucket"):
            name = t.ref(stack, logical)
            account["buckets"].append({"name": name, "objects": list((objects or {}).get(f"{stack}/{logical}", []))})
        for logical, _ in t.resources(stack, "AWS::IAM::ManagedPolicy"):
            props = t.props(stack, logical)
            account["managed_policies"].append({"arn": t.ref(stack, logical), "document": props["PolicyDocument"]})
        for logical, _ in t.resources(stack, "AWS::SecretsManager::Secret"):
            account["secrets"].append({"arn": t.ref(stack, logical)})
        for logical, resource in t.resources(stack):
            names.setdefault(str(t.ref(stack, logical)), f"{stack}/{logical}")
    # Outputs of the prerequisites stack are the names users write (${PublicSubnet}, ...).
    values: dict[str, str] = {}
    for name, output in templates.get(readable_outputs, {}).get("Outputs", {}).items():
        if not name.startswith(("PublishOutput", "Export")):
            value = t.resolve(readable_outputs, output["Value"])
            if isinstance(value, str):
                names[value] = "${" + name + "}"
                values[name] = value
    clusters = [t.props(stack, logical)
                for stack in templates for logical, _ in t.resources(stack, "Custom::PclusterCluster")]
    return Simulation(account=account, configs=[c["ClusterConfiguration"] for c in clusters],
                      cluster_names=[str(c["ClusterName"]) for c in clusters], names=names, values=values)


def _network(t: Templates, stack: str, account: dict[str, Any]) -> None:
    for logical, _ in t.resources(stack, "AWS::EC2::VPC"):
        props = t.props(stack, logical)
        account["vpcs"].append({"id": t.ref(stack, logical), "cidr": props["CidrBlock"],
                                "dns_support": props.get("EnableDnsSupport", True) in (True, "true"),
                                "dns_hostnames": props.get("EnableDnsHostnames", False) in (True, "true")})
    for logical, _ in t.resources(stack, "AWS::EC2::Subnet"):
        props = t.props(stack, logical)
        account["subnets"].append({"id": t.ref(stack, logical), "vpc": props["VpcId"], "cidr": props["CidrBlock"],
                                   "az": props["AvailabilityZone"],
                                   "public_ip": props.get("MapPublicIpOnLaunch", False) in (True, "true")})
    attachments = {t.props(stack, a)["InternetGatewayId"]: t.props(stack, a)["VpcId"]
                   for a, _ in t.resources(stack, "AWS::EC2::VPCGatewayAttachment")
                   if "InternetGatewayId" in t.resource(stack, a).get("Properties", {})}
    for logical, _ in t.resources(stack, "AWS::EC2::InternetGateway"):
        ident = t.ref(stack, logical)
        account["internet_gateways"].append({"id": ident, "vpc": attachments.get(ident)})
    for logical, _ in t.resources(stack, "AWS::EC2::NatGateway"):
        account["nat_gateways"].append({"id": t.ref(stack, logical), "subnet": t.props(stack, logical)["SubnetId"]})
    tables: dict[str, dict[str, Any]] = {}
    for logical, _ in t.resources(stack, "AWS::EC2::RouteTable"):
        tables[t.ref(stack, logical)] = {"id": t.ref(stack, logical), "vpc": t.props(stack, logical)["VpcId"],
                                         "routes": [], "subnets": []}
    for logical, _ in t.resources(stack, "AWS::EC2::Route"):
        props = t.props(stack, logical)
        target = {k: props[k] for k in ("GatewayId", "NatGatewayId") if k in props}
        tables[props["RouteTableId"]]["routes"].append({"destination": props.get("DestinationCidrBlock"), **target})
    for logical, _ in t.resources(stack, "AWS::EC2::SubnetRouteTableAssociation"):
        props = t.props(stack, logical)
        tables[props["RouteTableId"]]["subnets"].append(props["SubnetId"])
    account["route_tables"] += list(tables.values())
    for logical, _ in t.resources(stack, "AWS::EC2::VPCEndpoint"):
        props = t.props(stack, logical)
        account["vpc_endpoints"].append({"vpc": props["VpcId"], "service": props["ServiceName"],
                                         "type": props.get("VpcEndpointType", "Gateway"),
                                         "route_tables": props.get("RouteTableIds", [])})


def _rule(props: dict[str, Any], peer_keys: tuple[str, ...]) -> dict[str, Any]:
    rule = {"protocol": str(props.get("IpProtocol", "-1")), "from": props.get("FromPort"),
            "to": props.get("ToPort"), "description": props.get("Description", "")}
    for key in peer_keys:
        if props.get(key) is not None:
            rule["peer"] = {"CidrIp": "cidr", "CidrIpv6": "cidr6", "SourceSecurityGroupId": "group",
                            "DestinationSecurityGroupId": "group", "SourcePrefixListId": "prefix_list",
                            "DestinationPrefixListId": "prefix_list"}[key]
            rule["value"] = props[key]
    return rule


INGRESS_PEERS = ("CidrIp", "CidrIpv6", "SourceSecurityGroupId", "SourcePrefixListId")
EGRESS_PEERS = ("CidrIp", "CidrIpv6", "DestinationSecurityGroupId", "DestinationPrefixListId")


def _security_groups(t: Templates, stack: str, account: dict[str, Any]) -> None:
    groups: dict[str, dict[str, Any]] = {}
    for logical, _ in t.resources(stack, "AWS::EC2::SecurityGroup"):
        props = t.props(stack, logical)
        ident = t.ref(stack, logical)
        groups[ident] = {"id": ident, "vpc": props.get("VpcId"), "name": props.get("GroupName", f"{stack}-{logical}"),
                         "description": props.get("GroupDescription", logical),
                         "ingress": [_rule(r, INGRESS_PEERS) for r in props.get("SecurityGroupIngress", [])],
                         # No SecurityGroupEgress in the template: CloudFormation leaves EC2's allow-all rule.
                         "egress": ([_rule(r, EGRESS_PEERS) for r in props["SecurityGroupEgress"]]
                                    if "SecurityGroupEgress" in props else None)}
    for type_, direction, peers in (("AWS::EC2::SecurityGroupIngress", "ingress", INGRESS_PEERS),
                                    ("AWS::EC2::SecurityGroupEgress", "egress", EGRESS_PEERS)):
        for logical, _ in t.resources(stack, type_):
            props = t.props(stack, logical)
            group = groups.get(props["GroupId"])
            if group is None:
                continue  # a rule on a group of another stack: added where that group is described
            if group[direction] is None:
                group[direction] = []
            group[direction].append(_rule(props, peers))
    account["security_groups"] += list(groups.values())


def _file_systems(t: Templates, stack: str, account: dict[str, Any]) -> None:
    for logical, _ in t.resources(stack, "AWS::FSx::FileSystem"):
        props = t.props(stack, logical)
        type_ = props["FileSystemType"]
        entry = {"id": t.ref(stack, logical), "type": type_, "subnets": props["SubnetIds"],
                 "security_groups": props.get("SecurityGroupIds", []), "storage_capacity": props.get("StorageCapacity"),
                 "dns_name": t.get_att(stack, logical, "DNSName")}
        if type_ == "LUSTRE":
            lustre = props.get("LustreConfiguration", {})
            entry.update(deployment_type=lustre.get("DeploymentType", "SCRATCH_1"),
                         mount_name=t.get_att(stack, logical, "LustreMountName"),
                         version=props.get("FileSystemTypeVersion", "2.15"))
        elif type_ == "OPENZFS":
            openzfs = props.get("OpenZFSConfiguration", {})
            entry.update(deployment_type=openzfs.get("DeploymentType"),
                         root_volume=t.get_att(stack, logical, "RootVolumeId"))
        account["file_systems"].append(entry)
