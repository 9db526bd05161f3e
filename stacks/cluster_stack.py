"""ClusterStack: the Slurm cluster, from a native ParallelCluster YAML in cluster_configs/."""

from __future__ import annotations

import hashlib
from typing import Any, Callable

from aws_cdk import CfnOutput, Fn, Stack, Token
from constructs import Construct

from cluster_yaml import NODE_ACTIONS_DIR, ConfigDocument, PlaceholderValues, node_actions_used, render
from cluster_yaml.job_bridge import USERS_SCRIPT, default_user
from cluster_yaml.node_actions import object_key
from cluster_yaml.provider import additional_iam_policies, load_contract
from cluster_yaml.render import placeholders_in
from cluster_yaml.stack_values import ALIASES, BY_NAME
from hpc_constructs.job_bridge import JobBridge
from hpc_constructs.node_actions import NodeActionScripts
from hpc_constructs.parallelcluster import ParallelCluster, ParallelClusterProvider
from settings.cluster import ClusterSettings
from stacks.prereq_stack import PrereqStack

JOB_BRIDGE_SCRIPT = "job_bridge.sh"


class ClusterStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, settings: ClusterSettings, document: ConfigDocument,
                 prereq: PrereqStack, vpc_cidr: str, context: Callable[[str], Any], **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        scripts = node_actions_used(document) + ([JOB_BRIDGE_SCRIPT, USERS_SCRIPT] if settings.job_bridge else [])
        self.node_actions = NodeActionScripts(
            self, "NodeActions", directory=NODE_ACTIONS_DIR, scripts=list(dict.fromkeys(scripts)),
            read_policy_name=f"parallelcluster-{settings.cluster_name}-{self.region}-node-actions") if scripts else None
        stack_values = {**prereq.values, "Region": self.region, "VpcCidr": vpc_cidr}
        if self.node_actions:
            stack_values["ScriptsBucket"] = self.node_actions.bucket.bucket_name
            stack_values["NodeActionsReadPolicy"] = self.node_actions.read_policy.managed_policy_arn

        self.job_bridge = None
        if settings.job_bridge and self.node_actions:
            self.job_bridge = JobBridge(
                self, "JobBridge", bucket=prereq.data_bucket.bucket, prefix=settings.job_bridge_prefix,
                submitters=settings.job_bridge_submitters, cluster_name=settings.cluster_name,
                scripts_bucket=self.node_actions.bucket.bucket_name,
                script_key=object_key(JOB_BRIDGE_SCRIPT, self.node_actions.digests[JOB_BRIDGE_SCRIPT]),
                users_script_key=object_key(USERS_SCRIPT, self.node_actions.digests[USERS_SCRIPT]))
            stack_values["JobBridgeListPolicy"] = self.job_bridge.list_policy.managed_policy_arn
        configuration = render(document, PlaceholderValues(
            stack=stack_values, context=context,
            node_action_url=self.node_actions.url if self.node_actions else _no_scripts,
            node_actions_dir=NODE_ACTIONS_DIR))

        # Policies of the config that AWS's provider may not attach by default get an explicit grant.
        literal_policies = [p for p in additional_iam_policies(configuration) if not Token.is_unresolved(p)]
        provider = ParallelClusterProvider(
            self, "Provider", version=settings.parallelcluster_version,
            attach_policies=load_contract().needing_grant(literal_policies, account="*", partition="*"))
        # The provider refuses to rename a cluster in place; with the name in the logical id, a new
        # cluster_name makes CloudFormation create the new cluster first, then delete the old one.
        self.cluster = ParallelCluster(self, "Cluster" + settings.cluster_name.replace("-", ""),
                                       cluster_name=settings.cluster_name, configuration=configuration,
                                       provider=provider)
        if self.node_actions:  # the scripts are in place before ParallelCluster reads them
            self.cluster.node.add_dependency(self.node_actions)
        if self.job_bridge:
            self.job_bridge.connect(self.cluster.head_node_instance_id)

        self._output("ClusterName", settings.cluster_name)
        self._output("ClusterConfig", document.source)
        self._output("HeadNodeInstanceId", self.cluster.head_node_instance_id)
        self._output("HeadNodePrivateIp", self.cluster.head_node_private_ip)
        self._output("HeadNodeUser", default_user(configuration))
        self._output("SsmSessionCommand", Fn.join("", [f"aws ssm start-session --region {self.region} --target ",
                                                        self.cluster.head_node_instance_id]))
        if self.job_bridge:
            self._output("JobBridgePrefix", settings.job_bridge_prefix)
        self._output("ValidationMessages", self.cluster.validation_messages)
        self._couple_to(prereq, document)

    def _output(self, name: str, value: str, detail: str = "") -> None:
        """An output declared in cluster_yaml/stack_values.py (ops/ reads them by those names)."""
        CfnOutput(self, name, value=value, description=BY_NAME[name].description + detail)

    def _couple_to(self, prereq: PrereqStack, document: ConfigDocument) -> None:
        """The cluster reads PrereqStack's values through weak references (cdk.json), so that either stack can
        change what it shares without a deadly embrace. Two outputs make the coupling explicit:

        - ``PrereqExportsInUse`` imports (Fn::ImportValue) PrereqStack's exports of what the cluster stands on: its
          VPC and every resource its config names. CloudFormation then refuses to delete PrereqStack, or to replace
          one of those resources, while this stack exists (lifecycle/deletion_rules.yaml, exports_in_use). Only
          exports PrereqStack declares whatever its settings are imported, so none is ever removed under us.
        - ``PrereqRevision`` changes with every PrereqStack setting: a PrereqStack change changes this template
          in the same synth, so the same ``cdk deploy`` updates this stack after PrereqStack and CloudFormation
          resolves the weak references again."""
        used = {ALIASES.get(p.name, p.name) for _, p in placeholders_in(document.data)} | {"VPC"}
        imported = [name for key, name in prereq.stable_exports.items() if key in used]
        self._output("PrereqExportsInUse", Fn.join(",", [Fn.import_value(name) for name in imported]),
                     f" ({', '.join(imported)})")
        self._output("PrereqRevision", hashlib.sha256(repr(prereq.settings).encode()).hexdigest()[:16])


def _no_scripts(script: str, fixed: bool) -> str:
    raise AssertionError(f"{script} is used but no node-action script was collected")  # render checks first
