"""Job bridge wiring (seed 004): state-file uploads in the data bucket run the submitter on the head node."""

from __future__ import annotations

import json

from aws_cdk import Aws, aws_events as events, aws_iam as iam, aws_ssm as ssm
from constructs import Construct

STATE_FILE = "job-aws-stat.txt"
SUBMIT_COMMAND = "/opt/job-bridge/job_bridge.sh submit"
INSTALL_TIMEOUT_SECONDS = 600


class JobBridge(Construct):
    """Installation, listing rights and event wiring of the job bridge, outside the cluster config's
    node actions: turning the bridge on or off, or editing job_bridge.sh, is then an in-place update.

    - An SSM association runs ``job_bridge.sh install`` on the head node when it is created and again
      whenever the script (its content-pinned key) or the bridge's settings change; the deploy waits
      for it to succeed.
    - ``list_policy`` (attached through the config's AdditionalIamPolicies) lets the head node list the
      job prefix, which ParallelCluster's ``S3Access`` with a ``KeyName`` does not grant. Its name
      starts with ``parallelcluster`` so that the provider's default IAM may attach it.
    - An EventBridge rule on Object Created of ``<prefix><job>/job-aws-stat.txt`` in the data bucket ->
      SSM Run Command (AWS-RunShellScript) on the head node, with a role allowed exactly that. Only the
      state file triggers: the job's other files (and its results) create no events to handle.

    The policy exists before the cluster (its config names it); ``connect`` adds what needs the head node.
    """

    def __init__(self, scope: Construct, construct_id: str, *, bucket_name: str, prefix: str, user: str,
                 cluster_name: str, scripts_bucket: str, script_key: str) -> None:
        super().__init__(scope, construct_id)
        self.bucket_name, self.prefix, self.user = bucket_name, prefix, user
        self.scripts_bucket, self.script_key = scripts_bucket, script_key
        self.list_policy = iam.ManagedPolicy(
            self, "ListJobPrefix", managed_policy_name=f"parallelcluster-{cluster_name}-{Aws.REGION}-job-bridge",
            description="Job bridge: the head node may list the job prefix of the data bucket",
            statements=[iam.PolicyStatement(actions=["s3:ListBucket"], resources=[f"arn:{Aws.PARTITION}:s3:::{bucket_name}"],
                                            conditions={"StringLike": {"s3:prefix": [f"{prefix}*"]}})])
        self.install_document = ssm.CfnDocument(
            self, "InstallDocument", document_type="Command", update_method="NewVersion",
            content={"schemaVersion": "2.2",
                     "description": "Installs the job bridge on the ParallelCluster head node (job_bridge.sh install)",
                     "parameters": {
                         "ScriptsBucket": {"type": "String", "allowedPattern": "^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"},
                         "ScriptKey": {"type": "String", "allowedPattern": "^[0-9a-f]{16}/job_bridge\\.sh$"},
                         "Bucket": {"type": "String", "allowedPattern": "^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"},
                         "Prefix": {"type": "String", "allowedPattern": "^[A-Za-z0-9][A-Za-z0-9._/-]*/$"},
                         "User": {"type": "String", "allowedPattern": "^[a-z_][a-z0-9_-]{0,31}$"}},
                     "mainSteps": [{"action": "aws:runShellScript", "name": "install", "inputs": {
                         "timeoutSeconds": str(INSTALL_TIMEOUT_SECONDS),
                         "runCommand": ["set -eu", "script=$(mktemp)",
                                        "aws s3 cp 's3://{{ScriptsBucket}}/{{ScriptKey}}' \"$script\" --only-show-errors",
                                        "bash \"$script\" install '{{Bucket}}' '{{Prefix}}' '{{User}}'",
                                        "rm -f \"$script\""]}}]})

    def connect(self, head_node_instance_id: str, timeout_seconds: int = 600) -> None:
        """Installs on the head node and routes state-file uploads to it."""
        bucket_name, prefix = self.bucket_name, self.prefix
        self.install = ssm.CfnAssociation(
            self, "Install", name=self.install_document.ref,
            targets=[ssm.CfnAssociation.TargetProperty(key="InstanceIds", values=[head_node_instance_id])],
            parameters={"ScriptsBucket": [self.scripts_bucket], "ScriptKey": [self.script_key],
                        "Bucket": [bucket_name], "Prefix": [prefix], "User": [self.user]},
            wait_for_success_timeout_seconds=INSTALL_TIMEOUT_SECONDS)

        document_arn = f"arn:{Aws.PARTITION}:ssm:{Aws.REGION}::document/AWS-RunShellScript"
        instance_arn = f"arn:{Aws.PARTITION}:ec2:{Aws.REGION}:{Aws.ACCOUNT_ID}:instance/{head_node_instance_id}"
        self.role = iam.Role(self, "RunCommandRole", assumed_by=iam.ServicePrincipal("events.amazonaws.com"),
                             description="EventBridge runs the job-bridge submitter on the head node")
        self.role.add_to_policy(iam.PolicyStatement(actions=["ssm:SendCommand"],
                                                    resources=[document_arn, instance_arn]))
        self.rule = events.CfnRule(
            self, "StateFileUploaded",
            description=f"Job bridge: submit jobs whose {STATE_FILE} is uploaded under {prefix}",
            event_pattern={
                "source": ["aws.s3"],
                "detail-type": ["Object Created"],
                "detail": {"bucket": {"name": [bucket_name]},
                           "object": {"key": [{"wildcard": f"{prefix}*/{STATE_FILE}"}]}},
            },
            targets=[events.CfnRule.TargetProperty(
                id="HeadNodeSubmitter",
                arn=document_arn,
                role_arn=self.role.role_arn,
                run_command_parameters=events.CfnRule.RunCommandParametersProperty(run_command_targets=[
                    events.CfnRule.RunCommandTargetProperty(key="InstanceIds", values=[head_node_instance_id])]),
                input=json.dumps({"commands": [SUBMIT_COMMAND], "executionTimeout": [str(timeout_seconds)]}),
            )],
        )
