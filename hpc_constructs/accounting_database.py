"""Slurm accounting database: Aurora MySQL Serverless v2, reachable only from the cluster nodes."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, aws_ec2 as ec2, aws_rds as rds, aws_secretsmanager as secretsmanager
from cdk_nag import NagSuppressions
from constructs import Construct

ADMIN_USER = "slurm_admin"
PORT = 3306


class AccountingDatabase(Construct):
    """What ``Scheduling.SlurmSettings.Database`` needs: ``uri`` (host:port), ``user_name`` and
    ``password_secret_arn``.

    ParallelCluster reads the password as the plain value of a Secrets Manager secret, so the password
    is its own secret (not RDS's JSON-shaped generated one) and reaches the database through a
    CloudFormation dynamic reference, never as template text. Kept on ``cdk destroy`` as a final
    snapshot (RETAIN/SNAPSHOT) unless the user opted into a throwaway environment.
    """

    def __init__(self, scope: Construct, construct_id: str, *, vpc: ec2.IVpc, subnets: list[ec2.ISubnet],
                 cluster_security_group: ec2.ISecurityGroup, destroy_on_delete: bool,
                 min_capacity: float = 0.5, max_capacity: float = 4) -> None:
        super().__init__(scope, construct_id)
        self.password = secretsmanager.Secret(
            self, "Password", description="Slurm accounting database password (plain text, read by ParallelCluster)",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=32, exclude_punctuation=True),
            removal_policy=RemovalPolicy.DESTROY if destroy_on_delete else RemovalPolicy.RETAIN)
        self.security_group = ec2.SecurityGroup(self, "SecurityGroup", vpc=vpc, allow_all_outbound=False,
                                                description="Slurm accounting database: MySQL from cluster nodes")
        self.security_group.add_ingress_rule(cluster_security_group, ec2.Port.tcp(PORT), "slurmdbd on the head node")
        self.cluster = rds.DatabaseCluster(
            self, "Cluster",
            engine=rds.DatabaseClusterEngine.aurora_mysql(version=rds.AuroraMysqlEngineVersion.VER_3_10_3),
            credentials=rds.Credentials.from_password(ADMIN_USER, self.password.secret_value),
            writer=rds.ClusterInstance.serverless_v2("Writer"),
            serverless_v2_min_capacity=min_capacity,
            serverless_v2_max_capacity=max_capacity,
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnets=subnets),
            security_groups=[self.security_group],
            port=PORT,
            storage_encrypted=True,
            backup=rds.BackupProps(retention=Duration.days(7)),
            deletion_protection=not destroy_on_delete,
            removal_policy=RemovalPolicy.DESTROY if destroy_on_delete else RemovalPolicy.SNAPSHOT,
            cloudwatch_logs_exports=["error", "slowquery"],
        )
        self.uri = f"{self.cluster.cluster_endpoint.hostname}:{PORT}"
        self.user_name = ADMIN_USER
        self.password_secret_arn = self.password.secret_arn
        NagSuppressions.add_resource_suppressions(self.password, [{
            "id": "AwsSolutions-SMG4",
            "reason": "slurmdbd reads this password when ParallelCluster configures the head node; a rotation "
                      "would lock slurmdbd out until the next cluster update."}])
        NagSuppressions.add_resource_suppressions(self.cluster, [
            {"id": "AwsSolutions-RDS6", "reason": "slurmdbd authenticates with a MySQL password "
                                                  "(ParallelCluster's Database settings); it has no IAM auth."},
            {"id": "AwsSolutions-RDS11", "reason": "Only the cluster security group can reach the port; "
                                                   "a non-default port adds no protection here."},
            {"id": "AwsSolutions-RDS14", "reason": "Backtrack is not needed for job accounting: "
                                                   "daily backups and the final snapshot cover recovery."},
        ], apply_to_children=True)
        if destroy_on_delete:
            NagSuppressions.add_resource_suppressions(self.cluster, [{
                "id": "AwsSolutions-RDS10", "reason": "destroy_data_on_delete=true asks for a throwaway environment "
                                                      "that cdk destroy removes completely."}])
