"""Project rules: only what ParallelCluster cannot know, because it is about this app.

Everything ParallelCluster checks itself (names, counts, EFA, placement groups, security groups
against the file systems, mount points, limits, the cluster name) is left to its own validators,
which run offline at synth (validation.py). A rule here must not reject a config ParallelCluster
accepts, or configs users bring from elsewhere would fail for no reason. Each returns errors naming
the file, line, key and fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

from cluster_config.document import ConfigDocument
from cluster_config.sections import action_steps, custom_action_sections, dig
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


def check_rules(document: ConfigDocument, config: dict[str, Any], context: RuleContext) -> list[ConfigError]:
    """All project rules on a config rendered with validation dummies."""
    errors: list[ConfigError] = []
    for rule in (_enroot_paths, _node_action_access, _bootstrap_timeout, _region):
        errors.extend(rule(document, config, context))
    return errors


def _enroot_paths(doc: ConfigDocument, config: dict[str, Any], _: RuleContext) -> Iterator[ConfigError]:
    mounts = [str(dig(s, "MountDir") or "").rstrip("/") for s in config.get("SharedStorage") or []
              if isinstance(s, dict)]
    for section_path, section in custom_action_sections(config):
        for step_path, step in action_steps(section):
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
    for section_path, section in custom_action_sections(config):
        uses_scripts = any(str(step.get("Script", "")).startswith(f"s3://{ctx.scripts_bucket}/")
                           for _, step in action_steps(section))
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
    seconds = as_int(dig(config, *path), 0)
    if seconds > MAX_HEAD_NODE_BOOTSTRAP_SECONDS:
        yield doc.error(path, f"{seconds} s cannot fit in CloudFormation's 1 h custom-resource limit",
                        f"keep it at most {MAX_HEAD_NODE_BOOTSTRAP_SECONDS} s; move slow set-up into a custom AMI")


def _region(doc: ConfigDocument, config: dict[str, Any], ctx: RuleContext) -> Iterator[ConfigError]:
    if "Region" in config and str(config["Region"]) != ctx.region:
        yield doc.error(("Region",), f"is not the region of the stacks ({ctx.region}, from availability_zone)",
                        "write Region: ${Region} or remove it", value=config["Region"], has_value=True)
