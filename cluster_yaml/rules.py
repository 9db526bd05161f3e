"""Project rules: only what ParallelCluster cannot know, because it is about this app.

Everything ParallelCluster checks itself (names, counts, EFA, placement groups, security groups
against the file systems, mount points, limits, the cluster name) is left to its own validators,
which run offline at synth (validation.py). A rule here must not reject a config ParallelCluster
accepts, or configs users bring from elsewhere would fail for no reason.

In ParallelCluster's validator style: each rule is named, has a level (ERROR stops the synth, WARNING and
INFO are printed, as ParallelCluster's own findings are) and is documented once, in its docstring, whose
first sentence is the row of the rules table in docs/cluster-configs.md (a test keeps them equal). Each
finding names the file, line, key and fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable, Iterator

from cluster_yaml.document import ConfigDocument
from cluster_yaml.sections import action_steps, custom_action_sections, dig
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


class Level(str, Enum):
    """ParallelCluster's failure levels (pcluster.validators.common.FailureLevel)."""
    ERROR = "ERROR"
    WARNING = "WARNING"
    INFO = "INFO"


Check = Callable[[ConfigDocument, dict[str, Any], RuleContext], Iterator[ConfigError]]


@dataclass(frozen=True)
class Rule:
    name: str
    level: Level
    check: Check

    @property
    def summary(self) -> str:
        """The docstring's first sentence: what the rule asks for, as the rules table shows it."""
        text = " ".join((self.check.__doc__ or "").split())
        return text.split(". ")[0].rstrip(".") + "."


@dataclass(frozen=True)
class Finding:
    rule: Rule
    error: ConfigError  # file:line, key, problem (named after the rule), fix

    @property
    def level(self) -> Level:
        return self.rule.level

    def as_warning(self) -> str:
        """One line, as ParallelCluster's own warnings are printed at synth."""
        return str(self.error).replace("\n  fix: ", "; ")


RULES: list[Rule] = []


def rule(name: str, level: Level) -> Callable[[Check], Check]:
    def register(check: Check) -> Check:
        RULES.append(Rule(name, level, check))
        return check
    return register


def check_rules(document: ConfigDocument, config: dict[str, Any], context: RuleContext) -> list[Finding]:
    """All project rules on a config rendered with validation dummies, in the order of RULES."""
    findings: list[Finding] = []
    for each in RULES:
        for error in each.check(document, config, context):
            named = error.with_problem(f"project rule {each.name} {each.level.value}: {error.problem}")
            findings.append(Finding(each, named))
    return findings


@rule("EnrootLocalPathsRule", Level.ERROR)
def _enroot_paths(doc: ConfigDocument, config: dict[str, Any], _: RuleContext) -> Iterator[ConfigError]:
    """Enroot's cache and runtime folders (the Args of enable_pyxis.sh) are on node-local storage, not on a
    SharedStorage mount. Containers unpacked on Lustre or NFS are slow, and nodes collide in them."""
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


@rule("NodeActionAccessRule", Level.ERROR)
def _node_action_access(doc: ConfigDocument, config: dict[str, Any], ctx: RuleContext) -> Iterator[ConfigError]:
    """A section that runs ${NodeAction:...} scripts can read them from S3 (S3Access to ${ScriptsBucket}, or
    the ${NodeActionsReadPolicy} for login pools). Otherwise the node fails its bootstrap at deploy time."""
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


@rule("HeadNodeBootstrapTimeoutRule", Level.ERROR)
def _bootstrap_timeout(doc: ConfigDocument, config: dict[str, Any], _: RuleContext) -> Iterator[ConfigError]:
    """DevSettings.Timeouts.HeadNodeBootstrapTimeout is at most 2700 s (MAX_HEAD_NODE_BOOTSTRAP_SECONDS). The custom
    resource must answer within CloudFormation's hour, and ParallelCluster needs about 10 minutes around the
    head node's bootstrap."""
    path = ("DevSettings", "Timeouts", "HeadNodeBootstrapTimeout")
    seconds = as_int(dig(config, *path), 0)
    if seconds > MAX_HEAD_NODE_BOOTSTRAP_SECONDS:
        yield doc.error(path, f"{seconds} s cannot fit in CloudFormation's 1 h custom-resource limit",
                        f"keep it at most {MAX_HEAD_NODE_BOOTSTRAP_SECONDS} s; move slow set-up into a custom AMI")


@rule("StackRegionRule", Level.ERROR)
def _region(doc: ConfigDocument, config: dict[str, Any], ctx: RuleContext) -> Iterator[ConfigError]:
    """Region, when written, is the stacks' region (that of availability_zone). The cluster is created where
    its stacks and file systems are."""
    if "Region" in config and str(config["Region"]) != ctx.region:
        yield doc.error(("Region",), f"is not the region of the stacks ({ctx.region}, from availability_zone)",
                        "write Region: ${Region} or remove it", value=config["Region"], has_value=True)
