"""The tests' stand-in for CDK's built-in template validation reads as CDK's own: same failure, same report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from aws_cdk import App, CfnResource, CloudFormationValidatePlugin, Stack

from settings.context import shipped_context
from tests.kept_template_validation import KeptTemplateValidation, validated_app


def _subnet(app: App, vpc_id: str = "vpc-1", zone: str = "us-east-1a") -> App:
    """By default neither passes: a VPC id of the wrong form is an error, a hard-coded zone a warning."""
    stack = Stack(app, "Checked", env={"account": "123456789012", "region": "us-east-1"})
    CfnResource(stack, "Subnet", type="AWS::EC2::Subnet",
                properties={"VpcId": vpc_id, "CidrBlock": "10.0.0.0/24", "AvailabilityZone": zone})
    return app


def _synth(app: App) -> tuple[str, str]:
    """What a user sees of the validation: the synthesis's error and CDK's report file, paths made neutral."""
    _subnet(app)
    with pytest.raises(RuntimeError) as failure:
        app.synth()
    [report_file] = re.findall(r"found in: (\S+validation-report\.json)", str(failure.value))
    outdir = str(Path(report_file).parent)
    return str(failure.value).replace(outdir, "OUT"), Path(report_file).read_text().replace(outdir, "OUT")


@pytest.fixture(scope="module")
def engine() -> CloudFormationValidatePlugin:
    return CloudFormationValidatePlugin()  # about 4 s of CPU to start: one for the file


def test_a_kept_report_fails_the_synthesis_as_cdks_own_plugin(tmp_path, engine: CloudFormationValidatePlugin):
    context = shipped_context()  # cdk.json turns the plugin's errors into a failed synthesis
    # CDK's own plugin, the class App registers by itself, registered by hand to share the file's engine.
    built_in = _synth(validated_app(context, engine))
    assert "E1151" in built_in[0] and "W3010" in built_in[0]  # the error and the warning are CDK's to report

    started: list[CloudFormationValidatePlugin] = []

    def start() -> CloudFormationValidatePlugin:
        started.append(engine)
        return engine

    answers = []
    for _ in range(2):  # the first runs the engine and keeps its report, the second reads it
        answers.append(_synth(validated_app(context, KeptTemplateValidation(tmp_path, start))))
    assert answers == [built_in, built_in]
    assert len(started) == 1 and len(list(tmp_path.glob("*.json"))) == 1


def test_an_edited_template_is_validated_afresh(tmp_path, engine: CloudFormationValidatePlugin):
    kept = KeptTemplateValidation(tmp_path, lambda: engine)

    def synth(zone: str) -> None:
        _subnet(validated_app(shipped_context(), kept), vpc_id="vpc-0123456789abcdef0", zone=zone).synth()

    synth("us-east-1a")
    synth("us-east-1b")
    reports = sorted(tmp_path.glob("*.json"))
    assert len(reports) == 2
    reports[0].write_text('{"success": true')  # a report cut short (a killed writer) is made again
    synth("us-east-1a")
    synth("us-east-1b")
    assert all(json.loads(report.read_text())["violations"] for report in reports)  # W3010 in both


def test_every_shared_synthesis_is_validated():
    # The shared synthesis (conftest.Synthesized) turns CDK's own registration off: its stand-in must be there.
    message, _ = _synth(validated_app(shipped_context()))
    assert "E1151" in message and "W3010" in message
