"""Snapshots of the synthesized templates: any change shows up as a reviewed diff in the PR.

Update after an intended change with: .venv/bin/python -m pytest tests/test_snapshots.py --snapshot-update
"""

from __future__ import annotations

from typing import Any

import pytest
from syrupy.extensions.json import JSONSnapshotExtension

from tests.conftest import BRIDGE, Synthesized, synth


@pytest.fixture
def snapshot_json(snapshot):
    return snapshot.use_extension(JSONSnapshotExtension)


def reviewable(template: dict[str, Any]) -> dict[str, Any]:
    """The template without CDK's version-reporting resource, which changes with every CDK release."""
    resources = {k: v for k, v in template["Resources"].items() if v["Type"] != "AWS::CDK::Metadata"}
    return {**template, "Resources": resources}


def test_prereq_stack_template(default_app: Synthesized, snapshot_json):
    assert reviewable(default_app.template("PrereqStack").to_json()) == snapshot_json


def test_cluster_stack_template(default_app: Synthesized, snapshot_json):
    assert reviewable(default_app.template("ClusterStack").to_json()) == snapshot_json


def test_prereq_stack_with_slurm_accounting(snapshot_json):
    app = synth(slurm_accounting=True, secondary_availability_zone="us-east-1b")
    assert reviewable(app.template("PrereqStack").to_json()) == snapshot_json


def test_cluster_stack_with_job_bridge(snapshot_json):
    assert reviewable(synth(**BRIDGE).template("ClusterStack").to_json()) == snapshot_json
