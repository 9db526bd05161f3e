"""S3 data repository associations (DRAs) of the Lustre file system."""

from __future__ import annotations

from aws_cdk import RemovalPolicy, aws_fsx as fsx
from constructs import Construct

from settings.prereq import DATA_BUCKET_PLACEHOLDER, DataRepositoryAssociationSettings

ALL_EVENTS = ["NEW", "CHANGED", "DELETED"]


class DataRepositoryAssociations(Construct):
    """Each association imports S3 changes automatically; ``auto_export`` ones also write changes
    made on Lustre back to S3.

    They live in PrereqStack beside the file system, not beside a cluster: several clusters (a blue/green
    upgrade) mount the same /fsx, so the links to S3 must outlive each of them. PrereqStack is deleted only
    after every cluster stack (they import its exports), so nothing mounts /fsx when they go; deleting a DRA
    keeps the data on Lustre and in S3. The price is the first create: the cluster starts after them
    (lifecycle/critical_path.py).
    """

    def __init__(self, scope: Construct, construct_id: str, *,
                 associations: tuple[DataRepositoryAssociationSettings, ...], file_system_id: str,
                 data_bucket_name: str) -> None:
        super().__init__(scope, construct_id)
        self.associations: list[fsx.CfnDataRepositoryAssociation] = []
        for index, dra in enumerate(associations):
            association = fsx.CfnDataRepositoryAssociation(
                self, f"Association{index}",
                file_system_id=file_system_id,
                file_system_path=dra.file_system_path,
                data_repository_path=dra.data_repository_path.replace(DATA_BUCKET_PLACEHOLDER, data_bucket_name),
                batch_import_meta_data_on_create=dra.batch_import_metadata_on_create,
                s3=fsx.CfnDataRepositoryAssociation.S3Property(
                    auto_import_policy=fsx.CfnDataRepositoryAssociation.AutoImportPolicyProperty(events=ALL_EVENTS),
                    auto_export_policy=(fsx.CfnDataRepositoryAssociation.AutoExportPolicyProperty(events=ALL_EVENTS)
                                        if dra.auto_export else None),
                ),
                tags=[{"key": "FileSystemPath", "value": dra.file_system_path}],
            )
            association.apply_removal_policy(RemovalPolicy.DESTROY)
            self.associations.append(association)
