"""The offline validation answers every AWS lookup ParallelCluster's validators make (pcluster_sidecar/lookups.yaml,
checked against the installed package), never turns what it cannot answer into an ERROR or a crash, and judges
instance types against a catalogue as current as the pinned release."""

from __future__ import annotations

import ast
import gzip
import json
import re
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from pcluster_sidecar import account as pcluster_account, instance_catalogue
from cluster_yaml.simulation import simulate
from cluster_yaml.validation import _worker_error
from cluster_yaml.sidecar import PCLUSTER_PYTHON, MachineryFailure, offline_env
from settings.context import REPO_ROOT

LOOKUPS = yaml.safe_load((REPO_ROOT / "pcluster_sidecar" / "lookups.yaml").read_text())
SITE = next((PCLUSTER_PYTHON.parent.parent / "lib").glob("python*/site-packages"))
PCLUSTER = SITE / "pcluster"


def parallelcluster_lookups() -> dict[str, set[str]]:
    """``service.method`` of every ``AWSApi.instance().<service>.<method>`` in ParallelCluster's validators and config
    model -> the validator classes that call it."""
    found: dict[str, set[str]] = {}
    for folder in ("validators", "config"):
        for path in sorted((PCLUSTER / folder).glob("*.py")):
            tree = ast.parse(path.read_text())
            for top in tree.body:
                for node in ast.walk(top):
                    if not (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)):
                        continue
                    call = node.value.value
                    if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and \
                            call.func.attr == "instance" and getattr(call.func.value, "id", "") == "AWSApi":
                        callers = found.setdefault(f"{node.value.attr}.{node.attr}", set())
                        if folder == "validators" and isinstance(top, ast.ClassDef) and top.name.endswith("Validator"):
                            callers.add(top.name)
    return found


def test_every_lookup_parallelcluster_makes_is_listed_with_its_validators():
    listed = {row["call"]: set(row["validators"]) for row in LOOKUPS["lookups"]}
    assert listed == parallelcluster_lookups()
    for row in LOOKUPS["lookups"]:
        assert row["answer"] in ("account", "stand-in", "catalogue", "deploy-time"), row
        assert row["keys"] and row["operations"], row
        assert row["answer"] != "deploy-time" or row.get("warning"), row


def test_every_stand_in_kind_has_a_maker_and_a_row():
    rows = LOOKUPS["lookups"] + LOOKUPS["other_operations"]
    kinds = {row["stand_in"] for row in rows if row.get("stand_in")}
    assert set(pcluster_account._REFERENCE_KINDS.values()) <= kinds
    for kind in kinds:
        assert callable(getattr(pcluster_account.SimulatedAccount, f"_stand_in_{kind}", None)), kind


def test_every_handler_is_a_listed_operation():
    operations = {op for row in LOOKUPS["lookups"] + LOOKUPS["other_operations"] for op in row["operations"]}
    handlers = set()
    for name in dir(pcluster_account.SimulatedAccount):
        if name.startswith("_on_"):
            service, operation = name[len("_on_"):].rsplit("_", 1)
            handlers.add(f"{service.replace('_', '-')}.{operation}")
    assert handlers <= operations, handlers - operations


def test_the_file_cache_key_is_parallelclusters():
    assert "FileCacheSettings.FileCacheId" in pcluster_account._REFERENCE_KINDS
    assert "FsxFileCacheSettings.FileCacheId" not in pcluster_account._REFERENCE_KINDS
    schema = (PCLUSTER / "schemas" / "cluster_schema.py").read_text()
    assert "file_cache_settings = fields.Nested(FileCacheSettingsSchema" in schema  # YAML key: FileCacheSettings


# -- what the simulation cannot answer ---------------------------------------------------------------------
PLACEMENT_GROUP_CONFIG = {
    "Region": "us-east-1", "Image": {"Os": "alinux2023"},
    "HeadNode": {"InstanceType": "c5.xlarge", "Networking": {"SubnetId": "PUBLIC"}, "Ssh": {"KeyName": "KEY"}},
    "Scheduling": {"Scheduler": "slurm", "SlurmQueues": [{
        "Name": "q1", "Networking": {"SubnetIds": ["PRIVATE"], "PlacementGroup": {"Enabled": True, "Name": "team-pg"}},
        "ComputeResources": [{"Name": "cr", "InstanceType": "c5n.18xlarge", "MaxCount": 2, "Efa": {"Enabled": True}}]}]},
}


