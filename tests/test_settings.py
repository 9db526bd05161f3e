"""Context validation: every bad input fails at synth with the key, the value and the fix."""

from __future__ import annotations

import json
from typing import Any

import pytest

from settings import ConfigError, ConfigErrors, ContextReader, PrereqSettings, shipped_context
from settings.prereq import DataRepositoryAssociationSettings
from tests.conftest import COMMAND_ROOMS


def load(cdk_json: dict[str, Any] | None = None, **given: Any) -> PrereqSettings:
    return PrereqSettings.from_context(ContextReader(given.get, cdk_json or shipped_context()))


def error_of(**given: Any) -> str:
    with pytest.raises((ConfigError, ConfigErrors)) as info:
        load(**given)
    return str(info.value)


def test_cdk_json_documents_exactly_the_built_in_defaults():
    assert load(**shipped_context()) == PrereqSettings()


def test_command_line_strings_are_converted():
    settings = load(lustre_storage_capacity_gib="4800", destroy_data_on_delete="true",
                    lustre_metadata_iops="12000", openzfs_throughput_mbps="128")
    assert settings.lustre.storage_capacity_gib == 4800
    assert settings.destroy_data_on_delete is True
    assert settings.lustre.metadata_iops == 12000
    assert settings.openzfs.throughput_mbps == 128


def test_dras_can_be_given_as_json_on_the_command_line():
    text = json.dumps([{"file_system_path": "/scratch", "data_repository_path": "s3://other-bucket/x/"}])
    settings = load(lustre_data_repository_associations=text)
    assert settings.lustre.data_repository_associations == (
        DataRepositoryAssociationSettings("/scratch", "s3://other-bucket/x/", auto_export=False),)


def test_dra_s3_path_defaults_to_the_data_bucket():
    settings = load(lustre_data_repository_associations=[{"file_system_path": "/results/"}])
    assert settings.lustre.data_repository_associations[0].data_repository_path == "s3://${DataBucket}/results/"


@pytest.mark.parametrize("zone", ["us-east-1", "useast1a", "US-EAST-1A", "us-east-1-a"])
def test_bad_availability_zone(zone: str):
    message = error_of(availability_zone=zone)
    assert "context 'availability_zone'" in message and repr(zone) in message
    assert "us-east-1a" in message  # the example of a valid name


@pytest.mark.parametrize("capacity", [1000, 1201, 3600, 0])
def test_lustre_capacity_not_a_persistent_2_size(capacity: int):
    message = error_of(lustre_storage_capacity_gib=capacity)
    assert f"'lustre_storage_capacity_gib' = {capacity}" in message
    assert "not a valid PERSISTENT_2" in message
    assert "1200, 2400, or a multiple of 2400" in message


def test_lustre_capacity_not_a_number():
    message = error_of(lustre_storage_capacity_gib="1.2TB")
    assert "not a whole number" in message and "'1.2TB'" in message


def test_lustre_throughput_not_allowed():
    message = error_of(lustre_per_unit_storage_throughput=200)
    assert "'lustre_per_unit_storage_throughput' = 200" in message
    assert "125, 250, 500, 1000" in message


def test_lustre_metadata_iops_not_allowed():
    message = error_of(lustre_metadata_iops=5000)
    assert "automatic, 1500, 3000, 6000, or a multiple of 12000" in message


@pytest.mark.parametrize("path", ["bucket/data", "https://bucket.s3.amazonaws.com/data", "s3://", "s3://UPPER/x"])
def test_dra_data_repository_path_not_s3(path: str):
    message = error_of(lustre_data_repository_associations=[{"file_system_path": "/data",
                                                              "data_repository_path": path}])
    assert "[0].data_repository_path is not an s3:// path" in message
    assert "s3://BUCKET/prefix/" in message


@pytest.mark.parametrize("path", ["data", "./data", "/data/../etc", "//data", 7])
def test_dra_file_system_path_not_absolute(path: Any):
    message = error_of(lustre_data_repository_associations=[{"file_system_path": path}])
    assert "[0].file_system_path is not an absolute path" in message


def test_dra_overlapping_file_system_paths():
    message = error_of(lustre_data_repository_associations=[
        {"file_system_path": "/data", "data_repository_path": "s3://a-bucket/one/"},
        {"file_system_path": "/data/raw", "data_repository_path": "s3://a-bucket/two/"}])
    assert "file system paths /data and /data/raw overlap" in message


