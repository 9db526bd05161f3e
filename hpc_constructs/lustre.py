"""FSx for Lustre PERSISTENT_2 scratch/data file system with S3 data repository associations."""

from __future__ import annotations

from aws_cdk import RemovalPolicy, Stack, aws_ec2 as ec2, aws_fsx as fsx, aws_s3 as s3
from constructs import Construct

from settings.prereq import DATA_BUCKET_PLACEHOLDER, LustreSettings

ALL_EVENTS = ["NEW", "CHANGED", "DELETED"]


class LustreFileSystem(Construct):
    """Lustre 2.15, LZ4, metadata configuration and daily backups, in one subnet.

    Each association imports S3 changes automatically; ``auto_export`` ones also write file-system
    changes back to S3. CloudFormation has no final-backup-on-delete for Lustre, so the file
    system and its associations follow ``removal_policy`` (RETAIN unless the user opted out).
    """

    def __init__(self, scope: Construct, construct_id: str, *, settings: LustreSettings,
                 subnet: ec2.ISubnet, security_group: ec2.SecurityGroup, data_bucket: s3.IBucket,
                 removal_policy: RemovalPolicy) -> None:
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
                copy_tags_to_backups=True,
            ),
            tags=[{"key": "Name", "value": f"{Stack.of(self).stack_name}-lustre"}],
        )
        self.file_system.apply_removal_policy(removal_policy)
        # FSx verifies the LNet ports when it creates the file system: the rules must exist first.
        self.file_system.node.add_dependency(security_group)

        self.associations: list[fsx.CfnDataRepositoryAssociation] = []
        for index, dra in enumerate(settings.data_repository_associations):
            path = dra.data_repository_path.replace(DATA_BUCKET_PLACEHOLDER, data_bucket.bucket_name)
            association = fsx.CfnDataRepositoryAssociation(
                self, f"Association{index}",
                file_system_id=self.file_system.ref,
                file_system_path=dra.file_system_path,
                data_repository_path=path,
                batch_import_meta_data_on_create=dra.batch_import_metadata_on_create,
                s3=fsx.CfnDataRepositoryAssociation.S3Property(
                    auto_import_policy=fsx.CfnDataRepositoryAssociation.AutoImportPolicyProperty(events=ALL_EVENTS),
                    auto_export_policy=(fsx.CfnDataRepositoryAssociation.AutoExportPolicyProperty(events=ALL_EVENTS)
                                        if dra.auto_export else None),
                ),
                tags=[{"key": "FileSystemPath", "value": dra.file_system_path}],
            )
            association.apply_removal_policy(removal_policy)
            self.associations.append(association)

    @property
    def file_system_id(self) -> str:
        return self.file_system.ref

    @property
    def dns_name(self) -> str:
        return self.file_system.attr_dns_name

    @property
    def mount_name(self) -> str:
        return self.file_system.attr_lustre_mount_name
