"""Every stack output and placeholder is declared once (cluster_yaml/stack_values.py) and used from there."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from cluster_yaml import stack_values
from cluster_yaml.render import ALIASES, STACK_VALUE_NAMES
from cluster_yaml.stack_values import APP, BY_NAME, CLUSTER, PREREQ, VALUES
from settings.context import REPO_ROOT
from tests.conftest import BRIDGE, COMMAND_ROOMS, synth

VARIANTS = [{}, BRIDGE, {"slurm_accounting": True, "secondary_availability_zone": "us-east-1b"},
            {"openzfs_deployment_type": "MULTI_AZ_1", "openzfs_throughput_mbps": 160,
             "secondary_availability_zone": "us-east-1b"}, {"key_pair_name": "my-existing-key"}]


@pytest.fixture(scope="module")
def outputs() -> dict[str, dict[str, dict]]:
    """Every output of both stacks over the variants, by stack and name (first seen)."""
    found: dict[str, dict[str, dict]] = {PREREQ: {}, CLUSTER: {}}
    for context in VARIANTS:
        app = synth(**context)
        for stack in found:
            for name, output in app.template(stack).to_json().get("Outputs", {}).items():
                found[stack].setdefault(name, output)
    return found


def test_every_output_of_every_variant_is_declared_with_its_description(outputs):
    for stack, found in outputs.items():
        for name, output in found.items():
            if name.startswith(("PublishOutput", "ExportsOutput")):
                continue  # CDK's own outputs behind the weak cross-stack references
            declared = BY_NAME.get(name)
            assert declared and declared.source == stack and declared.output, f"{stack} output {name} is not declared"
            assert output["Description"].startswith(declared.description), name


def test_every_declared_output_exists_in_some_variant_and_always_means_always(outputs):
    for value in VALUES:
        if value.output:
            assert value.name in outputs[value.source], f"{value.name} is declared but no variant outputs it"
    default = synth().template(PREREQ).to_json()["Outputs"]
    # Outputs declared `always` exist in the default too (ClusterStack may import their exports).
    assert {v.name for v in VALUES if v.source == PREREQ and v.always} <= set(default)


def test_placeholders_and_aliases_come_from_the_declaration():
    assert STACK_VALUE_NAMES == tuple(v.name for v in VALUES if v.placeholder)
    assert ALIASES["FSX_ID"] == "FSxLustreFilesystemId" and ALIASES["SSH_KEY"] == "KeyPairName"
    stand_ins = stack_values.stand_ins(region="eu-west-1", account="123456789012", vpc_cidr="10.0.0.0/16",
                                       key_pair_name="k", node_actions=False)
    assert set(stand_ins) == {v.name for v in VALUES if v.placeholder} - set(stack_values.NODE_ACTION_VALUES)
    assert stand_ins["FSxLustreFilesystemDNSname"].endswith(".fsx.eu-west-1.amazonaws.com")
    assert all(v.stand_in for v in VALUES if v.placeholder), "a placeholder without a stand-in cannot be validated"
    assert {v.source for v in VALUES if not v.output} <= {APP, CLUSTER}


def test_commands_read_outputs_by_the_declared_names_not_by_literals():
    """The commands and the code behind them name outputs through stack_values' constants: a renamed output breaks an import, not a
    deployed cluster at run time."""
    names = {v.name for v in VALUES if v.output}
    offenders = []
    # lifecycle/ reads templates, where ClusterName is also the ParallelCluster resource's own property.
    rooms = [room for room in COMMAND_ROOMS if room != "lifecycle"]
    for path in sorted(p for room in rooms for p in (REPO_ROOT / room).glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in names:
                offenders.append(f"{Path(path).relative_to(REPO_ROOT)}:{node.lineno} {node.value!r}")
    assert offenders == []
