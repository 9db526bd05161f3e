"""The official ParallelCluster CloudFormation custom resource: provider (nested stack) and cluster."""

from __future__ import annotations

from typing import Any

from aws_cdk import Aws, CfnStack, CustomResource, Fn, RemovalPolicy, aws_iam as iam
from cdk_nag import NagSuppressions
from constructs import Construct


class ParallelClusterProvider(Construct):
    """AWS's own provider template, pinned to ``version``, deployed as a nested stack.

    It brings the Lambda that runs ``pcluster`` create/update/delete and its IAM policies; we write
    no provider code. The template uses the SAM transform: ``cdk deploy`` passes CAPABILITY_AUTO_EXPAND.

    The provider's default IAM lets ParallelCluster attach only a short list of policies to the node
    roles (cluster_yaml/parallelcluster_provider.yaml). ``attach_policies`` lists the other
    ``AdditionalIamPolicies`` of the cluster config: a policy allowing exactly those attachments goes
    to the provider's own ``AdditionalIamPolicies`` parameter, so such a config deploys as written.
    """

    def __init__(self, scope: Construct, construct_id: str, *, version: str,
                 attach_policies: list[str] | None = None) -> None:
        super().__init__(scope, construct_id)
        self.version = version
        self.attach_policy = self._attach_policy(attach_policies) if attach_policies else None
        self.nested_stack = CfnStack(
            self, "Stack",
            template_url=Fn.sub("https://${AWS::Region}-aws-parallelcluster.s3.${AWS::Region}.${AWS::URLSuffix}"
                                f"/parallelcluster/{version}/templates/custom_resource/cluster.yaml"),
            parameters=({"AdditionalIamPolicies": self.attach_policy.managed_policy_arn}
                        if self.attach_policy else None),
        )
        self.service_token = self.nested_stack.get_att("Outputs.ServiceToken").to_string()

    def _attach_policy(self, policy_arns: list[str]) -> iam.ManagedPolicy:
        node_roles = f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:role/parallelcluster/*"
        policy = iam.ManagedPolicy(self, "AttachNodePolicies", description=(
            "Lets the ParallelCluster provider attach the cluster config's AdditionalIamPolicies that its "
            "default IAM does not allow"), statements=[iam.PolicyStatement(
                actions=["iam:AttachRolePolicy", "iam:DetachRolePolicy"], resources=[node_roles],
                conditions={"ArnEquals": {"iam:PolicyARN": policy_arns}})])
        NagSuppressions.add_resource_suppressions(policy, [{
            "id": "AwsSolutions-IAM5", "reason": "ParallelCluster names node roles at create time under "
            "role/parallelcluster/<cluster stack>/; the attachable policies are fixed by the ArnEquals condition"}])
        return policy


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
            # No service_timeout: it would add a ServiceTimeout property, which the provider passes on to
            # pcluster.lib as an unknown argument (TypeError, failed deploy). CloudFormation's default
            # custom-resource timeout is one hour (see cluster_yaml.rules, bootstrap timeout).
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
