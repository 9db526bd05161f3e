"""PrereqStack: everything a ParallelCluster cluster needs before the cluster itself."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_cdk import CfnOutput, Stack, Tags
from constructs import Construct

from cluster_yaml.stack_values import BY_NAME
from hpc_constructs.data_bucket import DataBucket
from hpc_constructs.data_repositories import DataRepositoryAssociations
from hpc_constructs.key_pair import ClusterKeyPair
from hpc_constructs.lustre import LustreFileSystem
from hpc_constructs.network import ClusterNetwork
from hpc_constructs.openzfs_home import OpenZfsHome
from hpc_constructs.removal import data_removal_policy
from hpc_constructs.security_groups import ClusterSecurityGroups
from settings.prereq import PrereqSettings

if TYPE_CHECKING:
    from hpc_constructs.accounting_database import AccountingDatabase


class PrereqStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, settings: PrereqSettings, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.settings = settings
        data_policy = data_removal_policy(settings.destroy_data_on_delete)

        self.network = ClusterNetwork(self, "Network", settings=settings.network,
                                      with_secondary_zone=settings.needs_second_zone)
        self.security_groups = ClusterSecurityGroups(self, "SecurityGroups", vpc=self.network.vpc)
        self.data_bucket = DataBucket(self, "DataBucket", removal_policy=data_policy)
        self.lustre = LustreFileSystem(
            self, "Lustre", settings=settings.lustre, subnet=self.network.private_subnet,
            security_group=self.security_groups.lustre, removal_policy=data_policy)
        # Beside their file system: every cluster of this PrereqStack mounts the same /fsx, and the links to S3
        # outlive each cluster (blue/green upgrades), deleted only with the file system's stack.
        self.data_repositories = DataRepositoryAssociations(
            self, "DataRepositories", associations=settings.lustre.data_repository_associations,
            file_system_id=self.lustre.file_system_id, data_bucket_name=self.data_bucket.bucket.bucket_name)
        private_subnets = [s for s in (self.network.private_subnet, self.network.secondary_private_subnet) if s]
        self.home = OpenZfsHome(
            self, "Home", settings=settings.openzfs, subnets=private_subnets,
            route_tables=[s.route_table.route_table_id for s in private_subnets],
            security_group=self.security_groups.openzfs, nfs_clients=settings.network.vpc_cidr,
            removal_policy=data_policy)
        if not settings.destroy_data_on_delete:
            # A kept file system keeps the network it sits in, so that `cdk destroy` completes.
            self.network.keep_private_network()
            self.security_groups.keep_storage_groups()
        self.key_pair = ClusterKeyPair(self, "KeyPair", existing_name=settings.key_pair_name)
        self.accounting: AccountingDatabase | None = None
        if settings.slurm_accounting:
            # Imported only when used: aws_rds adds 65 ms to every synth.
            from hpc_constructs import accounting_database

            self.accounting = accounting_database.AccountingDatabase(
                self, "Accounting", vpc=self.network.vpc, subnets=private_subnets,
                cluster_security_group=self.security_groups.cluster,
                destroy_on_delete=settings.destroy_data_on_delete)
        Tags.of(self).add("Project", "parallelcluster-cdk")

        # Output names match the awsome-distributed-training prerequisites template; the
        # same names are the ${Placeholders} of cluster configs (``values``).
        self.values: dict[str, str] = {}
        # Exports that exist whatever the settings: ClusterStack imports those its cluster uses (stacks/cluster_stack.py).
        self.stable_exports: dict[str, str] = {}
        self._output("VPC", self.network.vpc.vpc_id)
        self._output("PublicSubnet", self.network.public_subnet.subnet_id)
        self._output("PrimaryPrivateSubnet", self.network.private_subnet.subnet_id)
        if self.network.secondary_private_subnet:
            self._output("SecondaryPrivateSubnet", self.network.secondary_private_subnet.subnet_id)
        self._output("SecurityGroup", self.security_groups.cluster.security_group_id)
        self._output("FSxLustreFilesystemId", self.lustre.file_system_id)
        self._output("FSxLustreFilesystemDNSname", self.lustre.dns_name)
        self._output("FSxLustreFilesystemMountname", self.lustre.mount_name)
        self._output("FSxOpenZfsFilesystemId", self.home.file_system_id)
        self._output("FSxORootVolumeId", self.home.root_volume_id)
        self._output("DataBucketName", self.data_bucket.bucket.bucket_name)
        self._output("KeyPairName", self.key_pair.key_pair_name)
        if self.accounting:
            self._output("AccountingDatabaseUri", self.accounting.uri)
            self._output("AccountingDatabaseUser", self.accounting.user_name)
            self._output("AccountingDatabaseSecretArn", self.accounting.password_secret_arn)
        if self.key_pair.private_key_parameter_name:
            self._output("PrivateKeySsmParameter", self.key_pair.private_key_parameter_name)

    def _output(self, key: str, value: str) -> None:
        """An output declared in cluster_yaml/stack_values.py, exported as ``PrereqStack-<key>``."""
        declared = BY_NAME[key]
        self.values[key] = value
        export_name = f"{self.stack_name}-{key}"
        CfnOutput(self, key, value=value, description=declared.description, export_name=export_name)
        if declared.always:
            self.stable_exports[key] = export_name
