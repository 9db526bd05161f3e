"""ClusterStack settings: which cluster config, the cluster's name, the pinned ParallelCluster version."""

from __future__ import annotations

import re
from dataclasses import dataclass

from job_bridge.submitters import Submitter, submitters as parse_submitters
from settings.context import REPO_ROOT, ContextReader

CLUSTER_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{0,59}$")
VERSION = re.compile(r"^3\.(\d+)\.\d+$")
JOB_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*/$")
RESERVED_NAMES = ("PrereqStack", "ClusterStack")  # ParallelCluster creates a stack named after the cluster


def supported_parallelcluster_versions() -> list[str]:
    """The ParallelCluster versions a cluster may use: one lock file each (requirements-pcluster-<version>.txt),
    whose venv validates that version's clusters with that version's own package."""
    names = [p.name[len("requirements-pcluster-"):-len(".txt")] for p in REPO_ROOT.glob("requirements-pcluster-*.txt")]
    return sorted(names, key=lambda v: tuple(int(n) if n.isdigit() else 0 for n in v.split(".")))


@dataclass(frozen=True)
class ClusterSettings:
    cluster_config: str = "vanilla"  # cluster_configs/<name>.yaml
    cluster_name: str = "hpc-cluster"
    # One pin for both the provider template deployed and the schema used to validate offline.
    parallelcluster_version: str = "3.16.1"
    # On-prem job submission through the data bucket; opt-in.
    job_bridge: bool = False
    job_bridge_prefix: str = "jobs/"
    # IAM roles (ARNs) that may submit, each under <prefix><role name>/ and as its own Linux user jb-<role name>.
    job_bridge_submitters: tuple[Submitter, ...] = ()

    @classmethod
    def from_context(cls, reader: ContextReader) -> "ClusterSettings":
        d = cls()
        config = reader.string("cluster_config", d.cluster_config)
        if config.endswith((".yaml", ".yml")):
            config = config.rsplit(".", 1)[0]
        name = reader.string("cluster_name", d.cluster_name)
        if not CLUSTER_NAME.match(name):
            reader.fail("cluster_name", "is not a valid ParallelCluster cluster name",
                        "start with a letter; use letters, digits and hyphens; at most 60 characters")
        elif name in RESERVED_NAMES:
            reader.fail("cluster_name", "equals a stack name of this app; ParallelCluster creates its own stack "
                        "named after the cluster", "choose another name, e.g. hpc-cluster")
        version = reader.string("parallelcluster_version", d.parallelcluster_version)
        match = VERSION.match(version)
        if not match or int(match.group(1)) < 6:
            reader.fail("parallelcluster_version", "is not a ParallelCluster 3.6+ release (the first with the "
                        "CloudFormation custom resource)", "use a version such as 3.16.1")
        elif version not in supported_parallelcluster_versions():
            reader.fail("parallelcluster_version", "is not a version this app validates offline (supported: "
                        f"{', '.join(supported_parallelcluster_versions())})",
                        "use one of those, or add requirements-pcluster-<version>.txt: the full lock of that "
                        "version's venv (docs/cluster-configs.md)")
        prefix = reader.string("job_bridge_prefix", d.job_bridge_prefix)
        if not JOB_PREFIX.match(prefix):
            reader.fail("job_bridge_prefix", "is not an S3 key prefix ending in '/'",
                        "use letters, digits, '.', '_', '-' and '/', e.g. jobs/")
        if reader.raw("job_bridge_user") not in (None, ""):
            reader.fail("job_bridge_user", "is no longer used: one shared job user (by default the OS user, a "
                        "sudoer) let every submitter reach root and each other's jobs; each submitter's jobs now run "
                        "as its own unprivileged user jb-<role name>", "remove job_bridge_user (docs/job-bridge.md)")
        bridge = reader.boolean("job_bridge", d.job_bridge)
        roles = reader.json_list("job_bridge_submitters", [s.role_arn for s in d.job_bridge_submitters])
        strings = [role for role in roles if isinstance(role, str)]
        if len(strings) != len(roles):
            reader.fail("job_bridge_submitters", "holds something other than role ARNs",
                        "list role ARNs such as arn:aws:iam::123456789012:role/onprem-submitter", value=roles)
        submitters, problems = parse_submitters(strings)
        for problem in problems:
            reader.fail("job_bridge_submitters", problem, "list each submitter's role ARN, without wildcards, "
                        "e.g. arn:aws:iam::123456789012:role/onprem-submitter", value=roles)
        if bridge and not roles:
            reader.fail("job_bridge_submitters", "is empty, and job_bridge=true lets only the roles listed there write "
                        "jobs (anyone else with s3:PutObject on the data bucket could run them)",
                        "-c 'job_bridge_submitters=[\"arn:aws:iam::<account>:role/<on-prem submitter role>\"]' "
                        "(docs/job-bridge.md)", value=roles)
        settings = cls(cluster_config=config, cluster_name=name, parallelcluster_version=version,
                       job_bridge=bridge, job_bridge_prefix=prefix, job_bridge_submitters=submitters)
        reader.raise_if_errors()
        return settings