def test_dra_root_path_overlaps_everything():
    message = error_of(lustre_data_repository_associations=[
        {"file_system_path": "/", "data_repository_path": "s3://a-bucket/one/"},
        {"file_system_path": "/data", "data_repository_path": "s3://a-bucket/two/"}])
    assert "file system paths / and /data overlap" in message


def test_dra_overlapping_s3_paths():
    message = error_of(lustre_data_repository_associations=[
        {"file_system_path": "/a", "data_repository_path": "s3://${DataBucket}/data/"},
        {"file_system_path": "/b", "data_repository_path": "s3://${DataBucket}/data/raw/"}])
    assert "S3 paths s3://${DataBucket}/data/ and s3://${DataBucket}/data/raw/ overlap" in message


def test_dra_sibling_prefixes_do_not_overlap():
    settings = load(lustre_data_repository_associations=[
        {"file_system_path": "/data", "data_repository_path": "s3://b-1/data/"},
        {"file_system_path": "/data2", "data_repository_path": "s3://b-1/data2/"}])
    assert len(settings.lustre.data_repository_associations) == 2


def test_dra_unknown_field_and_bad_flag():
    assert "unknown field(s) ['auto_import']" in error_of(
        lustre_data_repository_associations=[{"file_system_path": "/d", "auto_import": True}])
    assert "[0].auto_export must be true or false" in error_of(
        lustre_data_repository_associations=[{"file_system_path": "/d", "auto_export": "yes"}])


def test_dra_list_not_json():
    message = error_of(lustre_data_repository_associations="[{file_system_path: /d}")
    assert "is not valid JSON" in message


def test_too_many_dras():
    entries = [{"file_system_path": f"/d{i}"} for i in range(9)]
    assert "FSx allows 8 per file system" in error_of(lustre_data_repository_associations=entries)


@pytest.mark.parametrize("cidr,problem", [
    ("10.0.0.0/33", "is not a valid IPv4 CIDR block"),
    ("10.0.0.1/16", "is not a valid IPv4 CIDR block"),
    ("10.0.0", "is not a valid IPv4 CIDR block"),
    ("10.0.0.0/24", "has prefix /24"),
])
def test_malformed_cidr(cidr: str, problem: str):
    message = error_of(vpc_cidr=cidr)
    assert f"'vpc_cidr' = {cidr!r}" in message and problem in message


def test_openzfs_throughput_depends_on_deployment_type():
    message = error_of(openzfs_deployment_type="SINGLE_AZ_2", openzfs_throughput_mbps=64)
    assert "160, 320, 640" in message and "(for SINGLE_AZ_2)" in message


def test_openzfs_unknown_deployment_type():
    message = error_of(openzfs_deployment_type="MULTI_AZ_2")
    assert "use one of: SINGLE_AZ_1, SINGLE_AZ_HA_1, SINGLE_AZ_2, SINGLE_AZ_HA_2, MULTI_AZ_1" in message


def test_multi_az_openzfs_needs_a_second_zone():
    message = error_of(openzfs_deployment_type="MULTI_AZ_1", openzfs_throughput_mbps=160)
    assert "secondary_availability_zone" in message and "required by openzfs_deployment_type=MULTI_AZ_1" in message


def test_second_zone_must_be_in_the_same_region():
    message = error_of(secondary_availability_zone="us-west-2b")
    assert "same region as availability_zone (us-east-1a)" in message


def test_bad_boolean():
    assert "must be true or false" in error_of(destroy_data_on_delete="yes")


def test_all_problems_are_reported_together():
    with pytest.raises(ConfigErrors) as info:
        load(vpc_cidr="10.0.0.0/8", lustre_per_unit_storage_throughput=200)
    keys = [e.key for e in info.value.errors]
    assert keys == ["context 'vpc_cidr'", "context 'lustre_per_unit_storage_throughput'"]


def test_error_names_the_file_the_value_came_from():
    # The same bad value, once shipped in cdk.json and once given with -c.
    bad_cdk_json = {**shipped_context(), "lustre_per_unit_storage_throughput": 200}
    from_file = str(pytest.raises(ConfigError, load, bad_cdk_json, lustre_per_unit_storage_throughput=200).value)
    from_cli = error_of(lustre_per_unit_storage_throughput=200)
    assert from_file.startswith("cdk.json: context 'lustre_per_unit_storage_throughput'")
    assert from_cli.startswith("-c (command line or cdk.context.json): context 'lustre_per_unit_storage_throughput'")


