"""FSx for Lustre PERSISTENT_2 file system (its S3 links: data_repositories.py)."""

from __future__ import annotations

from aws_cdk import RemovalPolicy, Stack, aws_ec2 as ec2, aws_fsx as fsx
from constructs import Construct

from settings.prereq import LustreSettings


class LustreFileSystem(Construct):
    """Lustre 2.15, LZ4, metadata configuration, in one subnet; daily backups only when no S3 data
    repository is linked (FSx does not back those up: the exporting association's S3 copy is durable).

    CloudFormation has no final-backup-on-delete for Lustre, so the file system follows
    ``removal_policy`` (RETAIN unless the user opted out).
    """

    def __init__(self, scope: Construct, construct_id: str, *, settings: LustreSettings,
                 subnet: ec2.ISubnet, security_group: ec2.SecurityGroup, removal_policy: RemovalPolicy) -> None:
        super().__init__(scope, construct_id)
        metadata = (fsx.CfnFileSystem.MetadataConfigurationProperty(mode="AUTOMATIC")
                    if settings.metadata_iops is None else
                    fsx.CfnFileSystem.MetadataConfigurationProperty(mode="USER_PROVISIONED",
                                                                    iops=settings.metadata_iops))
        self.file_system = fsx.CfnFileSystem(
            self, "FileSystem",
            file_system_type="LUSTRE",
            file_system_type_version="2.15",
            storage_type="SSD",
            storage_capacity=settings.storage_capacity_gib,
            subnet_ids=[subnet.subnet_id],
            security_group_ids=[security_group.security_group_id],
            lustre_configuration=fsx.CfnFileSystem.LustreConfigurationProperty(
                deployment_type="PERSISTENT_2",
                per_unit_storage_throughput=settings.per_unit_storage_throughput,
                data_compression_type="LZ4",
                metadata_configuration=metadata,
                automatic_backup_retention_days=settings.backup_retention_days,
                daily_automatic_backup_start_time="03:00" if settings.backup_retention_days else None,
                copy_tags_to_backups=True if settings.backup_retention_days else None,
            ),
            tags=[{"key": "Name", "value": f"{Stack.of(self).stack_name}-lustre"}],
        )
        self.file_system.apply_removal_policy(removal_policy)
        # FSx verifies the LNet ports when it creates the file system: the rules must exist first.
        self.file_system.node.add_dependency(security_group)

    @property
    def file_system_id(self) -> str:
        return self.file_system.ref

    @property
    def dns_name(self) -> str:
        return self.file_system.attr_dns_name

    @property
    def mount_name(self) -> str:
        return self.file_system.attr_lustre_mount_name
