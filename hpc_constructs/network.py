"""The cluster network: one VPC, a public subnet for the head node and a private one for compute.

EFA placement and FSx for Lustre both want a single availability zone, so every subnet lives in the
primary zone; a second zone is added only when a resource needs it (OpenZFS MULTI_AZ_1).
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy, aws_ec2 as ec2, aws_logs as logs
from cdk_nag import NagSuppressions
from constructs import Construct

from settings.prereq import NetworkSettings


class ClusterNetwork(Construct):
    """VPC with DNS, IGW, one NAT gateway, an S3 gateway endpoint and flow logs."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: NetworkSettings,
                 with_secondary_zone: bool = False,
                 flow_log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH) -> None:
        super().__init__(scope, construct_id)
        zones = settings.availability_zones if with_secondary_zone else [settings.availability_zone]
        vpc_prefix = int(settings.vpc_cidr.split("/")[1])
        # Compute nodes take one IP per EFA device (32 on a p5.48xlarge): give private subnets most
        # of the VPC. With one zone: half of it; with two zones: a quarter each.
        private_prefix = vpc_prefix + (1 if len(zones) == 1 else 2)
        self.vpc = ec2.Vpc(
            self, "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(settings.vpc_cidr),
            availability_zones=zones,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            nat_gateways=1,
            nat_gateway_subnets=ec2.SubnetSelection(availability_zones=[settings.availability_zone],
                                                    subnet_type=ec2.SubnetType.PUBLIC),
            subnet_configuration=[
                ec2.SubnetConfiguration(name="Public", subnet_type=ec2.SubnetType.PUBLIC,
                                        cidr_mask=vpc_prefix + 8, map_public_ip_on_launch=True),
                ec2.SubnetConfiguration(name="Private", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS,
                                        cidr_mask=private_prefix),
            ],
            gateway_endpoints={"S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3)},
        )
        flow_logs = logs.LogGroup(self, "FlowLogs", retention=flow_log_retention,
                                  removal_policy=RemovalPolicy.DESTROY)
        # Rejected traffic only: it is what explains a security-group problem, at a fraction of the
        # volume (and cost) of logging every accepted connection of a busy cluster.
        flow_log = self.vpc.add_flow_log("FlowLog", destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs),
                                         traffic_type=ec2.FlowLogTrafficType.REJECT)
        self._suppressions(flow_logs, flow_log)

        def in_zone(subnets: list[ec2.ISubnet], zone: str) -> ec2.ISubnet:
            return next(s for s in subnets if s.availability_zone == zone)

        self.public_subnet = in_zone(self.vpc.public_subnets, settings.availability_zone)
        self.private_subnet = in_zone(self.vpc.private_subnets, settings.availability_zone)
        self.secondary_private_subnet: ec2.ISubnet | None = (
            in_zone(self.vpc.private_subnets, settings.secondary_availability_zone)
            if len(zones) > 1 else None)

    def keep_private_network(self) -> None:
        """Keeps the VPC and the private subnets on ``cdk destroy`` (DeletionPolicy Retain): a kept file system's
        network interfaces stay in them, and EC2 refuses to delete a subnet or VPC that still has interfaces
        (lifecycle/deletion_rules.yaml). Everything else of the network (NAT, gateways, public subnet) goes."""
        resources = [self.vpc.node.default_child, *(s.node.default_child for s in self.vpc.private_subnets)]
        for resource in resources:
            resource.apply_removal_policy(RemovalPolicy.RETAIN)  # type: ignore[union-attr]

    def _suppressions(self, flow_logs: logs.LogGroup, flow_log: ec2.FlowLog) -> None:
        NagSuppressions.add_resource_suppressions(flow_logs, [
            {"id": "NIST.800.53.R5-CloudWatchLogGroupEncrypted", "reason": "Rejected-traffic flow records "
             "(addresses and ports, no payload); CloudWatch Logs encrypts them at rest with its own keys"}])
        NagSuppressions.add_resource_suppressions(flow_log, [
            {"id": "NIST.800.53.R5-IAMNoInlinePolicy", "reason": "CDK's flow-log construct gives its delivery role "
             "one inline policy, scoped to this flow log's own log group"}], apply_to_children=True)
        for subnet in self.vpc.public_subnets:
            NagSuppressions.add_resource_suppressions(subnet, [
                {"id": "NIST.800.53.R5-VPCSubnetAutoAssignPublicIpDisabled", "reason": "The head node's subnet: "
                 "its public address is how it reaches the internet through the internet gateway; its security "
                 "group admits SSH from the VPC only (AllowedIps), and people come in through SSM"},
                {"id": "NIST.800.53.R5-VPCNoUnrestrictedRouteToIGW", "reason": "The public subnet's default route "
                 "to the internet gateway: the head node's outbound path and the NAT gateway's"}],
                apply_to_children=True)
