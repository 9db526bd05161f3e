"""The data bucket: training data, results, Lustre's S3 side and the job bridge's inbox."""

from __future__ import annotations

from aws_cdk import Aws, Duration, RemovalPolicy, aws_iam as iam, aws_s3 as s3
from cdk_nag import NagSuppressions
from constructs import Construct

from settings.prereq import CLUSTER_LOGS_PREFIX


class DataBucket(Construct):
    """Private, SSE-S3 encrypted, SSL-only, versioned bucket with EventBridge notifications.

    SSE-S3 rather than a KMS key: FSx data repository associations read and write the bucket with
    FSx's service-linked role, which a customer key policy would also have to admit.
    Server access logs go to a second bucket that expires them after ``access_log_days``.
    """

    def __init__(self, scope: Construct, construct_id: str, *, removal_policy: RemovalPolicy,
                 access_log_days: int = 365) -> None:
        super().__init__(scope, construct_id)
        destroy = removal_policy == RemovalPolicy.DESTROY
        common = dict(
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            removal_policy=removal_policy,
            auto_delete_objects=destroy,
        )
        self.access_logs = s3.Bucket(
            self, "AccessLogs", **{**common, "object_ownership": s3.ObjectOwnership.BUCKET_OWNER_PREFERRED},
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(access_log_days))])
        NagSuppressions.add_resource_suppressions(self.access_logs, [
            {"id": "NIST.800.53.R5-S3BucketVersioningEnabled", "reason": "Holds the data bucket's access logs, "
             "written once by S3 and expired after a year: no object is ever overwritten to recover."},
            {"id": "NIST.800.53.R5-S3BucketReplicationEnabled", "reason": "Access logs of a single-region "
             "cluster; a second copy in another region would be kept longer than the logs are useful."},
            {"id": "NIST.800.53.R5-S3DefaultEncryptionKMS", "reason": "S3 server access logging delivers only to "
             "buckets with SSE-S3 (AES256) default encryption; a KMS key would stop the delivery."}])
        self.bucket = s3.Bucket(
            self, "Bucket", **common,
            versioned=True,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="data-bucket/",
            lifecycle_rules=[s3.LifecycleRule(
                abort_incomplete_multipart_upload_after=Duration.days(7),
                noncurrent_version_expiration=Duration.days(30))],
        )
        NagSuppressions.add_resource_suppressions(self.bucket, [
            {"id": "NIST.800.53.R5-S3BucketReplicationEnabled", "reason": "The cluster, its Lustre file system and "
             "this bucket live in one region by design; the bucket is versioned, and cross-region replication "
             "(a second region, doubled storage cost) is the user's choice."},
            {"id": "NIST.800.53.R5-S3DefaultEncryptionKMS", "reason": "SSE-S3: FSx data repository associations "
             "read and write the bucket with FSx's service-linked role, which a customer key policy would also "
             "have to admit for every association."}])
        self._admit_log_exports()
        # A kept bucket keeps its policy (TLS-only, the job bridge's denies, the log delivery grant): CloudFormation
        # would otherwise delete the BucketPolicy resources and leave the kept buckets without them.
        for bucket in (self.access_logs, self.bucket):
            if bucket.policy is not None:
                bucket.policy.apply_removal_policy(removal_policy)
        # EventBridge notifications (the job bridge reacts to Object Created events), set on the
        # CloudFormation resource: the L2 flag would add a custom-resource Lambda for the same thing.
        cfn_bucket: s3.CfnBucket = self.bucket.node.default_child  # type: ignore[assignment]
        cfn_bucket.add_property_override("NotificationConfiguration.EventBridgeConfiguration.EventBridgeEnabled",
                                         True)

    def _admit_log_exports(self) -> None:
        """CloudWatch Logs export tasks (`hpc-ops export-logs`) write as the logs service: it reads the bucket ACL
        and puts objects under the export prefix, for this account's log groups only (CloudWatch Logs' documented
        bucket policy for exports to S3)."""
        service = iam.ServicePrincipal(f"logs.{Aws.REGION}.amazonaws.com")
        same_account = {"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}}
        self.bucket.add_to_resource_policy(iam.PolicyStatement(
            sid="CloudWatchLogsExportAcl", principals=[service], actions=["s3:GetBucketAcl"],
            resources=[self.bucket.bucket_arn], conditions=same_account))
        self.bucket.add_to_resource_policy(iam.PolicyStatement(
            sid="CloudWatchLogsExportWrite", principals=[service], actions=["s3:PutObject"],
            resources=[self.bucket.arn_for_objects(f"{CLUSTER_LOGS_PREFIX}/*")],
            conditions={**same_account, "StringEquals": {**same_account["StringEquals"],
                                                         "s3:x-amz-acl": "bucket-owner-full-control"}}))
