"""Job bridge wiring (seed 004): state-file uploads in the data bucket run the submitter on the head node."""

from __future__ import annotations

import json

from aws_cdk import Aws, aws_events as events, aws_iam as iam
from constructs import Construct

STATE_FILE = "job-aws-stat.txt"
SUBMIT_COMMAND = "/opt/job-bridge/job_bridge.sh submit"


class JobBridge(Construct):
    """EventBridge rule on Object Created of ``<prefix><job>/job-aws-stat.txt`` in the data bucket ->
    SSM Run Command (AWS-RunShellScript) on the head node, with a role allowed exactly that.

    Only the state file triggers: the job's other files (and its results) create no events to handle.
    Writing the state back (JOB_SUBMIT, JOB_COMPLETE) triggers a run that finds nothing to do.
    """

    def __init__(self, scope: Construct, construct_id: str, *, bucket_name: str, prefix: str,
                 head_node_instance_id: str, timeout_seconds: int = 600) -> None:
        super().__init__(scope, construct_id)
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
