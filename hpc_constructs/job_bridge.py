"""Job bridge wiring (on-premises job submission through S3): state-file uploads in the data bucket run the submitter on the head node."""

from __future__ import annotations

import re

from aws_cdk import Aws, aws_events as events, aws_iam as iam, aws_s3 as s3, aws_ssm as ssm
from constructs import Construct

from job_bridge.submitters import Submitter

STATE_FILE = "job-aws-stat.txt"
INSTALL_TIMEOUT_SECONDS = 600
SUBMIT_TIMEOUT_SECONDS = 600
BUCKET_PATTERN = "^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
SUBMITTER_SPEC = "[A-Za-z0-9+=,.@_-]{1,64}:jb-[a-z0-9_-]{1,29}:[0-9]{4,9}"  # job_bridge.submitters.Submitter.spec
SUBMITTERS_PATTERN = f"^{SUBMITTER_SPEC}( {SUBMITTER_SPEC})*$"


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
      otherwise run jobs on the cluster). Each submitter owns ``<prefix><role name>/``: the policy denies
      the other submitters reading or writing there, and its jobs run as its own Linux user.
    - ``connect``: an SSM association runs ``job_bridge.sh install`` on the head node when it is created
      and whenever the script (its content-pinned key) or the bridge's settings change, and the deploy
      waits for it; an EventBridge rule on Object Created of ``<prefix><job>/job-aws-stat.txt`` sends
      the key to a dedicated SSM document whose only command is ``job_bridge.sh submit --key <key>``.
      The rule's role may send that document to that instance and nothing else, and only this rule of
      this account may assume it.
    """

    def __init__(self, scope: Construct, construct_id: str, *, bucket: s3.IBucket, prefix: str,
                 submitters: tuple[Submitter, ...], cluster_name: str, scripts_bucket: str, script_key: str,
                 users_script_key: str) -> None:
        super().__init__(scope, construct_id)
        self.bucket, self.prefix, self.submitters, self.cluster_name = bucket, prefix, submitters, cluster_name
        self.scripts_bucket, self.script_key, self.users_script_key = scripts_bucket, script_key, users_script_key
        roles = [s.role_arn for s in submitters]
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
            conditions={"ArnNotLike": {"aws:PrincipalArn": [*roles, node_roles]}}))
        for index, owner in enumerate(submitters):
            others = [arn for arn in roles if arn != owner.role_arn]
            if others:  # a submitter's folder is its own: the other submitters neither read nor write there
                bucket.add_to_resource_policy(iam.PolicyStatement(
                    sid=f"JobBridgeOwnFolder{index}", effect=iam.Effect.DENY, principals=[iam.AnyPrincipal()],
                    actions=["s3:GetObject", "s3:PutObject"],
                    resources=[bucket.arn_for_objects(f"{prefix}{owner.name}/*")],
                    conditions={"ArnLike": {"aws:PrincipalArn": others}}))
        self._grant_submitters(bucket, prefix, submitters)
        self.install_document = ssm.CfnDocument(
            self, "InstallDocument", document_type="Command", update_method="NewVersion",
            content=_document(
                "Installs the job bridge on the ParallelCluster head node (job_bridge.sh install)",
                {"ScriptsBucket": {"type": "String", "allowedPattern": BUCKET_PATTERN},
                 "ScriptKey": {"type": "String", "allowedPattern": "^[0-9a-f]{16}/job_bridge\\.sh$"},
                 "UsersScriptKey": {"type": "String", "allowedPattern": "^[0-9a-f]{16}/job_users\\.sh$"},
                 "Bucket": {"type": "String", "allowedPattern": BUCKET_PATTERN},
                 "Prefix": {"type": "String", "allowedPattern": "^[A-Za-z0-9][A-Za-z0-9._/-]*/$"},
                 "Submitters": {"type": "String", "allowedPattern": SUBMITTERS_PATTERN}},
                ["set -eu", "dir=$(mktemp -d)",
                 "aws s3 cp 's3://{{ScriptsBucket}}/{{UsersScriptKey}}' \"$dir/job_users.sh\" --only-show-errors",
                 "aws s3 cp 's3://{{ScriptsBucket}}/{{ScriptKey}}' \"$dir/job_bridge.sh\" --only-show-errors",
                 # Unquoted on purpose: one argument per submitter (the pattern allows no shell syntax).
                 "bash \"$dir/job_users.sh\" {{Submitters}}",
                 "bash \"$dir/job_bridge.sh\" install '{{Bucket}}' '{{Prefix}}' '{{Submitters}}'", "rm -rf \"$dir\""],
                INSTALL_TIMEOUT_SECONDS))
        # A key the event can carry: one job folder directly under the prefix, of the names the bridge
        # accepts. Others (spaces, nested folders) never reach the head node's shell; the sweep answers them.
        self.submit_document = ssm.CfnDocument(
            self, "SubmitDocument", document_type="Command", update_method="NewVersion",
            content=_document(
                "Submits the job folder whose state file was uploaded (job_bridge.sh submit)",
                {"Key": {"type": "String", "allowedPattern":
                         f"^{re.escape(prefix)}({'|'.join(re.escape(s.name) for s in submitters)})/"
                         f"[A-Za-z0-9][A-Za-z0-9._-]{{0,127}}/{re.escape(STATE_FILE)}$"}},
                ["/opt/job-bridge/job_bridge.sh submit --key '{{Key}}'"], SUBMIT_TIMEOUT_SECONDS))

    @staticmethod
    def _grant_submitters(bucket: s3.IBucket, prefix: str, submitters: tuple[Submitter, ...]) -> None:
        """Each submitter's rights on its own folder, in the bucket's own policy: a role of another account needs
        the bucket to allow it (its own policy is not enough). The principal is the submitter's account (never
        "*", which S3 would take for a public policy and Block Public Access refuse), narrowed to its role;
        listing only under its folder. Same-account roles need nothing more on their side."""
        for index, submitter in enumerate(submitters):
            principal = iam.AccountPrincipal(submitter.role_arn.split(":")[4])
            own = {"ArnLike": {"aws:PrincipalArn": submitter.role_arn}}
            bucket.add_to_resource_policy(iam.PolicyStatement(
                sid=f"JobBridgeSubmitter{index}ReadWrite", principals=[principal],
                actions=["s3:PutObject", "s3:GetObject"],
                resources=[bucket.arn_for_objects(f"{prefix}{submitter.name}/*")], conditions=own))
            bucket.add_to_resource_policy(iam.PolicyStatement(
                sid=f"JobBridgeSubmitter{index}List", principals=[principal], actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions={**own, "StringLike": {"s3:prefix": [f"{prefix}{submitter.name}/*"]}}))

    def connect(self, head_node_instance_id: str) -> None:
        """Installs on the head node and routes state-file uploads to it."""
        self.install = ssm.CfnAssociation(
            self, "Install", name=self.install_document.ref,
            targets=[ssm.CfnAssociation.TargetProperty(key="InstanceIds", values=[head_node_instance_id])],
            parameters={"ScriptsBucket": [self.scripts_bucket], "ScriptKey": [self.script_key],
                        "UsersScriptKey": [self.users_script_key], "Bucket": [self.bucket.bucket_name],
                        "Prefix": [self.prefix], "Submitters": [" ".join(s.spec for s in self.submitters)]},
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