@pytest.fixture(scope="module")
def account(default_app) -> dict:
    templates = {name: default_app.synthesis.template(name) for name in default_app.stacks}
    simulation = simulate(templates, "us-east-1")
    return {"account": simulation.account, "public": simulation.values["PublicSubnet"],
            "private": simulation.values["PrimaryPrivateSubnet"], "key": simulation.values["KeyPairName"]}


def in_simulator(account: dict, tmp_path: Path, bodies: dict[str, str]) -> dict[str, Any]:
    """Runs each of ``bodies`` in the ParallelCluster venv, in one process (its imports cost 3-4 s of CPU), with
    ``config``; a body sets ``sim`` (its SimulatedAccount of ``account``) and ``result``. Before the next body,
    sim's moto stops and what the body changed of SimulatedAccount is put back. Returns each body's result."""
    config = json.loads(json.dumps(PLACEMENT_GROUP_CONFIG).replace("PUBLIC", account["public"])
                        .replace("PRIVATE", account["private"]).replace('"KEY"', json.dumps(account["key"])))
    (tmp_path / "input.json").write_text(json.dumps({"account": account["account"], "config": config}))
    script = textwrap.dedent('''
        import json, sys
        sys.path.insert(0, "pcluster_sidecar")
        import account as pcluster_account
        data = json.load(open(sys.argv[1]))
        config = data["config"]
        results = {}
        original = dict(vars(pcluster_account.SimulatedAccount))
    ''')
    for name, body in bodies.items():
        script += f"def {name}():\n" + textwrap.indent(textwrap.dedent(body), "    ") + "    return result, sim\n"
        script += textwrap.dedent(f'''
            results[{name!r}], sim = {name}()
            sim.mock.stop()  # the next body's account starts from empty backends
            for key in set(vars(pcluster_account.SimulatedAccount)) - set(original):
                delattr(pcluster_account.SimulatedAccount, key)
            for key, value in original.items():
                if vars(pcluster_account.SimulatedAccount).get(key) is not value:
                    setattr(pcluster_account.SimulatedAccount, key, value)
        ''')
    script += "print(json.dumps(results))\n"
    done = subprocess.run([str(PCLUSTER_PYTHON), "-c", script, str(tmp_path / "input.json")], capture_output=True,
                          text=True, cwd=REPO_ROOT, env=offline_env("us-east-1"), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def gaps(account, tmp_path_factory) -> dict[str, Any]:
    """The simulation without its placement-group handler (moto implements no placement groups), and with a
    placement-group stand-in that fails."""
    return in_simulator(account, tmp_path_factory.mktemp("gaps"), {"unanswered_lookup": '''
        del pcluster_account.SimulatedAccount._on_ec2_DescribePlacementGroups
        sim = pcluster_account.SimulatedAccount("us-east-1")
        sim.prepare(data["account"])
        sim.stand_ins(config)
        result = sim.dry_run("hpc-cluster", config)
    ''', "failing_stand_in": '''
        def broken(self, value, parent, queue):
            raise RuntimeError("simulated gap")
        pcluster_account.SimulatedAccount._stand_in_placement_group = broken
        sim = pcluster_account.SimulatedAccount("us-east-1")
        sim.prepare(data["account"])
        result = sim.stand_ins(config)
    '''})


def test_a_lookup_the_simulation_cannot_answer_is_a_warning_naming_the_key(gaps):
    # Without the handler the simulation has no answer: ParallelCluster's validator must not turn that into an
    # ERROR, nor the check into a crash.
    result = gaps["unanswered_lookup"]
    findings = [f for f in result["findings"] if f["type"] == "PlacementGroupNamingValidator"]
    assert findings and all(f["level"] == "WARNING" for f in findings), result["findings"]
    assert "not checked offline: PlacementGroupNamingValidator needs" in findings[0]["message"]
    assert findings[0]["path"] == ["Scheduling", "SlurmQueues", 0, "Networking", "PlacementGroup"]
    assert not [f for f in result["findings"] if f["level"] == "ERROR"]


def test_a_stand_in_that_fails_is_announced_not_a_crash(gaps):
    [stand_in] = gaps["failing_stand_in"]
    assert stand_in["path"][-1] == "Name" and stand_in["value"] == "team-pg"
    assert "could not stand in for it (RuntimeError: simulated gap)" in stand_in["note"]


def test_a_failure_of_the_machinery_names_the_exception_and_what_was_checked():
    error = _worker_error(MachineryFailure("KeyError: 'vpc'", "ParallelCluster's validator EfaValidator"),
                          PCLUSTER_PYTHON)
    text = str(error)
    assert "while checking ParallelCluster's validator EfaValidator" in text
    assert "the validation machinery failed (KeyError: 'vpc')" in text and "not a finding about your config" in text
    assert "Subprocess exited" not in text and "make install" not in text


def test_the_worker_reports_a_crash_with_its_exception(tmp_path):
    from cluster_yaml.sidecar import PclusterProcess

    with PclusterProcess("us-east-1") as worker, pytest.raises(MachineryFailure) as failure:
        worker.ask({"dryrun": {"region": "us-east-1", "account": {"vpcs": [{"id": "vpc-1"}]}, "clusters": []}})
    assert failure.value.exception.startswith("KeyError") and "while checking" in str(failure.value)


# -- the instance-type catalogue ----------------------------------------------------------------------------
def catalogue() -> dict:
    return json.loads(gzip.open(SITE / "moto" / "ec2" / "resources" / "instance_types.json.gz").read())


def test_the_catalogue_record_matches_the_installed_data_and_is_as_current_as_parallelcluster():
    record = instance_catalogue.record()
    installed = {p.name.removeprefix("moto-").removesuffix(".dist-info") for p in SITE.glob("moto-*.dist-info")}
    assert installed == {record["version"]}
    assert len(catalogue()) == record["types"]
    assert record["data_date"] >= record["parallelcluster_date"]
    assert {p.name for p in SITE.glob("aws_parallelcluster-*.dist-info")} == {
        f"aws_parallelcluster-{record['parallelcluster']}.dist-info"}


def test_every_instance_type_parallelcluster_names_is_known_or_accepted_as_newer():
    known = catalogue()
    named = set()
    for path in PCLUSTER.rglob("*.py"):
        named |= set(re.findall(r"\b[a-z][a-z0-9]*\d[a-z0-9-]*\.\d*x?large\b", path.read_text()))
    assert "p6e-gb200.36xlarge" in named
    for name in named:
        assert name in known or instance_catalogue.plausible_new_type(name, known), name


@pytest.mark.parametrize("name, verdict", [
    ("c5n.18xlarg", False),         # a size word no type has: a typo
    ("c5m.9xlarge", False),         # an unknown family of an old generation: a typo
    ("c5n.24xlarge", False),        # an unknown size of an old family
    ("p6e-gb200.36xlarge", True),   # a new family of the newest p generation (ParallelCluster names it)
    ("c9i.4xlarge", True),          # a generation newer than the catalogue's
    ("zz1.large", True),            # a series the catalogue has never seen
    ("c5n.18xlarge", False),        # known: not a stand-in at all
])
def test_which_unknown_names_may_be_newer_than_the_catalogue(name, verdict):
    assert instance_catalogue.plausible_new_type(name, catalogue()) is verdict


def test_a_new_type_is_simulated_like_a_relative_of_its_architecture():
    known = catalogue()
    assert instance_catalogue.architecture("p6e-gb200.36xlarge") == "arm64"
    assert instance_catalogue.architecture("c9i.4xlarge") == "x86_64"
    relative = instance_catalogue.relative("c9i.4xlarge", known)
    assert "x86_64" in known[relative]["ProcessorInfo"]["SupportedArchitectures"]


def test_a_current_type_synthesizes_in_a_region_that_offers_it():
    """hpc7a is catalogued but not offered in us-east-1 (an ERROR naming us-east-2 among the regions that offer it,
    tests/bad_configs/instance_type_not_offered_in_region.yaml); in us-east-2 the shipped config takes it."""
    from tests.conftest import synth

    app = synth(availability_zone="us-east-2a", INSTANCE="hpc7a.24xlarge", NUM_INSTANCES="2")
    configs = [r["Properties"]["ClusterConfiguration"] for r in
               app.template("ClusterStack").find_resources("Custom::PclusterCluster").values()]
    assert configs[0]["Scheduling"]["SlurmQueues"][0]["ComputeResources"][0]["InstanceType"] == "hpc7a.24xlarge"
    assert app.deployment.validators > 60
