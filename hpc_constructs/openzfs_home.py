"""FSx for OpenZFS file system whose root volume is the cluster's /home."""

from __future__ import annotations

from aws_cdk import RemovalPolicy, Stack, aws_ec2 as ec2, aws_fsx as fsx
from constructs import Construct

from settings.prereq import OpenZfsSettings


class OpenZfsHome(Construct):
    """Root volume exported read-write to the VPC with ``no_root_squash``.

    ParallelCluster's head node copies the AMI's /home onto a shared /home as root, keeping owners (its
    cookbook's restore_home_shared_data recipe, rsync -a as root), which root squashing would break; so no
    job user may become root (docs/job-bridge.md, threat model). ``crossmnt`` lets child volumes appear
    under the export.
    """

    def __init__(self, scope: Construct, construct_id: str, *, settings: OpenZfsSettings,
                 subnets: list[ec2.ISubnet], route_tables: list[str], security_group: ec2.SecurityGroup,
                 nfs_clients: str, removal_policy: RemovalPolicy) -> None:
        super().__init__(scope, construct_id)
        multi_az = settings.multi_az
        self.file_system = fsx.CfnFileSystem(
            self, "FileSystem",
            file_system_type="OPENZFS",
            storage_type="SSD",
            storage_capacity=settings.storage_capacity_gib,
            subnet_ids=[s.subnet_id for s in (subnets if multi_az else subnets[:1])],
            security_group_ids=[security_group.security_group_id],
            open_zfs_configuration=fsx.CfnFileSystem.OpenZFSConfigurationProperty(
                deployment_type=settings.deployment_type,
                throughput_capacity=settings.throughput_mbps,
                preferred_subnet_id=subnets[0].subnet_id if multi_az else None,
                route_table_ids=route_tables if multi_az else None,
                automatic_backup_retention_days=settings.backup_retention_days,
                daily_automatic_backup_start_time="03:00" if settings.backup_retention_days else None,
                copy_tags_to_backups=True,
                copy_tags_to_volumes=True,
                root_volume_configuration=fsx.CfnFileSystem.RootVolumeConfigurationProperty(
                    data_compression_type="LZ4",
                    copy_tags_to_snapshots=True,
                    nfs_exports=[fsx.CfnFileSystem.NfsExportsProperty(client_configurations=[
                        fsx.CfnFileSystem.ClientConfigurationsProperty(
                            clients=nfs_clients, options=["rw", "crossmnt", "no_root_squash"]),
                    ])],
                ),
            ),
            tags=[{"key": "Name", "value": f"{Stack.of(self).stack_name}-home"}],
        )
        self.file_system.apply_removal_policy(removal_policy)
        # FSx checks the NFS ports when it creates the file system: the rules must exist first.
        self.file_system.node.add_dependency(security_group)

    @property
    def file_system_id(self) -> str:
        return self.file_system.ref

    @property
    def root_volume_id(self) -> str:
        return self.file_system.attr_root_volume_id
