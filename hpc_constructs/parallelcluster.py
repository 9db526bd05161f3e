"""The official ParallelCluster CloudFormation custom resource: provider (nested stack) and cluster."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnStack, CustomResource, Duration, Fn, RemovalPolicy
from constructs import Construct

# CloudFormation's limit for a custom resource; head-node bootstrap must fit (see cluster_config.rules).
CLUSTER_TIMEOUT = Duration.minutes(60)


class ParallelClusterProvider(Construct):
    """AWS's own provider template, pinned to ``version``, deployed as a nested stack.

    It brings the Lambda that runs ``pcluster`` create/update/delete and its IAM policies; we write
    no provider code. The template uses the SAM transform: ``cdk deploy`` passes CAPABILITY_AUTO_EXPAND.
    """

    def __init__(self, scope: Construct, construct_id: str, *, version: str) -> None:
        super().__init__(scope, construct_id)
        self.version = version
        self.nested_stack = CfnStack(
            self, "Stack",
            template_url=Fn.sub("https://${AWS::Region}-aws-parallelcluster.s3.${AWS::Region}.${AWS::URLSuffix}"
                                f"/parallelcluster/{version}/templates/custom_resource/cluster.yaml"),
        )
        self.service_token = self.nested_stack.get_att("Outputs.ServiceToken").to_string()


class ParallelCluster(Construct):
    """``Custom::PclusterCluster``: ParallelCluster creates its own stack named ``cluster_name``.

    The cluster is deleted with this stack (DeletionPolicy Delete, not Retain as in some samples): it
    holds no data of its own, and a retained cluster would keep running, and billing, unmanaged.
    """

    def __init__(self, scope: Construct, construct_id: str, *, cluster_name: str,
                 configuration: dict[str, Any], provider: ParallelClusterProvider) -> None:
        super().__init__(scope, construct_id)
        self.cluster_name = cluster_name
        self.resource = CustomResource(
            self, "Resource",
            service_token=provider.service_token,
            resource_type="Custom::PclusterCluster",
            properties={"ClusterName": cluster_name, "DeletionPolicy": "Delete",
                        "ClusterConfiguration": configuration},
            removal_policy=RemovalPolicy.DESTROY,
            service_timeout=CLUSTER_TIMEOUT,
        )

    @property
    def head_node_instance_id(self) -> str:
        return self.resource.get_att_string("headNode.instanceId")

    @property
    def head_node_private_ip(self) -> str:
        return self.resource.get_att_string("headNode.privateIpAddress")

    @property
    def validation_messages(self) -> str:
        return self.resource.get_att_string("validationMessages")
