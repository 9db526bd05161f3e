"""Several clusters on one PrereqStack (the `clusters` knob): each in its own stack, with the provider of its
ParallelCluster version, validated by that version's own package, mounting the same file systems."""

from __future__ import annotations

from typing import Any

import pytest

from lifecycle.update_preview import provider_version
from settings.cluster import Clusters
from settings.context import ContextReader
from settings.errors import ConfigError, ConfigErrors
from tests.conftest import BRIDGE, synth

SUBMITTER = BRIDGE["job_bridge_submitters"]
BLUE_GREEN = {"hpc-cluster": {"parallelcluster_version": "3.15.1"},
              "hpc-cluster-2": {"parallelcluster_version": "3.16.1", "config": "multi-queue"}}


def clusters(**context: Any) -> Clusters:
    return Clusters.from_context(ContextReader(context.get))


def problems(**context: Any) -> str:
    with pytest.raises((ConfigError, ConfigErrors)) as info:
        clusters(**context)
    return str(info.value)


def test_without_clusters_the_one_cluster_stays_in_cluster_stack():
    [only] = clusters().clusters
    assert (only.cluster_name, only.stack_name) == ("hpc-cluster", "ClusterStack")
    assert set(synth().stacks) == {"PrereqStack", "ClusterStack"}


def test_the_cluster_named_by_cluster_name_keeps_cluster_stack_and_the_others_get_their_own():
    found = {c.cluster_name: c for c in clusters(clusters=BLUE_GREEN).clusters}
    assert found["hpc-cluster"].stack_name == "ClusterStack"
    assert found["hpc-cluster-2"].stack_name == "ClusterStack-hpc-cluster-2"
    assert (found["hpc-cluster-2"].cluster_config, found["hpc-cluster"].cluster_config) == ("multi-queue", "vanilla")
    # From -c, the same as JSON text
    assert clusters(clusters='{"a": {}, "b": {}}').clusters[1].stack_name == "ClusterStack-b"


def test_two_versions_side_by_side_on_one_prereq_stack(monkeypatch):
    """Each cluster stack deploys its version's provider and imports PrereqStack's exports; the file systems and
    their S3 links exist once; each cluster is validated by its own version's package (phase 2 runs once per
    version; a package answering with another version is a synth error)."""
    from cluster_yaml import validation

    validated: list[tuple[str, list[str]]] = []
    original = validation.Validation.check_deployment

    def recording(self, templates, **kwargs):
        validated.append((self.version, [name for _, name in self.documents]))
        return original(self, templates, **kwargs)

    monkeypatch.setattr(validation.Validation, "check_deployment", recording)
    from settings.context import shipped_context
    from stacks.app_builder import synthesize
    from tests.kept_template_validation import validated_app

    synthesis = synthesize(validated_app({**shipped_context(), "clusters": BLUE_GREEN}))
    assert sorted(validated) == [("3.15.1", ["hpc-cluster"]), ("3.16.1", ["hpc-cluster-2"])]
    templates = {name: synthesis.template(name) for name in synthesis.stacks}
    assert set(templates) == {"PrereqStack", "ClusterStack", "ClusterStack-hpc-cluster-2"}
    assert provider_version(templates["ClusterStack"]) == "3.15.1"
    assert provider_version(templates["ClusterStack-hpc-cluster-2"]) == "3.16.1"
    for name in ("ClusterStack", "ClusterStack-hpc-cluster-2"):
        resources = templates[name]["Resources"].values()
        assert not [r for r in resources if r["Type"].startswith("AWS::FSx::")]  # no storage of its own
        imports = templates[name]["Outputs"]["PrereqExportsInUse"]["Value"]["Fn::Join"][1]
        assert {"Fn::ImportValue": "PrereqStack-FSxLustreFilesystemId"} in imports
    dras = [r for r in templates["PrereqStack"]["Resources"].values()
            if r["Type"] == "AWS::FSx::DataRepositoryAssociation"]
    assert len(dras) == 2
    assert "hpc-cluster-2" in templates["ClusterStack-hpc-cluster-2"]["Description"]


def test_the_job_bridge_runs_on_the_one_cluster_that_names_it():
    app = synth(clusters={"hpc-cluster": {"job_bridge": False}, "hpc-cluster-2": {"job_bridge": True}}, **BRIDGE)
    assert "JobBridgePrefix" in app.template("ClusterStack-hpc-cluster-2").to_json()["Outputs"]
    assert "JobBridgePrefix" not in app.template("ClusterStack").to_json()["Outputs"]


