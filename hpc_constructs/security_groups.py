"""Security groups: one for every cluster node, one per file system type.

EFA needs every security group attached to an EFA interface to allow all traffic to and from itself,
in both directions; a default "allow all outbound" is not enough for ParallelCluster's EFA check.
The file-system groups admit exactly the ports FSx documents, from the cluster group.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy, aws_ec2 as ec2
from cdk_nag import NagSuppressions
from constructs import Construct

LUSTRE_PORTS = (ec2.Port.tcp(988), ec2.Port.tcp_range(1018, 1023))
NFS_PORTS = tuple(
    port
    for make in (ec2.Port.tcp, ec2.Port.udp)
    for port in (make(111), make(2049))
) + (ec2.Port.tcp_range(20001, 20003), ec2.Port.udp_range(20001, 20003))


class ClusterSecurityGroups(Construct):
    """``cluster``: head and compute nodes. ``lustre`` / ``openzfs``: the file systems' ENIs.

    Rules that name another group are separate ``SecurityGroupIngress`` resources, children of
    their group; a file system that depends on the group construct therefore waits for its rules.
    """

    def __init__(self, scope: Construct, construct_id: str, *, vpc: ec2.IVpc) -> None:
        super().__init__(scope, construct_id)
        self.cluster = ec2.SecurityGroup(
            self, "Cluster", vpc=vpc, allow_all_outbound=True,  # packages, AWS APIs, file systems
            description="ParallelCluster nodes: EFA all-traffic to/from itself, outbound to the internet via NAT")
        self.cluster.add_ingress_rule(self.cluster, ec2.Port.all_traffic(), "EFA and MPI between cluster nodes")
        NagSuppressions.add_resource_suppressions(self.cluster, [
            {"id": "NIST.800.53.R5-EC2RestrictedCommonPorts", "reason": "EFA needs all traffic between the nodes; "
             "the only source of this rule is the cluster security group itself, no address range"}],
            apply_to_children=True)
        # The L2 drops extra egress rules once all outbound is allowed, but EFA's check wants an
        # explicit self-referencing egress rule, so it is written at the CloudFormation level.
        ec2.CfnSecurityGroupEgress(
            self.cluster, "EfaSelfEgress", group_id=self.cluster.security_group_id, ip_protocol="-1",
            destination_security_group_id=self.cluster.security_group_id,
            description="EFA and MPI between cluster nodes")

        self.lustre = ec2.SecurityGroup(self, "Lustre", vpc=vpc, allow_all_outbound=True,
                                        description="FSx for Lustre: LNet from cluster nodes and between servers")
        for port in LUSTRE_PORTS:
            for peer, who in ((self.cluster, "cluster nodes"), (self.lustre, "Lustre servers")):
                self.lustre.add_ingress_rule(peer, port, f"Lustre from {who}")

        self.openzfs = ec2.SecurityGroup(self, "OpenZfs", vpc=vpc, allow_all_outbound=True,
                                         description="FSx for OpenZFS: NFS from cluster nodes")
        for port in NFS_PORTS:
            self.openzfs.add_ingress_rule(self.cluster, port, "NFS from cluster nodes")

    def keep_storage_groups(self) -> None:
        """Keeps the file systems' groups on ``cdk destroy``: a kept file system's interfaces still use them, and
        EC2 refuses to delete a group in use. Their rules naming the cluster group are separate resources and go,
        so the cluster group itself can be deleted."""
        for group in (self.lustre, self.openzfs):
            group.node.default_child.apply_removal_policy(RemovalPolicy.RETAIN)  # type: ignore[union-attr]
