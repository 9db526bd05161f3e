"""CDK's built-in template validation (the CloudFormation Validate plugin; cdk.json's
`@aws-cdk/core:validateAgainstDefaultRules` makes its errors fail `cdk synth`), with its reports kept by content.

Its engine costs about 4 s of CPU to start in every jsii kernel and 0.2 s per synthesis, about a tenth of a warm
`make test`. Its report follows from the templates, their stacks' paths, accounts and regions and the aws-cdk-lib
version alone (the engine is bundled in aws-cdk-lib), so each report is kept under those in .cache/cdk-validate and
the same templates are answered from there, pointing at this synthesis's own files. CDK itself still reads the report
and decides, as for its own plugin: errors or warnings, acknowledgements, the printed report, a failed synthesis.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path
from typing import Any, Callable

import jsii
from aws_cdk import (App, CloudFormationValidatePlugin, IPolicyValidationContext, IPolicyValidationPlugin,
                     PolicyValidationPluginReport, PolicyViolatingResource, PolicyViolation, Validations)

from cluster_yaml.sidecar import write_atomically

REPORTS = Path(__file__).resolve().parent.parent / ".cache" / "cdk-validate"


@jsii.implements(IPolicyValidationPlugin)
class KeptTemplateValidation:
    """Stands in for the plugin CDK registers by itself (`App(builtin_cloud_formation_validation=False)`), under
    its name, so that CDK treats the report as the built-in plugin's."""

    def __init__(self, reports: Path = REPORTS,
                 engine: Callable[[], CloudFormationValidatePlugin] = CloudFormationValidatePlugin) -> None:
        self._reports = reports
        self._engine_factory = engine
        self._engine: CloudFormationValidatePlugin | None = None
        self._version: str | None = None

    @property
    def name(self) -> str:
        return CloudFormationValidatePlugin.PLUGIN_NAME

    @property
    def rule_ids(self) -> list[str] | None:
        return None

    @property
    def version(self) -> str | None:
        return self._version  # CDK reads it after validate(): the version of the engine that made the report

    def validate(self, context: IPolicyValidationContext) -> PolicyValidationPluginReport:
        stacks = context.stack_templates
        kept = self._reports / f"{_key(stacks)}.json"
        try:
            report, self._version = _report(json.loads(kept.read_text()), stacks)
            return report
        except (OSError, ValueError, KeyError, TypeError):  # none kept, or not whole: CDK's plugin answers
            pass
        if self._engine is None:
            self._engine = self._engine_factory()  # one engine per test process, as CDK keeps one per kernel
        report = self._engine.validate(context)
        self._version = self._engine.version
        write_atomically(kept, json.dumps(_plain(report, stacks) | {"engine_version": self._version}))
        return report


def _key(stacks: list[Any]) -> str:
    inputs = [[stack.stack_construct_path, stack.account_id, stack.region, Path(stack.template_path).read_text()]
              for stack in stacks]
    return hashlib.sha256(json.dumps([version("aws-cdk-lib"), inputs]).encode()).hexdigest()


def _plain(report: PolicyValidationPluginReport, stacks: list[Any]) -> dict[str, Any]:
    """The report as JSON, each template path as the index of its stack."""
    paths = [stack.template_path for stack in stacks]

    def plain(value: Any) -> Any:
        if hasattr(value, "_values"):  # a jsii struct
            return {key: paths.index(item) if key == "template_path" else plain(item)
                    for key, item in value._values.items()}
        return [plain(item) for item in value] if isinstance(value, list) else value
    return plain(report)


def _report(kept: dict[str, Any], stacks: list[Any]) -> tuple[PolicyValidationPluginReport, str | None]:
    def resource(values: dict[str, Any]) -> PolicyViolatingResource:
        if "template_path" in values:
            values = values | {"template_path": stacks[values["template_path"]].template_path}
        return PolicyViolatingResource(**values)

    violations = [PolicyViolation(**(v | {"violating_resources": [resource(r) for r in v["violating_resources"]]}))
                  for v in kept["violations"]]
    others = {key: value for key, value in kept.items() if key not in ("violations", "engine_version")}
    return PolicyValidationPluginReport(**others, violations=violations), kept["engine_version"]


@lru_cache(maxsize=None)
def _shared() -> KeptTemplateValidation:
    return KeptTemplateValidation()


def validated_app(context: dict[str, Any], plugin: IPolicyValidationPlugin | None = None, **props: Any) -> App:
    """An App that validates its templates as `cdk synth` does, through ``plugin`` in place of the one CDK registers
    itself: by default the stand-in that answers templates seen before from the kept reports (one per process, so
    that its engine starts at most once)."""
    app = App(context=context, builtin_cloud_formation_validation=False, **props)
    Validations.of(app).add_plugins(plugin or _shared())
    return app
