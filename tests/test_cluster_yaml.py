"""Cluster configs: shipped ones pass ParallelCluster's schema and our rules; bad ones fail with the
file, the line, the key and the fix. One schema subprocess per corpus keeps this fast."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode

import cluster_yaml
from cluster_yaml import DUMMY_LEGEND, available_configs, dummy_values, load_document, render, validate
from cluster_yaml.document import ConfigDocument
from settings.errors import ConfigError, ConfigErrors
from cluster_yaml.node_actions import with_node_updates
from tests.corpus import Outcome, expectations, validate_files

REGION, CIDR, KEY = "us-east-1", "10.0.0.0/16", "PrereqStack-cluster"
BAD_DIR = Path(__file__).with_name("bad_configs")
BAD_CONFIGS = sorted(BAD_DIR.glob("*.yaml"))
SHIPPED_CONTEXT = {"CAPACITY_RESERVATION_ID": "cr-0123456789abcdef0"}


def values_for(document: ConfigDocument, context: dict | None = None):
    return dummy_values(REGION, CIDR, KEY, (context or {}).get, bool(cluster_yaml.node_actions_used(document)))


def expected_message(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} must start with '# expect: <message>'"
    return first[len("# expect: "):]


# -- shipped configs ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shipped() -> dict[str, dict]:
    # As the app deploys them: node actions of the head node repeated in OnNodeUpdated.
    documents = {name: with_node_updates(cluster_yaml.load_named_config(name)) for name in available_configs()}
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


def test_vanilla_is_the_hands_ons_smoke_cluster(shipped: dict[str, dict]):
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


def test_multi_queue_config_has_the_blue_brain_features(shipped: dict[str, dict]):
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
    document = cluster_yaml.load_named_config("gpu-p5")
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


# -- corpora: configs ParallelCluster rejects, and configs from elsewhere it accepts ---------------
ACCEPTED_DIR = Path(__file__).with_name("accepted_configs")
ACCEPTED_CONFIGS = sorted(ACCEPTED_DIR.glob("*.yaml"))


@pytest.fixture(scope="module")
def bad_outcomes(default_app) -> dict[str, Outcome]:
    """Every bad config through both phases: phase 1 in one batch, the rest in the default app's account."""
    return validate_files(BAD_CONFIGS, default_app)


@pytest.fixture(scope="module")
def accepted_outcomes(default_app) -> dict[str, Outcome]:
    return validate_files(ACCEPTED_CONFIGS, default_app)


def test_corpora_are_not_trivial():
    assert len(BAD_CONFIGS) >= 20 and len(ACCEPTED_CONFIGS) >= 6


@pytest.mark.parametrize("path", BAD_CONFIGS, ids=[p.stem for p in BAD_CONFIGS])
def test_bad_config_fails_with_file_line_key_and_fix(path: Path, bad_outcomes: dict[str, Outcome]):
    messages = bad_outcomes[path.name].errors
    expected = expectations(path, "expect")
    assert expected, f"{path.name} must start with '# expect: <message>'"
    for text in expected:
        assert any(text in m for m in messages), f"expected {text!r} among:\n" + "\n".join(messages)
    for message in messages:
        location = message.split(":", 2)
        assert location[0] == f"bad_configs/{path.name}" and location[1].isdigit(), message
        assert "\n  fix: " in message


@pytest.mark.parametrize("path", ACCEPTED_CONFIGS, ids=[p.stem for p in ACCEPTED_CONFIGS])
def test_configs_parallelcluster_accepts_synthesize(path: Path, accepted_outcomes: dict[str, Outcome]):
    """Configs in the styles of other repositories: no ERROR, and the warnings each file announces."""
    outcome = accepted_outcomes[path.name]
    assert outcome.errors == []
    for text in expectations(path, "warns"):
        assert any(text in w for w in outcome.warnings), f"expected {text!r} among:\n" + "\n".join(outcome.warnings)


def test_error_points_at_the_offending_line(bad_outcomes: dict[str, Outcome]):
    text = (BAD_DIR / "efa_on_t3.yaml").read_text().splitlines()
    line = next(i for i, l in enumerate(text, 1) if l.strip() == "InstanceType: t3.large")
    [message] = [m for m in bad_outcomes["efa_on_t3.yaml"].errors if "does not support EFA" in m]
    assert message.startswith(f"bad_configs/efa_on_t3.yaml:{line}: ")


def test_errors_are_listed_in_line_order(bad_outcomes: dict[str, Outcome]):
    lines = [int(m.split(":")[1]) for m in bad_outcomes["errors_in_line_order.yaml"].errors]
    assert len(lines) == 4 and lines == sorted(lines)


def test_unknown_key_suggests_the_right_one(bad_outcomes: dict[str, Outcome]):
    [message] = [m for m in bad_outcomes["unknown_key.yaml"].errors if "Unknown field" in m]
    assert "fix: did you mean InstanceType? keys allowed here: CustomActions, Dcv" in message


def test_stand_ins_are_announced_not_rejected(accepted_outcomes: dict[str, Outcome]):
    warnings = accepted_outcomes["existing_resources_by_id.yaml"].warnings
    assert sum("not checked offline" in w for w in warnings) == 5
    assert all("ParallelCluster checks it against your account at deploy time" in w
               for w in warnings if "not checked offline" in w)


