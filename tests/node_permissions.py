"""What a cluster's nodes may do in AWS, judged by AWS-side code rather than by our reading of the config:

- ParallelCluster itself generates the cluster's template (its node roles and their policies), in the
  simulated account (pcluster_sidecar/account.py, ``cluster_template``);
- the policies attached to a node role are collected from that template: inline policies, the
  managed policies it lists (AWS managed ones from moto's copy of their documents, ours from our
  templates);
- moto's IAM policy evaluator answers whether an action on a resource is allowed.

moto's evaluator checks actions and resources with their wildcards and explicit denies; it does not
evaluate conditions such as ``s3:prefix`` (it treats them as met).
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from cluster_yaml.simulation import SIMULATED_ACCOUNT, Templates, simulate
from cluster_yaml.sidecar import ask_once

REGION = "us-east-1"


@lru_cache(maxsize=1)
def _aws_managed() -> dict[str, Any]:
    from moto.iam.aws_managed_policies import aws_managed_policies_data

    return json.loads(aws_managed_policies_data)


def cluster_templates(app_templates: dict[str, dict], objects: dict[str, list[str]],
                      cluster_name: str) -> dict[str, dict]:
    """ParallelCluster's own templates for the app's cluster (``cluster`` and its nested ``nested-N``)."""
    from cfnlint.decode import cfn_yaml

    simulation = simulate(app_templates, REGION, objects=objects)
    [config] = simulation.configs
    answer = ask_once({"cluster_template": {"region": REGION, "account": simulation.account,
                                            "cluster_name": cluster_name, "config": config}}, REGION)

    def parse(text: str) -> dict:
        return json.loads(json.dumps(cfn_yaml.loads(text), default=str))

    return {"cluster": parse(answer["template"]),
            **{f"nested-{i}": parse(text) for i, text in enumerate(answer["nested"])}}


class NodeRoles:
    """The node roles of ParallelCluster's templates, with every policy document each one gets."""

    def __init__(self, pcluster_templates: dict[str, dict], app_templates: dict[str, dict]) -> None:
        self.resolver = Templates({**app_templates, **pcluster_templates}, REGION)
        self.app = Templates(app_templates, REGION)
        self.templates = pcluster_templates
        self.documents: dict[str, list[dict]] = {}
        for stack in pcluster_templates:
            for logical, _ in self.resolver.resources(stack, "AWS::IAM::Role"):
                props = self.resolver.props(stack, logical)
                documents = [p["PolicyDocument"] for p in props.get("Policies", [])]
                documents += [self._managed(arn) for arn in props.get("ManagedPolicyArns", [])]
                self.documents.setdefault(logical, []).extend(documents)
            for logical, resource in self.resolver.resources(stack, "AWS::IAM::Policy"):
                props = self.resolver.props(stack, logical)
                for role in resource["Properties"].get("Roles", []):
                    self.documents.setdefault(role["Ref"], []).append(props["PolicyDocument"])

    def _managed(self, arn: str) -> dict:
        name = arn.split(":policy/", 1)[1]
        if ":iam::aws:policy/" in arn:
            return _aws_managed()[name.rsplit("/", 1)[-1]]["Document"]
        for stack, template in self.app.templates.items():
            for logical, _ in self.app.resources(stack, "AWS::IAM::ManagedPolicy"):
                if self.app.ref(stack, logical) == arn:
                    return self.app.props(stack, logical)["PolicyDocument"]
        raise AssertionError(f"policy {arn} is neither AWS managed nor created by this app")

    def queue_role(self, cluster_name: str, queue: str) -> str:
        """The role of a queue's nodes: launch template ``<cluster>-<queue>-<resource>`` -> profile -> role."""
        return self._launch_template_role(lambda name: name.startswith(f"{cluster_name}-{queue}-"), f"queue {queue}")

    def login_role(self, pool: str) -> str:
        """The role of a login pool's nodes: launch template ``<login stack>-<pool>`` -> profile -> role."""
        return self._launch_template_role(lambda name: name.endswith(f"-{pool}"), f"login pool {pool}")

    def _launch_template_role(self, matches: Any, what: str) -> str:
        for stack, template in self.templates.items():
            for logical, resource in self.resolver.resources(stack, "AWS::EC2::LaunchTemplate"):
                name = self.resolver.resolve(stack, resource["Properties"].get("LaunchTemplateName", ""))
                if isinstance(name, str) and matches(name):
                    profile = resource["Properties"]["LaunchTemplateData"]["IamInstanceProfile"]["Name"]["Ref"]
                    return template["Resources"][profile]["Properties"]["Roles"][0]["Ref"]
        raise AssertionError(f"no launch template for {what}")

    def allows(self, role: str, action: str, resource: str) -> bool:
        from moto.iam.access_control import IAMPolicy, PermissionResult

        results = [IAMPolicy(json.dumps(d)).is_action_permitted(action, resource) for d in self.documents[role]]
        return PermissionResult.PERMITTED in results and PermissionResult.DENIED not in results


def s3_arn(bucket: str, key: str | None = None) -> str:
    return f"arn:aws:s3:::{bucket}" + (f"/{key}" if key is not None else "")


__all__ = ["NodeRoles", "SIMULATED_ACCOUNT", "cluster_templates", "s3_arn"]
