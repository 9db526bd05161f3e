"""cdk-nag (AwsSolutions and NIST 800-53 rev 5), cfn-lint and ParallelCluster's full validation on every
synthesized variant."""

from __future__ import annotations

import csv
import json
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Annotations, Match

from settings.context import REPO_ROOT
from tests.conftest import BRIDGE, COMPLIANCE_VARIANT_FILES, Synthesized, synth

# Every context variant that changes which resources exist gets its own compliance run.
VARIANTS = {
    "defaults": {},
    "multi-az-home": {"openzfs_deployment_type": "MULTI_AZ_1", "openzfs_throughput_mbps": 160,
                      "secondary_availability_zone": "us-east-1b"},
    "throwaway": {"destroy_data_on_delete": True},
    "gpu-p5": {"cluster_config": "gpu-p5", "CAPACITY_RESERVATION_ID": "cr-0123456789abcdef0"},
    "multi-queue": {"cluster_config": "multi-queue"},
    "job-bridge": BRIDGE,
    "accounting": {"slurm_accounting": True, "secondary_availability_zone": "us-east-1b"},
    "capacity-block": {"cluster_config": "gpu-p5", "CAPACITY_RESERVATION_ID": "cr-0123456789abcdef0",
                       "CAPACITY_TYPE": "CAPACITY_BLOCK"},
    "custom-ami": {"CUSTOM_AMI": "ami-0123456789abcdef0"},
}


@pytest.fixture(scope="module", params=list(VARIANTS), ids=list(VARIANTS))
def variant(request: pytest.FixtureRequest) -> Synthesized:
    return synth(**VARIANTS[request.param])


def nag_findings(app: Synthesized, level: str) -> list[str]:
    findings = []
    for name, stack in app.stacks.items():
        annotations = Annotations.from_stack(stack)
        found = (annotations.find_error if level == "error" else annotations.find_warning)(
            "*", Match.string_like_regexp("(AwsSolutions|NIST.800.53.R5)-.*"))
        findings += [f"{name}{m.id}: {m.entry.data}" for m in found]
    return findings


def test_both_nag_packs_judged_every_stack(variant: Synthesized):
    """The findings below are those of packs that ran (no findings at all would also pass them): each pack wrote
    its report of every stack, with rules it found met."""
    for name in variant.stacks:
        for pack in ("AwsSolutions", "NIST.800.53.R5"):
            report = Path(variant.assembly.directory) / f"{pack}--{name}-NagReport.csv"
            assert report.exists(), f"cdk-nag's {pack} pack did not run on {name}"
            with report.open() as rows:
                assert "Compliant" in {row["Compliance"] for row in csv.DictReader(rows)}, report.name


def test_cdk_nag_has_no_unsuppressed_errors(variant: Synthesized):
    assert nag_findings(variant, "error") == []


def test_cdk_nag_has_no_unsuppressed_warnings(variant: Synthesized):
    assert nag_findings(variant, "warning") == []


def test_every_nag_suppression_gives_a_specific_reason(variant: Synthesized):
    suppressions = [
        (f"{name}/{logical_id}", rule)
        for name in variant.stacks
        for logical_id, resource in variant.template(name).to_json()["Resources"].items()
        for rule in resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", [])
    ]
    assert suppressions, "expected at least the node-actions bucket's S1 suppression"
    for where, rule in suppressions:
        assert len(rule["reason"]) >= 40, f"{where} {rule['id']}: reason too vague: {rule['reason']!r}"


@lru_cache(maxsize=None)
def cfn_lint(region: str) -> Any:
    """cfn-lint with its rules loaded once per region, as its command line does for many templates (cfnlint.api.lint
    loads them for every template: 0.5 s of CPU each time)."""
    from cfnlint.config import ConfigMixIn
    from cfnlint.runner import Runner

    return Runner(ConfigMixIn(regions=[region]))


LINT_ANSWERS = REPO_ROOT / ".cache" / "cfn-lint"


def cfn_lint_errors(template: str, region: str) -> list[str]:
    """cfn-lint's E-findings on a template. They follow from the template, the region and cfn-lint's version alone,
    so they are kept under those (as ParallelCluster's answers are): a warm run lints only the templates that changed,
    and four of the nine variants share their PrereqStack (12 s of CPU a run)."""
    import hashlib

    from cfnlint.decode import decode_str
    from cfnlint.version import __version__

    from cluster_yaml.sidecar import write_atomically

    key = hashlib.sha256("\0".join((__version__, region, template)).encode()).hexdigest()
    answer = LINT_ANSWERS / f"{key}.json"
    try:
        return json.loads(answer.read_text())
    except (OSError, ValueError):
        pass
    parsed, matches = decode_str(template)
    matches = matches or list(cfn_lint(region).validate_template(parsed))
    errors = [str(m) for m in matches if m.rule.id.startswith("E")]
    write_atomically(answer, json.dumps(errors))  # as the validation cache: readers see a whole answer or none
    return errors


def test_cfn_lint_reports_no_errors(variant: Synthesized):
    for name, stack in variant.stacks.items():
        errors = cfn_lint_errors(json.dumps(variant.template(name).to_json()), stack.region)
        assert errors == [], f"{name}: " + "\n".join(errors)


def test_cfn_lint_answers_are_kept_by_template_and_found_for_a_broken_one(tmp_path, monkeypatch):
    """A kept answer is one cfn-lint gave: the same template is answered alike, and a broken one is linted afresh."""
    monkeypatch.setattr(sys.modules[__name__], "LINT_ANSWERS", tmp_path)
    broken = {"Resources": {"Topic": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": 42, "Nope": 1}}}}
    first = cfn_lint_errors(json.dumps(broken), "us-east-1")
    assert any("Nope" in error for error in first), first
    assert len(list(tmp_path.glob("*.json"))) == 1
    assert cfn_lint_errors(json.dumps(broken), "us-east-1") == first
    broken["Resources"]["Topic"]["Properties"].pop("Nope")
    assert not any("Nope" in error for error in cfn_lint_errors(json.dumps(broken), "us-east-1"))
    assert len(list(tmp_path.glob("*.json"))) == 2


def test_parallelcluster_validates_the_synthesized_config_with_no_error(variant: Synthesized):
    """Synth raised on any ERROR; what ran is ParallelCluster's create-time validation, not a sample of it."""
    assert variant.deployment.validators >= 70, variant.deployment
    assert not [w for w in variant.deployment.warnings if " ERROR " in w]


def test_every_file_that_synthesizes_the_variants_shares_their_worker():
    """`make test` runs the files that import VARIANTS in one worker (conftest's scheduler), so each variant is
    synthesized once: a new such file must be listed there too."""
    users = {f"tests/{path.name}" for path in (REPO_ROOT / "tests").glob("test_*.py")
             if "from tests.test_compliance import VARIANTS" in path.read_text()}
    assert users | {"tests/test_compliance.py"} == set(COMPLIANCE_VARIANT_FILES)