def test_answers_are_cached_by_content(tmp_path: Path, monkeypatch):
    from cluster_yaml import sidecar, validation

    monkeypatch.setattr(sidecar, "CACHE_DIR", tmp_path)
    monkeypatch.setattr(validation, "CACHE_DIR", tmp_path)
    document = cluster_yaml.load_named_config("vanilla")
    request = [(document, values_for(document), "hpc-cluster")]
    first = validation.Validation(request, region=REGION, parallelcluster_version="3.16.1", full=False)
    assert first.worker is not None and first.check()
    first.close()
    again = validation.Validation(request, region=REGION, parallelcluster_version="3.16.1", full=False)
    assert again.worker is None and again.check()  # answered from the cache, no process
    uncached = validation.Validation(request, region=REGION, parallelcluster_version="3.16.1", full=False,
                                     use_cache=False)
    assert uncached.worker is not None and uncached.check()
    uncached.close()
    changed = document_of("Region: us-east-1\nTypo: x\n", tmp_path)
    with pytest.raises((ConfigError, ConfigErrors), match="Unknown field"), validation.Validation(
            [(changed, values_for(changed), "c")], region=REGION, parallelcluster_version="3.16.1", full=False) as fresh:
        fresh.check()


@pytest.mark.parametrize("failure", [None, "synth"])
def test_the_validation_worker_lives_exactly_as_long_as_the_synthesis(tmp_path: Path, monkeypatch, failure):
    """One owner (the `with` block of stacks.app_builder.synthesize) stops ParallelCluster's worker, whether the
    synthesis succeeds or fails part-way."""
    from aws_cdk import App

    from cluster_yaml import sidecar, validation
    from settings.context import shipped_context
    from stacks.app_builder import synthesize
    from stacks.plan import plan
    from tests.kept_template_validation import validated_app

    # ParallelCluster's answers the repository's cache holds, without the hints that let a synthesis skip the worker:
    # one must start, and it need not run a whole validation again when the answer is there.
    for answer in sidecar.CACHE_DIR.glob("*.json"):
        if answer != sidecar.last_account_file(REGION):  # no account to build ahead: the worker only starts
            shutil.copy(answer, tmp_path)
    monkeypatch.setattr(sidecar, "CACHE_DIR", tmp_path)
    monkeypatch.setattr(validation, "CACHE_DIR", tmp_path)
    context = shipped_context()
    prepared = plan(context.get)
    started = prepared.validation.worker
    assert started is not None
    if failure:
        def broken(self, **_):
            raise RuntimeError("no space left on device")
        monkeypatch.setattr(App, "synth", broken)
        with pytest.raises(RuntimeError, match="no space left"):
            synthesize(validated_app(context, outdir=str(tmp_path / "out")), prepared)
    else:
        synthesize(validated_app(context, outdir=str(tmp_path / "out")), prepared)
    assert prepared.validation.worker is None and started.process.poll() is not None


# -- project rules --------------------------------------------------------------------------------
def test_each_project_rule_is_named_levelled_and_documented_once_in_the_rules_table():
    import re

    from cluster_yaml.rules import MAX_HEAD_NODE_BOOTSTRAP_SECONDS, RULES
    from settings.context import REPO_ROOT

    names = [r.name for r in RULES]
    assert len(set(names)) == len(names) and all(re.fullmatch(r"[A-Z][A-Za-z]+Rule", n) for n in names)
    assert str(MAX_HEAD_NODE_BOOTSTRAP_SECONDS) in next(r.summary for r in RULES if r.name == "HeadNodeBootstrapTimeoutRule")
    text = (REPO_ROOT / "docs" / "cluster-configs.md").read_text()
    table = text.split("<!-- project-rules:start -->\n")[1].split("<!-- project-rules:end -->")[0].splitlines()
    expected = [f"| `{r.name}` | {r.level.value} | {r.summary} |" for r in RULES]
    assert table[2:] == expected, "docs/cluster-configs.md's rules table is stale: its rows are\n" + "\n".join(expected)


def test_a_warning_rule_is_printed_with_parallelclusters_warnings_and_does_not_stop_the_synth(monkeypatch):
    from cluster_yaml import rules
    from tests.conftest import synth

    def flags_the_head_node(doc, config, _):
        """Flags the head node's type (this test's rule)."""
        yield doc.error(("HeadNode", "InstanceType"), "is flagged by this test's rule", "nothing to fix",
                        value=config["HeadNode"]["InstanceType"], has_value=True)

    monkeypatch.setattr(rules, "RULES", [*rules.RULES, rules.Rule("FlagsTheHeadNodeRule", rules.Level.WARNING,
                                                                    flags_the_head_node)])
    app = synth(HEAD_NODE_INSTANCE_TYPE="c5.4xlarge")  # synthesized here, with the rule registered
    [warning] = [w for w in app.deployment.warnings if "FlagsTheHeadNodeRule" in w]
    assert warning.startswith("cluster_configs/vanilla.yaml:")
    assert ("HeadNode.InstanceType = 'c5.4xlarge': project rule FlagsTheHeadNodeRule WARNING: is flagged by this "
            "test's rule; nothing to fix") in warning
    assert "ClusterStack" in app.stacks
