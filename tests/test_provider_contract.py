"""The custom resource, as AWS's ParallelCluster provider will receive it (cluster_yaml/parallelcluster_provider.yaml):
its properties pass pcluster.lib's own argument check, and every node policy of the config is one the
provider's IAM may attach."""

from __future__ import annotations

import json
from typing import Iterator

import pytest

from cluster_yaml.provider import CONTRACT_FILE, additional_iam_policies, load_contract
from cluster_yaml.simulation import SIMULATED_ACCOUNT, Templates
from cluster_yaml.sidecar import PclusterProcess
from tests.conftest import Synthesized, synth
from tests.test_compliance import VARIANTS

REGION = "us-east-1"


@pytest.fixture(scope="module", params=list(VARIANTS), ids=list(VARIANTS))
def variant(request: pytest.FixtureRequest) -> Synthesized:
    return synth(**VARIANTS[request.param])


def delivered_properties(app: Synthesized) -> dict:
    """The cluster resource's properties with intrinsics resolved, as CloudFormation sends them."""
    templates = {name: app.synthesis.template(name) for name in app.stacks}
    resolver = Templates(templates, REGION)
    [logical] = [k for k, _ in resolver.resources("ClusterStack", "Custom::PclusterCluster")]
    return resolver.props("ClusterStack", logical)


@pytest.fixture(scope="module")
def worker() -> Iterator[PclusterProcess]:
    """One ParallelCluster worker for the module's checks (each one replaces pcluster.lib's dispatch and puts it back:
    nothing of one check is left for the next); a worker started per check cost about 1 s of CPU each."""
    with PclusterProcess(REGION) as process:
        yield process


def handler_check(worker: PclusterProcess, properties: dict, operation: str) -> dict:
    contract = load_contract()
    return worker.ask({"provider_call": {"operation": contract.operations[operation], "properties": properties,
                                         "dropped": list(contract.dropped_properties),
                                         "added": contract.added_arguments}})


@pytest.mark.parametrize("operation", ["Create", "Update"])
def test_properties_pass_pcluster_lib_argument_check(worker: PclusterProcess, variant: Synthesized, operation: str):
    answer = handler_check(worker, delivered_properties(variant), operation)
    assert answer["error"] is None
    assert answer["arguments"] == ["cluster_configuration", "cluster_name", "wait"]
    assert {"cluster_configuration", "cluster_name"} <= set(answer["dispatched"])


def test_a_property_the_handler_passes_on_breaks_the_deploy(worker: PclusterProcess, default_app: Synthesized):
    """What CDK's service_timeout did: the same check fails, so the tests above can fail."""
    properties = {**delivered_properties(default_app), "ServiceTimeout": "3600"}
    assert "unexpected arguments: {'service_timeout'}" in handler_check(worker, properties, "Create")["error"]


def test_every_node_policy_can_be_attached_by_the_provider(variant: Synthesized):
    contract = load_contract()
    templates = {name: variant.synthesis.template(name) for name in variant.stacks}
    resolver = Templates(templates, REGION)
    config = delivered_properties(variant)["ClusterConfiguration"]
    [(provider, _)] = resolver.resources("ClusterStack", "AWS::CloudFormation::Stack")
    parameter = resolver.props("ClusterStack", provider).get("Parameters", {}).get("AdditionalIamPolicies")
    granted: list[str] = []
    if parameter:  # our grant: a managed policy allowing the attachment of exactly these ARNs
        [(grant, _)] = [(k, r) for k, r in resolver.resources("ClusterStack", "AWS::IAM::ManagedPolicy")
                        if resolver.ref("ClusterStack", k) == parameter]
        [statement] = resolver.props("ClusterStack", grant)["PolicyDocument"]["Statement"]
        assert sorted(statement["Action"]) == ["iam:AttachRolePolicy", "iam:DetachRolePolicy"]
        granted = statement["Condition"]["ArnEquals"]["iam:PolicyARN"]
    for arn in additional_iam_policies(config):
        assert contract.attachable(arn, account=SIMULATED_ACCOUNT) or arn in granted, arn


def test_gpu_config_gets_the_ecr_policy_granted():
    app = synth(**VARIANTS["gpu-p5"])
    policies = [r for r in app.template("ClusterStack").find_resources("AWS::IAM::ManagedPolicy").values()
                if "AttachRolePolicy" in json.dumps(r)]
    assert len(policies) == 1
    condition = policies[0]["Properties"]["PolicyDocument"]["Statement"][0]["Condition"]
    assert condition == {"ArnEquals": {"iam:PolicyARN": ["arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly"]}}


def test_allowlist_is_data_with_its_source():
    text = CONTRACT_FILE.read_text()
    assert "cloudformation/policies/parallelcluster-policies.yaml" in text and "DefaultParallelClusterIamAdminPolicy" in text
    contract = load_contract()
    assert contract.attachable("arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore", account="1")
    assert contract.attachable("arn:aws:iam::123456789012:policy/parallelcluster-x", account="123456789012")
    assert not contract.attachable("arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly", account="1")


def test_two_providers_in_one_account_never_share_a_name():
    """Several clusters mean several provider stacks (one per version and cluster): every name the provider's
    templates set is made unique by its own stack's id (cluster_yaml/parallelcluster_provider.yaml)."""
    import re

    import yaml

    from cluster_yaml.provider import CONTRACT_FILE

    named = yaml.safe_load(CONTRACT_FILE.read_text())["named_resources"]

    def unique_per_stack(name: str, seen: tuple[str, ...] = ()) -> bool:
        if "${StackIdSuffix}" in name:
            return True
        return any(ref in named and ref not in seen and unique_per_stack(named[ref], (*seen, ref))
                   for ref in re.findall(r"\$\{(\w+)\}", name))

    assert named and [resource for resource, name in named.items() if not unique_per_stack(name)] == []
