"""Cluster settings: which cluster config, the cluster's name, the pinned ParallelCluster version; and the
clusters of the app (one by default, in ClusterStack; several on one PrereqStack with ``clusters``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from job_bridge.submitters import Submitter, submitters as parse_submitters
from settings.context import REPO_ROOT, ContextReader

CLUSTER_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{0,59}$")
VERSION = re.compile(r"^3\.(\d+)\.\d+$")
JOB_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*/$")
RESERVED_NAMES = ("PrereqStack", "ClusterStack")  # ParallelCluster creates a stack named after the cluster
DEFAULT_STACK = "ClusterStack"
CLUSTER_ENTRY_KEYS = ("config", "parallelcluster_version", "job_bridge")
CLUSTERS_EXAMPLE = '{"hpc-cluster": {}, "hpc-cluster-2": {"parallelcluster_version": "3.16.1"}}'


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
    # The CloudFormation stack of this cluster (ClusterStack, or ClusterStack-<name> beside it: Clusters).
    stack_name: str = DEFAULT_STACK

    @classmethod
    def from_context(cls, reader: ContextReader) -> "ClusterSettings":
        d = cls()
        config = reader.string("cluster_config", d.cluster_config)
        if config.endswith((".yaml", ".yml")):
            config = config.rsplit(".", 1)[0]
        name = reader.string("cluster_name", d.cluster_name)
        _check_name(reader, "cluster_name", name)
        version = reader.string("parallelcluster_version", d.parallelcluster_version)
        _check_version(reader, "parallelcluster_version", version)
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


def _check_name(reader: ContextReader, key: str, name: str, where: str = "") -> None:
    """``where``: which entry of ``key`` the name is, when it is one of several."""
    if not CLUSTER_NAME.match(name):
        reader.fail(key, f"{where}is not a valid ParallelCluster cluster name",
                    "start with a letter; use letters, digits and hyphens; at most 60 characters")
    elif name in RESERVED_NAMES or name.startswith(DEFAULT_STACK + "-"):
        reader.fail(key, f"{where}equals a stack name of this app; ParallelCluster creates its own stack "
                    "named after the cluster", "choose another name, e.g. hpc-cluster")


def _check_version(reader: ContextReader, key: str, version: str, where: str = "") -> None:
    match = VERSION.match(version)
    if not match or int(match.group(1)) < 6:
        reader.fail(key, f"{where}is not a ParallelCluster 3.6+ release (the first with the "
                    "CloudFormation custom resource)", "use a version such as 3.16.1")
    elif version not in supported_parallelcluster_versions():
        reader.fail(key, f"{where}is not a version this app validates offline (supported: "
                    f"{', '.join(supported_parallelcluster_versions())})",
                    "use one of those, or add requirements-pcluster-<version>.txt: the full lock of that "
                    "version's venv (docs/cluster-configs.md)")


def stack_name_of(cluster_name: str, default_cluster: str) -> str:
    """The cluster named by ``cluster_name`` stays in ClusterStack; every other one gets a stack beside it."""
    return DEFAULT_STACK if cluster_name == default_cluster else f"{DEFAULT_STACK}-{cluster_name}"


@dataclass(frozen=True)
class Clusters:
    """Every cluster of the app, each in its own stack on the same PrereqStack.

    Without ``clusters`` (the default) there is one: the top-level knobs' cluster, in ClusterStack. With it,
    ``clusters`` maps each cluster's name to what differs from the top-level knobs: ``config``,
    ``parallelcluster_version``, and ``job_bridge`` (which one cluster runs the bridge; by default the cluster
    named by ``cluster_name``, which also keeps ClusterStack). A blue/green upgrade is one more entry with a
    new version (docs/day2.md)."""
    clusters: tuple[ClusterSettings, ...] = (ClusterSettings(),)

    @classmethod
    def from_context(cls, reader: ContextReader) -> "Clusters":
        top = ClusterSettings.from_context(reader)
        entries = reader.json_object("clusters", {})
        if not entries:
            reader.raise_if_errors()
            return cls((top,))
        found: list[ClusterSettings] = []
        for name, entry in entries.items():
            where = f"cluster '{name}': "
            if not isinstance(entry, dict):
                reader.fail("clusters", f"{where}is not an object", f"write e.g. {CLUSTERS_EXAMPLE}")
                continue
            unknown = sorted(set(entry) - set(CLUSTER_ENTRY_KEYS))
            if unknown:
                reader.fail("clusters", f"{where}has unknown keys {', '.join(unknown)}",
                            f"use only {', '.join(CLUSTER_ENTRY_KEYS)}; the other knobs are shared by every cluster")
            _check_name(reader, "clusters", name, where)
            config = entry.get("config", top.cluster_config)
            version = entry.get("parallelcluster_version", top.parallelcluster_version)
            bridge = entry.get("job_bridge", top.job_bridge if name == top.cluster_name else False)
            if not isinstance(config, str) or not isinstance(version, str) or not isinstance(bridge, bool):
                reader.fail("clusters", f"{where}config and parallelcluster_version are strings, job_bridge "
                            "true or false", f"write e.g. {CLUSTERS_EXAMPLE}")
                continue
            _check_version(reader, "clusters", version, where)
            if config.endswith((".yaml", ".yml")):
                config = config.rsplit(".", 1)[0]
            found.append(ClusterSettings(
                cluster_config=config, cluster_name=name, parallelcluster_version=version, job_bridge=bridge,
                job_bridge_prefix=top.job_bridge_prefix, job_bridge_submitters=top.job_bridge_submitters,
                stack_name=stack_name_of(name, top.cluster_name)))
        bridges = [c.cluster_name for c in found if c.job_bridge]
        if len(bridges) > 1:
            reader.fail("clusters", f"runs the job bridge on {len(bridges)} clusters ({', '.join(bridges)}); both "
                        "head nodes would sweep the same job folders", "set \"job_bridge\": true on one cluster; "
                        "moving it is a deploy of its own (docs/day2.md)")
        elif bridges and not top.job_bridge_submitters:
            reader.fail("job_bridge_submitters", f"is empty, and cluster '{bridges[0]}' runs the job bridge",
                        "-c 'job_bridge_submitters=[\"arn:aws:iam::<account>:role/<on-prem submitter role>\"]' "
                        "(docs/job-bridge.md)", value=[])
        elif top.job_bridge and not bridges:
            reader.fail("clusters", "names no cluster with \"job_bridge\": true, and job_bridge=true",
                        "add \"job_bridge\": true to the cluster that runs it, or set job_bridge=false")
        reader.raise_if_errors()
        return cls(tuple(found))

    @property
    def versions(self) -> list[str]:
        return list(dict.fromkeys(c.parallelcluster_version for c in self.clusters))
