"""Node-action scripts from scripts/node_actions/, in a bucket of this app (nothing from GitHub at boot)."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import RemovalPolicy, Stack, Tags, aws_iam as iam, aws_logs as logs, aws_s3 as s3, custom_resources as cr
from cdk_nag import NagSuppressions
from constructs import Construct

from cluster_yaml.node_actions import object_key, script_digest


class NodeActionScripts(Construct):
    """A private bucket holding each referenced script twice: at ``stable/<script>`` and at
    ``<sha256 prefix>/<script>`` (see cluster_yaml/node_actions.py for which URL goes where).

    Each object is written by an SDK call (S3 PutObject) from the deployment itself. Pinned copies are
    never deleted by an update: nodes of an earlier config, and a rollback, still find their version.
    The bucket holds only copies of this repository's scripts, so it is emptied and deleted with the
    stack. Nodes read it through their config's ``Iam.S3Access`` to ``${ScriptsBucket}`` and nothing else.
    """

    def __init__(self, scope: Construct, construct_id: str, *, directory: Path, scripts: list[str],
                 read_policy_name: str) -> None:
        super().__init__(scope, construct_id)
        self.bucket = s3.Bucket(self, "Bucket", block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
                                encryption=s3.BucketEncryption.S3_MANAGED, enforce_ssl=True,
                                removal_policy=RemovalPolicy.DESTROY, auto_delete_objects=True)
        Tags.of(self.bucket).add("Purpose", "node-actions")
        copies = ("Holds only copies of this repository's node-action scripts, written by the deployment; nodes "
                  "read them with their cluster role, and the bucket goes with ClusterStack")
        NagSuppressions.add_resource_suppressions(self.bucket, [
            {"id": "AwsSolutions-S1", "reason": copies},
            {"id": "NIST.800.53.R5-S3BucketLoggingEnabled", "reason": copies},
            {"id": "NIST.800.53.R5-S3BucketReplicationEnabled", "reason": copies + "; git is their durable copy"},
            {"id": "NIST.800.53.R5-S3BucketVersioningEnabled", "reason": "Pinned keys (a SHA-256 prefix per content "
             "version) are never overwritten; the stable/ keys that OnNodeUpdated reads are overwritten by each "
             "deploy with the repository's current script, and git keeps every earlier version"},
            {"id": "NIST.800.53.R5-S3DefaultEncryptionKMS", "reason": copies + " (public repository content); "
             "SSE-S3 encrypts them at rest"}])
        self.digests = {script: script_digest(directory / script) for script in scripts}
        # Login pools have no Iam.S3Access in ParallelCluster's schema: they read the scripts through
        # this policy (AdditionalIamPolicies: ${NodeActionsReadPolicy}); its name lets the provider attach it.
        self.read_policy = iam.ManagedPolicy(
            self, "ReadPolicy", managed_policy_name=read_policy_name,
            description="Cluster nodes may read this app's node-action scripts",
            statements=[iam.PolicyStatement(actions=["s3:GetObject"], resources=[self.bucket.arn_for_objects("*")])])
        NagSuppressions.add_resource_suppressions(self.read_policy, [
            {"id": "AwsSolutions-IAM5", "reason": "Read-only on the node-actions bucket, which holds nothing but this "
             "repository's scripts at content-hashed keys unknown until synth", "appliesTo": [
                 {"regex": "/^Resource::<NodeActionsBucket[0-9A-F]+\\.Arn>\\/\\*$/"}]}])
        # The writer function's logs go with the stack too (CDK would otherwise retain its log group).
        writer_logs = logs.LogGroup(self, "WriterLogs", retention=logs.RetentionDays.ONE_MONTH,
                                    removal_policy=RemovalPolicy.DESTROY)
        self.deployed_keys = [key for script, digest in self.digests.items()
                              for key in (object_key(script, None), object_key(script, digest))]
        # One role for every write: exactly these keys, and the writer's own log group.
        writer_role = iam.Role(self, "WriterRole", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                               description="Writes this app's node-action scripts to their bucket at deploy time")
        writer_policy = iam.ManagedPolicy(self, "WriterPolicy", roles=[writer_role], statements=[
            iam.PolicyStatement(actions=["s3:PutObject"],
                                resources=[self.bucket.arn_for_objects(key) for key in self.deployed_keys]),
            iam.PolicyStatement(actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                                resources=[writer_logs.log_group_arn])])
        NagSuppressions.add_resource_suppressions(writer_logs, [
            {"id": "NIST.800.53.R5-CloudWatchLogGroupEncrypted", "reason": "Holds only the writer's record of its "
             "S3 PutObject calls for this repository's scripts; CloudWatch Logs encrypts it at rest"}])
        for script, digest in self.digests.items():
            body = (directory / script).read_text()
            for kind, key in (("Stable", object_key(script, None)), ("Pinned", object_key(script, digest))):
                call = cr.AwsSdkCall(service="S3", action="putObject", physical_resource_id=cr.PhysicalResourceId.of(key),
                                     parameters={"Bucket": self.bucket.bucket_name, "Key": key, "Body": body,
                                                 "ContentType": "text/x-shellscript"})
                writer = cr.AwsCustomResource(self, f"{kind}{script.replace('/', '-').replace('.', '-')}",
                                              on_create=call, on_update=call, role=writer_role,
                                              install_latest_aws_sdk=False, log_group=writer_logs)
                writer.node.add_dependency(self.bucket, writer_policy)
                self._suppress_function(writer)

    @staticmethod
    def _suppress_function(writer: cr.AwsCustomResource) -> None:
        """CDK's AwsCustomResource function (one per stack) runs only during deploys of this stack."""
        function = Stack.of(writer).node.try_find_child("AWS679f53fac002430cb0da5b7982bd2287")
        if function is None:
            return
        reason = ("CDK's AwsCustomResource function: CloudFormation invokes it only while deploying this stack, to "
                  "write the node-action scripts")
        NagSuppressions.add_resource_suppressions(function, [
            {"id": "NIST.800.53.R5-LambdaInsideVPC", "reason": reason + "; it calls only S3's public API"},
            {"id": "NIST.800.53.R5-LambdaDLQ", "reason": reason + "; a failure fails the deploy, its error report"},
            {"id": "NIST.800.53.R5-LambdaConcurrency", "reason": reason + "; nothing else can invoke it"}],
            apply_to_children=True)

    def url(self, script: str, fixed: bool) -> str:
        """``s3://`` URL of the stable copy (``fixed``) or of the content-pinned one."""
        return f"s3://{self.bucket.bucket_name}/{object_key(script, None if fixed else self.digests[script])}"

    @property
    def bucket_name(self) -> str | None:
        return self.bucket.bucket_name if self.digests else None

    @property
    def bucket_logical_id(self) -> str:
        return Stack.of(self).resolve(self.bucket.node.default_child.logical_id)
