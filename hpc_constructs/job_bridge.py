"""Job bridge wiring (seed 004): state-file uploads in the data bucket run the submitter on the head node."""

from __future__ import annotations

import re

from aws_cdk import Aws, aws_events as events, aws_iam as iam, aws_s3 as s3, aws_ssm as ssm
from constructs import Construct

STATE_FILE = "job-aws-stat.txt"
INSTALL_TIMEOUT_SECONDS = 600
SUBMIT_TIMEOUT_SECONDS = 600
BUCKET_PATTERN = "^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"


def _document(description: str, parameters: dict, commands: list[str], timeout: int) -> dict:
    """An SSM Command document whose command is fixed; only its parameters vary, each held to a pattern."""
    return {"schemaVersion": "2.2", "description": description, "parameters": parameters,
            "mainSteps": [{"action": "aws:runShellScript", "name": "run",
                           "inputs": {"timeoutSeconds": str(timeout), "runCommand": commands}}]}


class JobBridge(Construct):
    """Installation, permissions and event wiring of the job bridge, outside the cluster config's node
    actions: turning the bridge on or off, or editing job_bridge.sh, is then an in-place update.

    - ``list_policy`` (attached through the config's AdditionalIamPolicies) lets the head node list the
      job prefix, which ParallelCluster's ``S3Access`` with a ``KeyName`` does not grant. Its name starts
      with ``parallelcluster`` so that the provider's default IAM may attach it.
    - Only the ``submitters`` roles and the cluster's own node roles may write under the job prefix: a
      statement of the data bucket's policy denies everyone else (anyone with ``s3:PutObject`` could
      otherwise run jobs on the cluster).
    - ``connect``: an SSM association runs ``job_bridge.sh install`` on the head node when it is created
      and whenever the script (its content-pinned key) or the bridge's settings change, and the deploy
      waits for it; an EventBridge rule on Object Created of ``<prefix><job>/job-aws-stat.txt`` sends
      the key to a dedicated SSM document whose only command is ``job_bridge.sh submit --key <key>``.
      The rule's role may send that document to that instance and nothing else, and only this rule of
      this account may assume it.
    """

    def __init__(self, scope: Construct, construct_id: str, *, bucket: s3.IBucket, prefix: str, user: str,
                 cluster_name: str, submitters: tuple[str, ...], scripts_bucket: str, script_key: str) -> None:
        super().__init__(scope, construct_id)
        self.bucket, self.prefix, self.user, self.cluster_name = bucket, prefix, user, cluster_name
        self.scripts_bucket, self.script_key = scripts_bucket, script_key
        self.list_policy = iam.ManagedPolicy(
            self, "ListJobPrefix", managed_policy_name=f"parallelcluster-{cluster_name}-{Aws.REGION}-job-bridge",
            description="Job bridge: the head node may list the job prefix of the data bucket",
            statements=[iam.PolicyStatement(actions=["s3:ListBucket"], resources=[bucket.bucket_arn],
                                            conditions={"StringLike": {"s3:prefix": [f"{prefix}*"]}})])
        # ParallelCluster puts every node role of the cluster under this path (its IAM_ROLE_PATH + stack name).
        node_roles = f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:role/parallelcluster/{cluster_name}/*"
        bucket.add_to_resource_policy(iam.PolicyStatement(
            sid="JobBridgeWritersOnly", effect=iam.Effect.DENY, principals=[iam.AnyPrincipal()],
            actions=["s3:PutObject"], resources=[bucket.arn_for_objects(f"{prefix}*")],
            conditions={"ArnNotLike": {"aws:PrincipalArn": [*submitters, node_roles]}}))
        self._grant_submitters(bucket, prefix, submitters)
        self.install_document = ssm.CfnDocument(
            self, "InstallDocument", document_type="Command", update_method="NewVersion",
            content=_document(
                "Installs the job bridge on the ParallelCluster head node (job_bridge.sh install)",
                {"ScriptsBucket": {"type": "String", "allowedPattern": BUCKET_PATTERN},
                 "ScriptKey": {"type": "String", "allowedPattern": "^[0-9a-f]{16}/job_bridge\\.sh$"},
                 "Bucket": {"type": "String", "allowedPattern": BUCKET_PATTERN},
                 "Prefix": {"type": "String", "allowedPattern": "^[A-Za-z0-9][A-Za-z0-9._/-]*/$"},
                 "User": {"type": "String", "allowedPattern": "^[a-z_][a-z0-9_-]{0,31}$"}},
                ["set -eu", "script=$(mktemp)",
                 "aws s3 cp 's3://{{ScriptsBucket}}/{{ScriptKey}}' \"$script\" --only-show-errors",
                 "bash \"$script\" install '{{Bucket}}' '{{Prefix}}' '{{User}}'", "rm -f \"$script\""],
                INSTALL_TIMEOUT_SECONDS))
        # A key the event can carry: one job folder directly under the prefix, of the names the bridge
        # accepts. Others (spaces, nested folders) never reach the head node's shell; the sweep answers them.
        self.submit_document = ssm.CfnDocument(
            self, "SubmitDocument", document_type="Command", update_method="NewVersion",
            content=_document(
                "Submits the job folder whose state file was uploaded (job_bridge.sh submit)",
                {"Key": {"type": "String", "allowedPattern":
                         f"^{re.escape(prefix)}[A-Za-z0-9][A-Za-z0-9._-]{{0,127}}/{re.escape(STATE_FILE)}$"}},
                ["/opt/job-bridge/job_bridge.sh submit --key '{{Key}}'"], SUBMIT_TIMEOUT_SECONDS))

    @staticmethod
    def _grant_submitters(bucket: s3.IBucket, prefix: str, submitters: tuple[str, ...]) -> None:
        """The submitters' rights on the job prefix, in the bucket's own policy: a role of another account needs
        the bucket to allow it (its own policy is not enough). The principal is each submitter's account (never
        "*", which S3 would take for a public policy and Block Public Access refuse), narrowed to the named
        roles; listing only under the prefix. Same-account roles need nothing more on their side."""
        accounts = sorted({arn.split(":")[4] for arn in submitters if len(arn.split(":")) > 5 and arn.split(":")[4]})
        if not accounts:
            return
        principals = [iam.AccountPrincipal(account) for account in accounts]
        named = {"ArnLike": {"aws:PrincipalArn": list(submitters)}}
        bucket.add_to_resource_policy(iam.PolicyStatement(
            sid="JobBridgeSubmittersReadWrite", principals=principals, actions=["s3:PutObject", "s3:GetObject"],
            resources=[bucket.arn_for_objects(f"{prefix}*")], conditions=named))
        bucket.add_to_resource_policy(iam.PolicyStatement(
            sid="JobBridgeSubmittersList", principals=principals, actions=["s3:ListBucket"],
            resources=[bucket.bucket_arn],
            conditions={**named, "StringLike": {"s3:prefix": [f"{prefix}*"]}}))

    def connect(self, head_node_instance_id: str) -> None:
        """Installs on the head node and routes state-file uploads to it."""
        self.install = ssm.CfnAssociation(
            self, "Install", name=self.install_document.ref,
            targets=[ssm.CfnAssociation.TargetProperty(key="InstanceIds", values=[head_node_instance_id])],
            parameters={"ScriptsBucket": [self.scripts_bucket], "ScriptKey": [self.script_key],
                        "Bucket": [self.bucket.bucket_name], "Prefix": [self.prefix], "User": [self.user]},
            wait_for_success_timeout_seconds=INSTALL_TIMEOUT_SECONDS)

        rule_name = f"{self.cluster_name}-job-bridge"
        rule_arn = f"arn:{Aws.PARTITION}:events:{Aws.REGION}:{Aws.ACCOUNT_ID}:rule/{rule_name}"
        document_arn = f"arn:{Aws.PARTITION}:ssm:{Aws.REGION}:{Aws.ACCOUNT_ID}:document/{self.submit_document.ref}"
        instance_arn = f"arn:{Aws.PARTITION}:ec2:{Aws.REGION}:{Aws.ACCOUNT_ID}:instance/{head_node_instance_id}"
        self.role = iam.Role(self, "RunCommandRole", description="EventBridge runs the job-bridge submitter on the head node",
                             assumed_by=iam.ServicePrincipal("events.amazonaws.com", conditions={
                                 "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                                 "ArnEquals": {"aws:SourceArn": rule_arn}}))
        iam.ManagedPolicy(self, "RunCommandPolicy", roles=[self.role], statements=[
            iam.PolicyStatement(actions=["ssm:SendCommand"], resources=[document_arn, instance_arn])])
        self.rule = events.CfnRule(
            self, "StateFileUploaded", name=rule_name,
            description=f"Job bridge: submit jobs whose {STATE_FILE} is uploaded under {self.prefix}",
            event_pattern={
                "source": ["aws.s3"],
                "detail-type": ["Object Created"],
                "detail": {"bucket": {"name": [self.bucket.bucket_name]},
                           "object": {"key": [{"wildcard": f"{self.prefix}*/{STATE_FILE}"}]}},
            },
            targets=[events.CfnRule.TargetProperty(
                id="HeadNodeSubmitter",
                arn=document_arn,
                role_arn=self.role.role_arn,
                run_command_parameters=events.CfnRule.RunCommandParametersProperty(run_command_targets=[
                    events.CfnRule.RunCommandTargetProperty(key="InstanceIds", values=[head_node_instance_id])]),
                input_transformer=events.CfnRule.InputTransformerProperty(
                    input_paths_map={"key": "$.detail.object.key"}, input_template='{"Key": [<key>]}'),
            )],
        )
