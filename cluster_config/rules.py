"""Project rules: only what ParallelCluster cannot know, because it is about this app.

Everything ParallelCluster checks itself (names, counts, EFA, placement groups, security groups
against the file systems, mount points, limits, the cluster name) is left to its own validators,
which run offline at synth (validation.py). A rule here must not reject a config ParallelCluster
accepts, or configs users bring from elsewhere would fail for no reason. Each returns errors naming
the file, line, key and fix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterator

from cluster_config.document import ConfigDocument, YamlPath
from settings.errors import ConfigError

# The custom resource must finish within CloudFormation's 1 h; ParallelCluster needs ~10 min
# around the head node's bootstrap (its own stack, the wait condition, compute fleet start).
MAX_HEAD_NODE_BOOTSTRAP_SECONDS = 2700
ENROOT_SCRIPT = "enable_pyxis.sh"
S3_READ_POLICIES = ("AmazonS3ReadOnlyAccess", "AmazonS3FullAccess")


@dataclass(frozen=True)
class RuleContext:
    scripts_bucket: str
    read_policy: str  # the node-actions read policy (login pools have no S3Access)
    region: str
    cluster_name: str


def as_int(value: Any, default: int) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return default  # the schema reports non-integers


def _dig(data: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(data, dict):
            data = data.get(key)
        elif isinstance(data, list) and isinstance(key, int) and key < len(data):
            data = data[key]
        else:
            return None
    return data


def _queues(config: dict[str, Any]) -> list[dict[str, Any]]:
    queues = _dig(config, "Scheduling", "SlurmQueues")
    return [q for q in queues if isinstance(q, dict)] if isinstance(queues, list) else []


QUEUES: YamlPath = ("Scheduling", "SlurmQueues")


def check_rules(document: ConfigDocument, config: dict[str, Any], context: RuleContext) -> list[ConfigError]:
    """All project rules on a config rendered with validation dummies."""
    errors: list[ConfigError] = []
    for rule in (_enroot_paths, _node_action_access, _bootstrap_timeout, _region):
        errors.extend(rule(document, config, context))
    return errors


def _custom_action_sections(config: dict[str, Any]) -> Iterator[tuple[YamlPath, dict[str, Any]]]:
    """(path, section) for the head node, each queue and each login pool: the places with CustomActions and Iam."""
    if isinstance(config.get("HeadNode"), dict):
        yield ("HeadNode",), config["HeadNode"]
    for qi, queue in enumerate(_queues(config)):
        yield (*QUEUES, qi), queue
    pools = _dig(config, "LoginNodes", "Pools")
    for pi, pool in enumerate(pools if isinstance(pools, list) else []):
        if isinstance(pool, dict):
            yield ("LoginNodes", "Pools", pi), pool


def _scripts(section: dict[str, Any]) -> Iterator[tuple[YamlPath, dict[str, Any]]]:
    actions = section.get("CustomActions") or {}
    for event, action in (actions.items() if isinstance(actions, dict) else []):
        if not isinstance(action, dict):
            continue
        if "Script" in action:
            yield ("CustomActions", event), action
        for index, step in enumerate(action.get("Sequence") or []):
            if isinstance(step, dict):
                yield ("CustomActions", event, "Sequence", index), step


def _enroot_paths(doc: ConfigDocument, config: dict[str, Any], _: RuleContext) -> Iterator[ConfigError]:
    mounts = [str(_dig(s, "MountDir") or "").rstrip("/") for s in config.get("SharedStorage") or []
              if isinstance(s, dict)]
    for section_path, section in _custom_action_sections(config):
        for step_path, step in _scripts(section):
            if not str(step.get("Script", "")).endswith(f"/{ENROOT_SCRIPT}"):
                continue
            for ai, arg in enumerate(step.get("Args") or []):
                text = str(arg)
                shared = next((m for m in mounts if m and (text == m or text.startswith(m + "/"))), None)
                if shared:
                    yield doc.error((*section_path, *step_path, "Args", ai),
                                    f"puts Enroot's runtime/cache paths on shared storage {shared}",
                                    "use node-local storage such as /var/enroot or /scratch/enroot: containers "
                                    "unpacked on Lustre or NFS are slow and collide between nodes",
                                    value=text, has_value=True)


def _node_action_access(doc: ConfigDocument, config: dict[str, Any], ctx: RuleContext) -> Iterator[ConfigError]:
    for section_path, section in _custom_action_sections(config):
        uses_scripts = any(str(step.get("Script", "")).startswith(f"s3://{ctx.scripts_bucket}/")
                           for _, step in _scripts(section))
        if not uses_scripts:
            continue
        iam = section.get("Iam") or {}
        buckets = [str(a.get("BucketName")) for a in iam.get("S3Access") or [] if isinstance(a, dict)]
        policies = [str(p.get("Policy", "")) for p in iam.get("AdditionalIamPolicies") or [] if isinstance(p, dict)]
        if ctx.scripts_bucket in buckets or ctx.read_policy in policies or any(
                p.endswith(S3_READ_POLICIES) for p in policies):
            continue
        fix = ("add Iam: {AdditionalIamPolicies: [{Policy: ${NodeActionsReadPolicy}}]} to this pool (login pools "
               "have no S3Access)" if section_path[0] == "LoginNodes" else
               "add Iam: {S3Access: [{BucketName: ${ScriptsBucket}}]} to this section")
        yield doc.error((*section_path, "Iam"), "runs ${NodeAction:...} scripts but cannot read them from S3", fix)


def _bootstrap_timeout(doc: ConfigDocument, config: dict[str, Any], _: RuleContext) -> Iterator[ConfigError]:
    path = ("DevSettings", "Timeouts", "HeadNodeBootstrapTimeout")
    seconds = as_int(_dig(config, *path), 0)
    if seconds > MAX_HEAD_NODE_BOOTSTRAP_SECONDS:
        yield doc.error(path, f"{seconds} s cannot fit in CloudFormation's 1 h custom-resource limit",
                        f"keep it at most {MAX_HEAD_NODE_BOOTSTRAP_SECONDS} s; move slow set-up into a custom AMI")


def _region(doc: ConfigDocument, config: dict[str, Any], ctx: RuleContext) -> Iterator[ConfigError]:
    if "Region" in config and str(config["Region"]) != ctx.region:
        yield doc.error(("Region",), f"is not the region of the stacks ({ctx.region}, from availability_zone)",
                        "write Region: ${Region} or remove it", value=config["Region"], has_value=True)