@pytest.mark.parametrize("context,expected", [
    ({"clusters": {"a": {"job_bridge": True}, "b": {"job_bridge": True}}, **BRIDGE},
     "context 'clusters' = {'a': {'job_bridge': True}, 'b': {'job_bridge': True}}: runs the job bridge on 2 clusters "
     "(a, b); both head nodes would sweep the same job folders\n  fix: set \"job_bridge\": true on one cluster"),
    ({"clusters": {"a": {"job_bridge": True}}}, "context 'job_bridge_submitters' = []: is empty, and cluster 'a' "
                                               "runs the job bridge"),
    ({"clusters": {"a": {}}, **BRIDGE}, "names no cluster with \"job_bridge\": true, and job_bridge=true"),
    ({"clusters": {"a": {"version": "3.16.1"}}}, "cluster 'a': has unknown keys version\n  fix: use only config, "
                                                 "parallelcluster_version, job_bridge"),
    ({"clusters": {"a": {"parallelcluster_version": "3.14.0"}}},
     "cluster 'a': is not a version this app validates offline (supported: 3.15.1, 3.16.1)"),
    ({"clusters": {"ClusterStack-a": {}}}, "cluster 'ClusterStack-a': equals a stack name of this app"),
    ({"clusters": {"a": "3.16.1"}}, "cluster 'a': is not an object"),
    ({"clusters": ["a"]}, "context 'clusters' = ['a']: must be a JSON object\n  fix: write it as a JSON object in "
                          "cdk.json, e.g. \"clusters\": {}"),
    ({"clusters": "{a"}, "context 'clusters' = '{a': is not valid JSON (Expecting property name enclosed in double "
                         "quotes at character 1)\n  fix: pass a JSON object, e.g. -c 'clusters={}'"),
])
def test_bad_clusters_are_refused_naming_the_key_and_the_fix(context, expected):
    assert expected in problems(**context)


def test_each_cluster_config_is_checked_with_its_file_named():
    from tests.test_cluster_stack import build_error

    message = build_error(clusters={"hpc-cluster": {}, "second": {"config": "no-such-config"}})
    assert "no-such-config" in message and "Traceback" not in message


# -- the lifecycle reports see every cluster stack ---------------------------------------------------------------
TWO = {"hpc-cluster": {}, "hpc-cluster-2": {}}


def write_assembly(directory, app) -> str:
    import json

    directory.mkdir()
    for name in app.stacks:
        (directory / f"{name}.template.json").write_text(json.dumps(app.template(name).to_json()))
    return str(directory)


def test_destroy_deletes_every_cluster_stack_before_prereq_stack():
    from lifecycle.destroy_plan import simulate, to_text

    app = synth(clusters=TWO)
    outcome = simulate({name: app.template(name).to_json() for name in app.stacks})
    assert outcome.completes and outcome.order == ("ClusterStack", "ClusterStack-hpc-cluster-2", "PrereqStack")
    text = to_text(outcome)
    assert text.startswith("`cdk destroy ClusterStack ClusterStack-hpc-cluster-2 PrereqStack` (the cluster stacks "
                           "first) completes.")
    assert "ClusterStack-hpc-cluster-2: the ParallelCluster cluster" in text


def test_adding_a_cluster_previews_its_creation_and_leaves_the_first_alone(tmp_path):
    import subprocess

    from tests.conftest import installed_command

    base, target = write_assembly(tmp_path / "base", synth()), write_assembly(tmp_path / "target", synth(clusters=TWO))
    result = subprocess.run([installed_command("hpc-update-preview"), "--base", base, "--target", target],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.split("== ClusterStack-hpc-cluster-2 ==")
    assert first.startswith("== ClusterStack ==") and "will be created" not in first
    assert "cluster hpc-cluster-2 will be created" in second
    guard = subprocess.run([installed_command("hpc-replacement-guard"), "--base", base, "--target", target],
                           capture_output=True, text=True)
    assert guard.returncode == 0 and "No resource is replaced or deleted." in guard.stdout


def test_a_cluster_gone_from_the_app_is_not_a_deletion_the_guard_reports():
    """`cdk deploy` leaves a stack the app no longer has as it is; removing it is `cdk destroy <stack>` first."""
    from lifecycle.replacement_guard import replacements

    two, one = synth(clusters=TWO), synth()
    stacks = list(two.stacks)
    assert replacements({s: two.template(s).to_json() for s in stacks},
                        {s: one.template(s).to_json() if s in one.stacks else None for s in stacks}) == []


@pytest.mark.parametrize("context,versions", [
    ({"parallelcluster_version": "3.16.1"}, "3.16.1"),
    ({"parallelcluster_version": "3.16.1", "clusters": BLUE_GREEN}, "3.15.1 3.16.1"),
    ({"parallelcluster_version": "3.15.1", "clusters": {"a": {}, "b": {}}}, "3.15.1"),
])
def test_make_install_builds_the_venv_of_every_version_a_cluster_uses(tmp_path, context, versions):
    """README's `make install` builds only the ParallelCluster venvs cdk.json's clusters use."""
    import json
    import shutil
    import subprocess

    from settings.context import REPO_ROOT

    shutil.copy(REPO_ROOT / "Makefile", tmp_path / "Makefile")
    (tmp_path / "cdk.json").write_text(json.dumps({"context": context}))
    database = subprocess.run(["make", "-C", str(tmp_path), "-pn", "install"], capture_output=True, text=True).stdout
    assert f"USED_PCLUSTER_VERSIONS := {versions}\n" in database


def test_two_clusters_never_share_the_accounting_database():
    """Each head node would run a slurmdbd of its own on it; ParallelCluster's guide recommends an external
    Slurmdbd when clusters share a database."""
    from tests.test_cluster_stack import build_error

    message = build_error(slurm_accounting=True, secondary_availability_zone="us-east-1b", clusters=TWO)
    assert "context 'clusters' = ['hpc-cluster', 'hpc-cluster-2']: gives 2 clusters the one accounting database" \
           in message and "slurm-accounting-v3.html" in message and "Traceback" not in message
