"""ClusterStack: the Slurm cluster, from a native ParallelCluster YAML in cluster_configs/."""

from __future__ import annotations

from typing import Any, Callable

from aws_cdk import CfnOutput, Fn, Stack
from constructs import Construct

from cluster_config import NODE_ACTIONS_DIR, ConfigDocument, PlaceholderValues, node_actions_used, render
from cluster_config.job_bridge import default_user
from hpc_constructs.data_repositories import DataRepositoryAssociations
from hpc_constructs.job_bridge import JobBridge
from hpc_constructs.node_actions import NodeActionScripts
from hpc_constructs.parallelcluster import ParallelCluster, ParallelClusterProvider
from settings.cluster import ClusterSettings
from settings.prereq import DataRepositoryAssociationSettings
from stacks.prereq_stack import PrereqStack


class ClusterStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, settings: ClusterSettings, document: ConfigDocument,
                 prereq: PrereqStack, vpc_cidr: str, context: Callable[[str], Any],
                 data_repositories: tuple[DataRepositoryAssociationSettings, ...] = (), **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.data_repositories = DataRepositoryAssociations(
            self, "DataRepositories", associations=data_repositories, file_system_id=prereq.lustre.file_system_id,
            data_bucket_name=prereq.data_bucket.bucket.bucket_name)
        scripts = NodeActionScripts(self, "NodeActions", directory=NODE_ACTIONS_DIR,
                                    scripts=node_actions_used(document))
        stack_values = {**prereq.values, "Region": self.region, "VpcCidr": vpc_cidr}
        if scripts.bucket_name:
            stack_values["ScriptsBucket"] = scripts.bucket_name
        configuration = render(document, PlaceholderValues(
            stack=stack_values, context=context, node_action_url=scripts.url, node_actions_dir=NODE_ACTIONS_DIR))

        provider = ParallelClusterProvider(self, "Provider", version=settings.parallelcluster_version)
        # The provider refuses to rename a cluster in place; with the name in the logical id, a new
        # cluster_name makes CloudFormation create the new cluster first, then delete the old one.
        self.cluster = ParallelCluster(self, "Cluster" + settings.cluster_name.replace("-", ""),
                                       cluster_name=settings.cluster_name, configuration=configuration,
                                       provider=provider)

        if settings.job_bridge:
            self.job_bridge = JobBridge(self, "JobBridge", bucket_name=prereq.data_bucket.bucket.bucket_name,
                                        prefix=settings.job_bridge_prefix,
                                        head_node_instance_id=self.cluster.head_node_instance_id)

        CfnOutput(self, "ClusterName", value=settings.cluster_name, description="ParallelCluster cluster name")
        CfnOutput(self, "ClusterConfig", value=document.source, description="Cluster config file deployed")
        CfnOutput(self, "HeadNodeInstanceId", value=self.cluster.head_node_instance_id)
        CfnOutput(self, "HeadNodePrivateIp", value=self.cluster.head_node_private_ip)
        CfnOutput(self, "HeadNodeUser", value=default_user(configuration), description="Login user of the OS")
        CfnOutput(self, "SsmSessionCommand", description="Shell on the head node without SSH or open ports",
                  value=Fn.join("", [f"aws ssm start-session --region {self.region} --target ",
                                     self.cluster.head_node_instance_id]))
        CfnOutput(self, "ValidationMessages", value=self.cluster.validation_messages,
                  description="ParallelCluster's validation messages from the last create/update")
