"""Validating cluster configs at synth, offline, in two phases, with one ParallelCluster worker process.

1. ``Validation(...)``, before any stack is built: placeholders are rendered (with stand-in ids), our
   own rules run, and ParallelCluster's schema check is sent to the worker. ``check()`` raises every
   problem found, each with file, line, key and fix.
2. ``check_deployment(templates)``, once the app is synthesized: the account the templates create is
   simulated (simulation.py) and ParallelCluster's full create-time validation runs against it on the
   config exactly as the template carries it. ERROR findings raise; WARNING and INFO are returned.

The worker starts in phase 1 and builds the simulated account while the stacks are being built.
Both answers are cached by content (sidecar.py), so an unchanged synth pays for neither.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cluster_yaml.document import ConfigDocument, YamlPath, format_path
from cluster_yaml.render import PlaceholderValues, render
from cluster_yaml.rules import Level, RuleContext, check_rules
from cluster_yaml.schema import SchemaRequest, errors_from, schema_request, version_error
from cluster_yaml.simulation import simulate
from cluster_yaml.sidecar import (CACHE_DIR, INSTALL_HINT, MachineryFailure, PclusterProcess, WorkerError,
                                   cache_key, cached, pcluster_python, remember_account, store)
from settings.errors import ConfigError, ConfigErrors

# What to change, for the validators that fire most on configs brought from elsewhere; ParallelCluster's
# own message (kept in full) says what it found.
FIXES = {
    "ExistingFsxNetworkingValidator": "attach ${SecurityGroup} (the group PrereqStack's file systems admit) to this "
                                      "section's Networking.AdditionalSecurityGroups, or open the ports named",
    "EfaValidator": "use an instance type with EFA (e.g. c5n.18xlarge, hpc7a.96xlarge, p5.48xlarge) or set "
                    "Efa.Enabled: false",
    "ComputeResourceSizeValidator": "set MinCount <= MaxCount (equal values keep a static fleet)",
    "KeyPairValidator": "use ${KeyPairName} (the key pair PrereqStack creates) or the name of an existing key pair",
    "CapacityReservationValidator": "target a reservation of this instance type, in the queue's subnet's zone",
    "CapacityReservationSizeValidator": "keep MaxCount within the reservation's instance count",
    "CapacityTypeValidator": "match CapacityType to the reservation (CAPACITY_BLOCK for a Capacity Block)",
    "PlacementGroupCapacityReservationValidator": "use the placement group the reservation was made in, or disable "
                                                  "the placement group",
    "SubnetsValidator": "use ${PublicSubnet} / ${PrimaryPrivateSubnet} or subnets of the same VPC",
    "InstanceTypeValidator": "use an instance type offered in the stacks' availability zone",
}
SEQUENCE = "Sequence"
# Validators whose finding is about one key, wherever the message's values also appear (the head node's type
# may equal a queue's).
FINDING_KEYS: dict[str, YamlPath] = {"HeadNodeMemorySizeValidator": ("HeadNode", "InstanceType")}
# Validators about a value that comes from CDK context rather than the YAML.
CONTEXT_VALIDATORS = {"ClusterNameValidator": ("cluster_name", "choose a shorter cluster_name (-c cluster_name=...)")}


@dataclass
class DeploymentResult:
    warnings: list[str] = field(default_factory=list)
    validators: int = 0
    runs: int = 0
    seconds: float = 0.0


class Validation:
    """Both phases for a list of (document, placeholder values, cluster name).

    The ParallelCluster worker it starts lives as long as the ``with`` block that owns it (the app's synthesis,
    stacks/app_builder.py): errors raised inside leave through ``__exit__``, which stops it."""

    def __init__(self, requests: list[tuple[ConfigDocument, PlaceholderValues, str]], *, region: str,
                 parallelcluster_version: str, use_cache: bool = True, full: bool = True) -> None:
        self.region, self.version, self.use_cache = region, parallelcluster_version, use_cache
        self.python = pcluster_python(parallelcluster_version)  # each version is judged by its own package
        self.errors: list[ConfigError] = []
        self.rule_warnings: list[str] = []  # project rules' WARNING and INFO findings, printed with ParallelCluster's
        self.rendered: list[dict[str, Any]] = []
        self.documents: list[tuple[ConfigDocument, str]] = []
        self.schema_requests: list[SchemaRequest] = []
        self.worker: PclusterProcess | None = None
        for document, values, cluster_name in requests:
            try:
                config = render(document, values)
            except ConfigError as error:
                self.errors.append(error)
                continue
            except ConfigErrors as many:
                self.errors.extend(many.errors)
                continue
            rule_context = RuleContext(scripts_bucket=values.stack.get("ScriptsBucket", ""),
                                       read_policy=values.stack.get("NodeActionsReadPolicy", ""), region=region,
                                       cluster_name=cluster_name)
            for finding in check_rules(document, config, rule_context):
                if finding.level is Level.ERROR:
                    self.errors.append(finding.error)
                else:
                    self.rule_warnings.append(finding.as_warning())
            self.schema_requests.append(SchemaRequest(document, config, cluster_name))
            self.documents.append((document, cluster_name))
            self.rendered.append(config)
        self.schema_answer: dict[str, Any] | None = None
        self.schema_key = ""
        if self.schema_requests:
            request = schema_request(self.schema_requests)
            self.schema_key = cache_key(request, self.python)
            self.schema_answer = cached(self.schema_key) if use_cache else None
            if self.schema_answer is None or (full and not self._deployment_likely_cached()):
                self._start_worker(warm=full)
            if self.schema_answer is None and self.worker:
                self.worker.send(request)

    # -- the worker ---------------------------------------------------------------------------------------
    def _start_worker(self, warm: bool) -> None:
        if not self.python.exists():
            self.errors.append(ConfigError(
                source="cdk.json or -c", key="context 'parallelcluster_version'", value=self.version,
                problem=f"is validated by ParallelCluster {self.version}'s own package, in "
                        f"{self.python.parent.parent.name}, which is not installed",
                fix=f"run `make pcluster-venv PCLUSTER_VERSION={self.version}` (`make install` builds the venvs of "
                    "the versions cdk.json uses)"))
            return
        try:
            self.worker = PclusterProcess(self.region, warm=warm, python=self.python)
        except WorkerError as error:
            self.errors.append(_worker_error(error, self.python))

    def close(self) -> None:
        if self.worker:
            self.worker.close()
            self.worker = None

    def __enter__(self) -> "Validation":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _deployment_likely_cached(self) -> bool:
        """The last deployment check that followed this schema answer is cached: no need to warm up."""
        hint = CACHE_DIR / f"{self.schema_key}.next"
        return hint.exists() and cached(hint.read_text().strip()) is not None

    # -- phase 1 -------------------------------------------------------------------------------------------
    def check(self) -> list[dict[str, Any]]:
        """Render, rule and schema errors, all at once; returns the rendered configs."""
        errors = list(self.errors)
        if self.schema_requests and self.schema_answer is None and self.worker:
            try:
                self.schema_answer = self.worker.receive()
                if self.use_cache:
                    store(self.schema_key, self.schema_answer)
            except WorkerError as error:
                errors.append(_worker_error(error, self.python))
        if self.schema_answer is not None:
            errors += errors_from(self.schema_requests, self.schema_answer, self.version)
        self.errors = []
        _raise(errors, self)
        return self.rendered

    # -- phase 2 -------------------------------------------------------------------------------------------
    def check_deployment(self, templates: dict[str, dict[str, Any]], *,
                         objects: dict[str, list[str]] | None = None,
                         configs: list[dict[str, Any]] | None = None) -> DeploymentResult:
        """ParallelCluster's full validation of the configs in ``templates`` (or of ``configs``, rendered with
        the simulated ids), in the account the templates create. Raises ConfigErrors on ERROR findings."""
        self.check()
        try:
            simulation = simulate(templates, self.region, objects=objects)
        except Exception as error:  # noqa: BLE001 - a template the simulation cannot read: its fault, said so
            _raise([machinery_error(f"{type(error).__name__}: {error}", "the synthesized templates",
                                    "cluster_yaml/simulation.py")], self)
        if configs is None:  # this version's clusters, of all the app's cluster stacks
            by_name = dict(zip(simulation.cluster_names, simulation.configs))
            configs = [by_name[cluster_name] for _, cluster_name in self.documents if cluster_name in by_name]
        if len(configs) != len(self.documents):
            raise AssertionError(f"{len(configs)} cluster configs in the templates for {len(self.documents)} documents")
        request = {"dryrun": {"region": self.region, "account": simulation.account, "clusters": [
            {"name": document.source, "cluster_name": cluster_name, "config": config}
            for (document, cluster_name), config in zip(self.documents, configs)]}}
        key = cache_key(request, self.python)
        answer = cached(key) if self.use_cache else None
        try:
            if answer is None:
                if self.worker is None:
                    self._start_worker(warm=True)
                    _raise(self.errors, self)
                assert self.worker
                self.worker.send(request)
                remember_account(self.region, simulation.account)  # while the worker answers
                answer = self.worker.receive()
                if self.use_cache:
                    store(key, answer)
                    (CACHE_DIR / f"{self.schema_key}.next").write_text(key)
        except WorkerError as error:
            _raise([_worker_error(error, self.python)], self)
        self.close()  # done with ParallelCluster: free its memory before CDK writes the assembly
        mismatch = version_error(answer["version"], self.version)
        if mismatch:
            raise mismatch
        result = DeploymentResult(warnings=list(self.rule_warnings))
        errors: list[ConfigError] = []
        for (document, cluster_name), config, outcome in zip(self.documents, configs, answer["results"]):
            result.validators = max(result.validators, outcome["validators"])
            result.runs += outcome["runs"]
            result.seconds += outcome["seconds"]
            for stand_in in outcome["stand_ins"]:
                path = document_path(config, stand_in["path"])
                note = stand_in.get("note") or ("not checked offline: this app does not create it, so a passing "
                                                "stand-in was simulated")
                result.warnings.append(str(document.error(
                    path, note, "ParallelCluster checks it against your account at deploy time",
                    value=stand_in["value"], has_value=True)).replace("\n  fix: ", "; "))
            for finding in outcome["findings"]:
                path = FINDING_KEYS.get(finding["type"]) or refine(config, document_path(config, finding["path"]),
                                                                   finding["message"])
                message = simulation.readable(finding["message"])
                if finding["level"] == "ERROR" and finding["type"] in CONTEXT_VALIDATORS:
                    key, fix = CONTEXT_VALIDATORS[finding["type"]]
                    errors.append(ConfigError(source="cdk.json or -c", key=f"context '{key}'", value=cluster_name,
                                              problem=f"ParallelCluster {finding['type']}: {message}", fix=fix))
                elif finding["level"] == "ERROR":
                    fix = finding.get("fix") or FIXES.get(
                        finding["type"], f"change {format_path(path)} as ParallelCluster's message says "
                                         f"(validator {finding['type']})")
                    errors.append(document.error(path, f"ParallelCluster {finding['type']}: {message}", fix))
                else:
                    where = document.error(path, "", "")
                    result.warnings.append(f"{where.source}: {where.key}: ParallelCluster {finding['level']} "
                                           f"({finding['type']}): {message}")
        _raise(errors, None)
        return result


class Validations:
    """One Validation per ParallelCluster version the app's clusters use (each version is judged by its own
    package, in its own worker), run as one: every version's problems are reported together, and the ``with``
    block owns every worker."""

    def __init__(self, validations: list[Validation]) -> None:
        self.validations = validations

    @property
    def errors(self) -> list[ConfigError]:
        return [error for validation in self.validations for error in validation.errors]

    @property
    def worker(self) -> PclusterProcess | None:
        return next((v.worker for v in self.validations if v.worker), None)

    def __enter__(self) -> "Validations":
        return self

    def __exit__(self, *exc_info: object) -> None:
        for validation in self.validations:
            validation.close()

    def check(self) -> None:
        _raise(_collect(validation.check for validation in self.validations), None)

    def check_deployment(self, templates: dict[str, dict[str, Any]], *,
                         objects: dict[str, list[str]] | None = None) -> DeploymentResult:
        results: list[DeploymentResult] = []

        def run(validation: Validation) -> None:
            results.append(validation.check_deployment(templates, objects=objects))

        _raise(_collect(lambda v=v: run(v) for v in self.validations), None)
        merged = DeploymentResult()
        for result in results:
            merged.warnings += result.warnings
            merged.validators = max(merged.validators, result.validators)
            merged.runs += result.runs
            merged.seconds += result.seconds
        return merged


def _collect(calls: Any) -> list[ConfigError]:
    """Runs each call; the configuration errors of all of them."""
    errors: list[ConfigError] = []
    for call in calls:
        try:
            call()
        except ConfigErrors as many:
            errors.extend(many.errors)
        except ConfigError as error:
            errors.append(error)
    return errors


def document_path(config: dict[str, Any], path: list[Any]) -> YamlPath:
    """A path from ParallelCluster's config objects, as a path of the YAML (a custom action's steps sit
    under ``Sequence``; attribute paths deeper than the YAML are cut where the YAML ends)."""
    result: list[Any] = []
    node: Any = config
    for step in path:
        if isinstance(node, dict) and step not in node and isinstance(step, int) and SEQUENCE in node:
            result.append(SEQUENCE)
            node = node[SEQUENCE]
        if isinstance(node, dict) and step in node:
            node = node[step]
        elif isinstance(node, list) and isinstance(step, int) and step < len(node):
            node = node[step]
        else:
            break
        result.append(step)
    return tuple(result)


def refine(config: dict[str, Any], path: YamlPath, message: str) -> YamlPath:
    """The key under ``path`` whose value the message names (the longest such value; of equals the last,
    which is the duplicate when a name is repeated), else ``path``."""
    node: Any = config
    for step in path:
        node = node[step]
    best: tuple[int, YamlPath] | None = None
    for leaf_path, value in _leaves(node, path):
        text = str(value)
        if len(text) >= 3 and not text.isdigit() and text not in ("true", "false") and \
                re.search(rf"(?<![\w-]){re.escape(text)}(?![\w-])", message):
            if best is None or len(text) >= best[0]:
                best = (len(text), leaf_path)
    return best[1] if best else path


def _leaves(node: Any, path: YamlPath):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _leaves(value, (*path, index))
    else:
        yield path, node


def _worker_error(error: WorkerError, python: Path) -> ConfigError:
    where = python.parent.parent.name
    if isinstance(error, MachineryFailure):
        return machinery_error(error.exception, error.checking or "the request", where)
    return ConfigError(source=where, key="ParallelCluster validation", has_value=False, problem=str(error),
                       fix=INSTALL_HINT)


def machinery_error(exception: str, checking: str, source: str) -> ConfigError:
    """The offline validation itself failed: said as such, with the exception and what it was checking."""
    return ConfigError(source=source, key=f"offline validation, while checking {checking}", has_value=False,
                       problem=f"the validation machinery failed ({exception}); this is a fault of this app's "
                               "simulation of AWS, not a finding about your config",
                       fix="report it with this message (your config was not judged); `cdk synth` runs the check "
                           "again once it is fixed")


def _line(error: ConfigError) -> tuple[str, int]:
    file, _, line = error.source.partition(":")
    return file, int(line) if line.isdigit() else 0


def _raise(errors: list[ConfigError], validation: Validation | None) -> None:
    if not errors:
        return
    ordered = sorted(errors, key=_line)  # line order, file by file
    raise ordered[0] if len(ordered) == 1 else ConfigErrors(ordered)
