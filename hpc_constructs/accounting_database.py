"""Slurm accounting database: Aurora MySQL Serverless v2, reachable only from the cluster nodes, and the
MySQL user slurmdbd logs in as."""

from __future__ import annotations

import hashlib
from pathlib import Path

from aws_cdk import (CustomResource, Duration, RemovalPolicy, aws_ec2 as ec2, aws_iam as iam,
                     aws_lambda as lambda_, aws_logs as logs, aws_rds as rds, aws_secretsmanager as secretsmanager)
from cdk_nag import NagSuppressions
from constructs import Construct

from cluster_yaml.accounting import DATABASE_NAME, SLURMDBD_USER

ADMIN_USER = "admin_slurm"
PORT = 3306
USER_FUNCTION = Path(__file__).with_name("accounting_user")


class AccountingDatabase(Construct):
    """What ``Scheduling.SlurmSettings.Database`` needs: ``uri`` (host:port), ``user_name`` and
    ``password_secret_arn``, for a user that is not the master user.

    The master credentials are RDS's JSON secret; the Data API is on so that a small function
    (``accounting_user/index.py``) can create ``slurm``, with all rights on ``slurm_acct_db`` and none
    elsewhere, without network access to the database. ParallelCluster reads that user's password as
    the plain value of its own secret; no password is ever template text. Kept on ``cdk destroy`` as a
    final snapshot (RETAIN/SNAPSHOT) unless the user opted into a throwaway environment.
    """

    def __init__(self, scope: Construct, construct_id: str, *, vpc: ec2.IVpc, subnets: list[ec2.ISubnet],
                 cluster_security_group: ec2.ISecurityGroup, destroy_on_delete: bool,
                 min_capacity: float = 0.5, max_capacity: float = 4) -> None:
        super().__init__(scope, construct_id)
        kept = RemovalPolicy.DESTROY if destroy_on_delete else RemovalPolicy.RETAIN
        self.password = secretsmanager.Secret(
            self, "Password", description="Password of the slurmdbd database user (plain text, read by ParallelCluster)",
            generate_secret_string=secretsmanager.SecretStringGenerator(password_length=32, exclude_punctuation=True),
            removal_policy=kept)
        self.admin_secret = secretsmanager.Secret(
            self, "AdminSecret", description="Master user of the Slurm accounting database (RDS credentials)",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=f'{{"username": "{ADMIN_USER}"}}', generate_string_key="password",
                password_length=32, exclude_punctuation=True),
            removal_policy=kept)
        self.security_group = ec2.SecurityGroup(self, "SecurityGroup", vpc=vpc, allow_all_outbound=False,
                                                description="Slurm accounting database: MySQL from cluster nodes")
        self.security_group.add_ingress_rule(cluster_security_group, ec2.Port.tcp(PORT), "slurmdbd on the head node")
        engine = rds.DatabaseClusterEngine.aurora_mysql(version=rds.AuroraMysqlEngineVersion.VER_3_10_3)
        # As ParallelCluster's own accounting-database template (cloudformation/database/serverless-database.yaml):
        # slurmdbd's purges and rollups hold row locks for long; MySQL's 50 s default fails them.
        parameters = rds.ParameterGroup(self, "Parameters", engine=engine,
                                        description="Slurm accounting: long lock waits for slurmdbd's rollups",
                                        parameters={"innodb_lock_wait_timeout": "900"})
        self.cluster = rds.DatabaseCluster(
            self, "Cluster",
            engine=engine,
            parameter_group=parameters,
            credentials=rds.Credentials.from_secret(self.admin_secret),
            writer=rds.ClusterInstance.serverless_v2("Writer"),
            serverless_v2_min_capacity=min_capacity,
            serverless_v2_max_capacity=max_capacity,
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnets=subnets),
            security_groups=[self.security_group],
            port=PORT,
            storage_encrypted=True,
            enable_data_api=True,
            backup=rds.BackupProps(retention=Duration.days(7)),
            # Kept as a final snapshot (DeletionPolicy Snapshot). Deletion protection would make RDS refuse the
            # DeleteDBCluster that takes that snapshot, and `cdk destroy` would fail with the cluster still billing.
            deletion_protection=False,
            removal_policy=RemovalPolicy.DESTROY if destroy_on_delete else RemovalPolicy.SNAPSHOT,
            cloudwatch_logs_exports=["error", "slowquery"],
        )
        self.user = self._slurmdbd_user()
        self.uri = f"{self.cluster.cluster_endpoint.hostname}:{PORT}"
        self.user_name = SLURMDBD_USER
        self.password_secret_arn = self.password.secret_arn
        self._suppressions(destroy_on_delete)

    def _slurmdbd_user(self) -> CustomResource:
        code = (USER_FUNCTION / "index.py").read_text()
        function_logs = logs.LogGroup(self, "UserFunctionLogs", retention=logs.RetentionDays.ONE_MONTH,
                                      removal_policy=RemovalPolicy.DESTROY)
        NagSuppressions.add_resource_suppressions(function_logs, [
            {"id": "NIST.800.53.R5-CloudWatchLogGroupEncrypted", "reason": "The user function logs only that it ran "
             "and, on failure, the error with the password blanked out; CloudWatch Logs encrypts at rest"}])
        role = iam.Role(self, "UserFunctionRole", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                        description="Creates the slurmdbd user of the accounting database through the Data API")
        policy = iam.ManagedPolicy(self, "UserFunctionPolicy", roles=[role], statements=[
            iam.PolicyStatement(actions=["rds-data:ExecuteStatement"], resources=[self.cluster.cluster_arn]),
            iam.PolicyStatement(actions=["secretsmanager:GetSecretValue"],
                                resources=[self.admin_secret.secret_arn, self.password.secret_arn]),
            iam.PolicyStatement(actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                                resources=[function_logs.log_group_arn])])
        function = lambda_.Function(
            self, "UserFunction", runtime=lambda_.Runtime.PYTHON_3_14, handler="index.handler",
            # Only the source: Python's compiled copies beside it would change the asset's hash, so the
            # function would look edited in `cdk diff` and be deployed again after any local run.
            code=lambda_.Code.from_asset(str(USER_FUNCTION), exclude=["__pycache__", "*.pyc"]),
            role=role, timeout=Duration.minutes(2),
            log_group=function_logs, description="Creates the MySQL user slurmdbd logs in as (Slurm accounting)")
        user = CustomResource(self, "SlurmdbdUser", service_token=function.function_arn,
                              resource_type="Custom::SlurmdbdUser", properties={
                                  "ClusterArn": self.cluster.cluster_arn, "AdminSecretArn": self.admin_secret.secret_arn,
                                  "UserSecretArn": self.password.secret_arn, "UserName": SLURMDBD_USER,
                                  "DatabaseName": DATABASE_NAME,
                                  # A new version of the function applies its statements again.
                                  "Revision": hashlib.sha256(code.encode()).hexdigest()[:16]})
        user.node.add_dependency(self.cluster, policy)
        self.function = function
        return user

    def _suppressions(self, destroy_on_delete: bool) -> None:
        for secret in (self.password, self.admin_secret):
            NagSuppressions.add_resource_suppressions(secret, [
                {"id": "AwsSolutions-SMG4", "reason": "slurmdbd reads this password when ParallelCluster configures "
                 "the head node; a rotation would lock slurmdbd out until the next cluster update."},
                {"id": "NIST.800.53.R5-SecretsManagerRotationEnabled", "reason": "slurmdbd reads this password when "
                 "ParallelCluster configures the head node; a rotation would lock slurmdbd out until the next update."},
                {"id": "NIST.800.53.R5-SecretsManagerUsingKMSKey", "reason": "Encrypted with Secrets Manager's AWS "
                 "managed key; read only by the head node and this stack's function, which IAM names explicitly."}])
        NagSuppressions.add_resource_suppressions(self.cluster, [
            {"id": "AwsSolutions-RDS6", "reason": "slurmdbd authenticates with a MySQL password "
                                                  "(ParallelCluster's Database settings); it has no IAM auth."},
            {"id": "AwsSolutions-RDS11", "reason": "Only the cluster security group can reach the port; "
                                                   "a non-default port adds no protection here."},
            {"id": "AwsSolutions-RDS14", "reason": "Backtrack is not needed for job accounting: "
                                                   "daily backups and the final snapshot cover recovery."},
            {"id": "NIST.800.53.R5-RDSEnhancedMonitoringEnabled", "reason": "A 0.5-4 ACU accounting database for "
             "slurmdbd; CloudWatch's standard RDS metrics and the exported error log cover its operation."},
            {"id": "NIST.800.53.R5-RDSInBackupPlan", "reason": "RDS automated backups (7 days) and the final "
             "snapshot on delete protect the accounting history; no separate AWS Backup plan is created."},
            {"id": "NIST.800.53.R5-RDSLoggingEnabled", "reason": "The error and slow-query logs are exported; the "
             "general and audit logs would record every slurmdbd query, including job metadata, for no use."},
        ], apply_to_children=True)
        NagSuppressions.add_resource_suppressions(self.function, [
            {"id": "NIST.800.53.R5-LambdaInsideVPC", "reason": "Reaches the database through the RDS Data API "
             "(HTTPS, IAM-authorized), so it needs no network path into the VPC."},
            {"id": "NIST.800.53.R5-LambdaDLQ", "reason": "Runs as a CloudFormation custom resource; a failure fails the "
             "deploy, which is its error report."},
            {"id": "NIST.800.53.R5-LambdaConcurrency", "reason": "Invoked only by CloudFormation during deploys of "
             "this stack; it cannot be invoked at a rate that needs a concurrency limit."}])
        reason = ("destroy_data_on_delete=true asks for a throwaway environment that cdk destroy removes completely."
                  if destroy_on_delete else "cdk destroy keeps the database as a final snapshot (DeletionPolicy "
                  "Snapshot); deletion protection would make RDS refuse that deletion and the destroy fail.")
        NagSuppressions.add_resource_suppressions(self.cluster, [
            {"id": "AwsSolutions-RDS10", "reason": reason},
            {"id": "NIST.800.53.R5-RDSInstanceDeletionProtectionEnabled", "reason": reason}],
            apply_to_children=True)