def test_lustre_backups_with_s3_associations_are_rejected_with_both_ways_out():
    message = error_of(lustre_backup_retention_days=7)  # the default associations stay
    assert "context 'lustre_backup_retention_days' = 7: asks for automatic backups, but the file system has 2 " \
           "data repository association(s): FSx does not back up file systems linked to S3" in message
    assert "lustre_backup_retention_days=0" in message and "lustre_data_repository_associations=[]" in message
    assert load(lustre_backup_retention_days=7, lustre_data_repository_associations=[]).lustre.backup_retention_days == 7


class RecordingLookup:
    """A context lookup that records every key a settings class reads."""

    def __init__(self, context: dict[str, Any]) -> None:
        self.context, self.keys = context, set()

    def __call__(self, key: str) -> Any:
        self.keys.add(key)
        return self.context.get(key)


def test_every_knob_of_every_settings_class_is_in_cdk_json_with_its_default_and_in_the_readme():
    """cdk.json, the settings classes' defaults and the configuration table (docs/configuration.md) describe the same
    knobs."""
    import re

    from settings.cluster import Clusters
    from settings.context import REPO_ROOT
    from settings.lifecycle import LifecycleSettings

    shipped = {k: v for k, v in shipped_context().items() if not k.startswith("@")}
    read_keys: set[str] = set()
    for settings_class in (PrereqSettings, Clusters, LifecycleSettings):  # Clusters reads ClusterSettings' knobs
        lookup = RecordingLookup(shipped)
        assert settings_class.from_context(ContextReader(lookup, shipped)) == settings_class(), settings_class
        read_keys |= lookup.keys
    removed = {"job_bridge_user"}  # still read, to refuse it with a message (settings/cluster.py)
    assert read_keys - removed == set(shipped), "cdk.json and the settings classes name different knobs"
    table = dict(re.findall(r"^\| `([a-z_]+)` \| (.+?) \|", (REPO_ROOT / "docs" / "configuration.md").read_text(), re.M))
    assert set(shipped) <= set(table), "a knob is missing from docs/configuration.md's table"
    for key, value in shipped.items():
        if isinstance(value, (str, int, bool)) or value in ([], {}):
            shown = json.dumps(value) if value in ("", [], {}) or isinstance(value, bool) else str(value)
            assert table[key].startswith(f"`{shown}`"), (key, table[key])


def test_commands_read_context_only_through_settings():
    """Knobs are read with the app's own defaults and errors (settings.read), not from cdk.json by hand. Three tools
    hand cdk.json's whole context on, as the CDK CLI would: to an app they synthesize, or to an image config whose
    UPPER_CASE ${PLACEHOLDERS} come from context (hpc-build-ami)."""
    import ast

    from settings.context import REPO_ROOT

    synthesizing = {"tools/architecture_diagram.py", "tools/benchmark_synth.py", "commands/build_ami.py"}
    offenders = []
    for path in sorted(p for room in COMMAND_ROOMS for p in (REPO_ROOT / room).glob("*.py")):
        relative = str(path.relative_to(REPO_ROOT))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "shipped_context":
                if relative not in synthesizing:
                    offenders.append(f"{relative}:{node.lineno}")
            if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and node.slice.value in (
                    "availability_zone", "vpc_cidr", "parallelcluster_version", "job_bridge_prefix"):
                offenders.append(f"{relative}:{node.lineno} [{node.slice.value!r}]")
    assert offenders == []


def test_an_acknowledgement_that_is_not_a_stack_and_logical_id_is_refused_with_the_fix():
    from settings.lifecycle import LifecycleSettings

    with pytest.raises(ConfigError) as info:
        LifecycleSettings.from_context(ContextReader({"acknowledged_replacements": ["HomeFileSystem776A06C2"]}.get,
                                                     shipped_context()))
    message = str(info.value)
    assert "context 'acknowledged_replacements'" in message and "'HomeFileSystem776A06C2', which is not a Stack/LogicalId" in message
    assert "copy the keys hpc-replacement-guard prints" in message
    assert LifecycleSettings.from_context(ContextReader(
        {"acknowledged_replacements": ["PrereqStack/HomeFileSystem776A06C2"]}.get, shipped_context())
    ).acknowledged_replacements == ("PrereqStack/HomeFileSystem776A06C2",)
