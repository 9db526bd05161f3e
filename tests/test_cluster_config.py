"""Cluster configs: shipped ones pass ParallelCluster's schema and our rules; bad ones fail with the
file, the line, the key and the fix. One schema subprocess per corpus keeps this fast."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest
import yaml
from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode

import cluster_config
from cluster_config import DUMMY_LEGEND, available_configs, dummy_values, load_document, render, validate
from cluster_config.document import ConfigDocument
from settings.errors import ConfigError, ConfigErrors

REGION, CIDR, KEY = "us-east-1", "10.0.0.0/16", "PrereqStack-cluster"
BAD_DIR = Path(__file__).with_name("bad_configs")
BAD_CONFIGS = sorted(BAD_DIR.glob("*.yaml"))
SHIPPED_CONTEXT = {"CAPACITY_RESERVATION_ID": "cr-0123456789abcdef0"}


def values_for(document: ConfigDocument, context: dict | None = None):
    return dummy_values(REGION, CIDR, KEY, (context or {}).get, bool(cluster_config.node_actions_used(document)))


def expected_message(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} must start with '# expect: <message>'"
    return first[len("# expect: "):]


# -- shipped configs ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shipped() -> dict[str, dict]:
    documents = {name: cluster_config.load_named_config(name) for name in available_configs()}
    rendered = validate([(doc, values_for(doc, SHIPPED_CONTEXT), "hpc-cluster") for doc in documents.values()],
                        region=REGION, parallelcluster_version="3.16.1")
    return dict(zip(documents, rendered))


def test_the_three_documented_configs_ship():
    assert {"vanilla", "gpu-p5", "multi-queue"} <= set(available_configs())


def test_every_shipped_config_passes_schema_and_rules(shipped: dict[str, dict]):
    assert set(shipped) == set(available_configs())  # validate() raised on any problem


class RenderedYaml(SingleFileSnapshotExtension):
    file_extension = "yaml"
    _write_mode = WriteMode.TEXT


@pytest.mark.parametrize("name", available_configs())
def test_rendered_config_snapshot(name: str, shipped: dict[str, dict], snapshot):
    """The config as validated: what a reviewer reads in a PR."""
    text = f"# cluster_configs/{name}.yaml rendered with {DUMMY_LEGEND}\n" + yaml.safe_dump(
        shipped[name], sort_keys=False, width=120)
    assert text == snapshot(extension_class=RenderedYaml)


def test_vanilla_is_seed_002s_smoke_cluster(shipped: dict[str, dict]):
    config = shipped["vanilla"]
    queue = config["Scheduling"]["SlurmQueues"][0]
    resource = queue["ComputeResources"][0]
    assert (resource["InstanceType"], resource["MinCount"], resource["MaxCount"]) == ("c5n.9xlarge", "3", "3")
    assert resource["Efa"] == {"Enabled": "true"}
    assert config["HeadNode"]["InstanceType"] == "c5.9xlarge"
    assert config["HeadNode"]["LocalStorage"]["RootVolume"]["Size"] == "500"
    assert config["Scheduling"]["SlurmSettings"] == {"ScaledownIdletime": "60", "QueueUpdateStrategy": "DRAIN"}
    mounts = {s["MountDir"]: s["StorageType"] for s in config["SharedStorage"]}
    assert mounts == {"/home": "FsxOpenZfs", "/fsx": "FsxLustre"}


def test_gpu_config_targets_the_reservation_without_a_placement_group(shipped: dict[str, dict]):
    queue = shipped["gpu-p5"]["Scheduling"]["SlurmQueues"][0]
    assert queue["Networking"]["PlacementGroup"] == {"Enabled": "false"}
    resource = queue["ComputeResources"][0]
    assert resource["InstanceType"] == "p5.48xlarge"
    assert resource["CapacityReservationTarget"] == {"CapacityReservationId": "cr-0123456789abcdef0"}


def test_multi_queue_config_has_seed_003s_features(shipped: dict[str, dict]):
    config = shipped["multi-queue"]
    scheduling = config["Scheduling"]
    assert [q["Name"] for q in scheduling["SlurmQueues"]] == ["debug", "prod-mpi", "prod-batch"]
    assert scheduling["ScalingStrategy"] == "all-or-nothing"
    assert scheduling["SlurmSettings"]["EnableMemoryBasedScheduling"] == "true"
    mpi = scheduling["SlurmQueues"][1]
    assert len(mpi["ComputeResources"]) == 2 and all(r["Efa"]["Enabled"] == "true" for r in mpi["ComputeResources"])
    assert scheduling["SlurmQueues"][0]["CustomSlurmSettings"]["MaxTime"] == "1-00:00:00"
    assert config["Tags"] == [{"Key": "Billing", "Value": "hpc:parallelcluster"}]
    assert config["Monitoring"]["Logs"]["CloudWatch"]["RetentionInDays"] == "14"


def test_gpu_config_without_a_reservation_id_names_the_missing_value():
    document = cluster_config.load_named_config("gpu-p5")
    with pytest.raises(ConfigError) as info:
        render(document, values_for(document))
    message = str(info.value)
    assert message.startswith("cluster_configs/gpu-p5.yaml:")
    assert "CapacityReservationTarget.CapacityReservationId" in message
    assert "pass -c CAPACITY_RESERVATION_ID=<value>" in message


# -- rendering ------------------------------------------------------------------------------------
def document_of(text: str, tmp_path: Path) -> ConfigDocument:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return load_document(path, source="c.yaml")


def test_scalars_become_the_strings_cloudformation_delivers(tmp_path: Path):
    rendered = render(document_of("A: true\nB: 3\nC: 1.5\nD: [false, 0]\nE: text\n", tmp_path),
                      values_for(ConfigDocument("x", {})))
    assert rendered == {"A": "true", "B": "3", "C": "1.5", "D": ["false", "0"], "E": "text"}


def test_context_defaults_and_overrides(tmp_path: Path):
    document = document_of("N: ${NUM_INSTANCES:-3}\nT: ${INSTANCE:-c5n.9xlarge}\n", tmp_path)
    assert render(document, values_for(document)) == {"N": "3", "T": "c5n.9xlarge"}
    assert render(document, values_for(document, {"NUM_INSTANCES": 8})) == {"N": "8", "T": "c5n.9xlarge"}


def test_awsome_distributed_training_names_are_aliases(tmp_path: Path):
    document = document_of("S: ${PUBLIC_SUBNET_ID}\nF: ${FSX_ID}\nK: ${KEYPAIR_NAME}\nR: ${AWS_REGION}\n", tmp_path)
    assert render(document, values_for(document)) == {
        "S": "subnet-0aaaaaaaaaaaaaaaa", "F": "fs-0dddddddddddddddd", "K": KEY, "R": REGION}


def test_placeholders_inside_longer_strings(tmp_path: Path):
    document = document_of("P: s3://${DataBucketName}/jobs/\n", tmp_path)
    assert render(document, values_for(document)) == {"P": "s3://prereqstack-databucket-example/jobs/"}


# -- bad configs ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bad_config_errors() -> dict[str, list[str]]:
    """Every bad config validated in one batch; messages grouped by file."""
    by_file: dict[str, list[str]] = defaultdict(list)
    requests = []
    for path in BAD_CONFIGS:
        try:
            document = load_document(path, source=f"bad_configs/{path.name}")
        except ConfigError as error:
            by_file[path.name].append(str(error))
            continue
        requests.append((document, values_for(document), "hpc-cluster"))
    try:
        validate(requests, region=REGION, parallelcluster_version="3.16.1")
    except ConfigErrors as many:
        for error in many.errors:
            by_file[error.source.split(":")[0].removeprefix("bad_configs/")].append(str(error))
    except ConfigError as error:
        by_file[error.source.split(":")[0].removeprefix("bad_configs/")].append(str(error))
    return by_file


def test_corpus_has_at_least_ten_bad_configs():
    assert len(BAD_CONFIGS) >= 10


@pytest.mark.parametrize("path", BAD_CONFIGS, ids=[p.stem for p in BAD_CONFIGS])
def test_bad_config_fails_with_file_line_key_and_fix(path: Path, bad_config_errors: dict[str, list[str]]):
    messages = bad_config_errors.get(path.name, [])
    expected = expected_message(path)
    matching = [m for m in messages if expected in m]
    assert matching, f"expected {expected!r} among:\n" + "\n".join(messages)
    for message in matching:
        location = message.split(":", 2)
        assert location[0] == f"bad_configs/{path.name}" and location[1].isdigit(), message
        assert "\n  fix: " in message


def test_error_points_at_the_offending_line(bad_config_errors: dict[str, list[str]]):
    text = (BAD_DIR / "efa_on_t3.yaml").read_text().splitlines()
    line = next(i for i, l in enumerate(text, 1) if l.strip() == "Enabled: true")
    [message] = [m for m in bad_config_errors["efa_on_t3.yaml"] if "no EFA interface" in m]
    assert message.startswith(f"bad_configs/efa_on_t3.yaml:{line}: ")


def test_efa_list_is_data_with_its_source():
    header = cluster_config.rules.EFA_TYPES_FILE.read_text().splitlines()[:3]
    assert any("Source:" in line for line in header)
    types = cluster_config.rules.efa_instance_types()
    assert {"c5n.9xlarge", "c5n.18xlarge", "p5.48xlarge", "hpc7a.96xlarge"} <= types
    assert not {"t3.large", "c5.9xlarge", "m5.8xlarge"} & types


def test_schema_answers_are_cached_by_content(tmp_path: Path, monkeypatch):
    from cluster_config import schema

    monkeypatch.setattr(schema, "CACHE_DIR", tmp_path)
    document = cluster_config.load_named_config("vanilla")
    request = [schema.SchemaRequest(document, render(document, values_for(document)), "hpc-cluster")]
    first = schema.SchemaCheck(request, REGION, "3.16.1")
    assert first.process is not None and first.errors() == []
    again = schema.SchemaCheck(request, REGION, "3.16.1")
    assert again.process is None and again.cached is not None and again.errors() == []  # no subprocess
    uncached = schema.SchemaCheck(request, REGION, "3.16.1", use_cache=False)
    assert uncached.process is not None and uncached.errors() == []
    changed = [schema.SchemaRequest(document, {**request[0].config, "Typo": "x"}, "hpc-cluster")]
    assert "Unknown field" in str(schema.SchemaCheck(changed, REGION, "3.16.1").errors())
