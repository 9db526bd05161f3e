"""ClusterStack settings: which cluster config, the cluster's name, the pinned ParallelCluster version."""

from __future__ import annotations

import re
from dataclasses import dataclass

from settings.context import ContextReader

CLUSTER_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{0,59}$")
VERSION = re.compile(r"^3\.(\d+)\.\d+$")
JOB_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*/$")
ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[A-Za-z0-9+=,.@_/*-]+$")
RESERVED_NAMES = ("PrereqStack", "ClusterStack")  # ParallelCluster creates a stack named after the cluster


@dataclass(frozen=True)
class ClusterSettings:
    cluster_config: str = "vanilla"  # cluster_configs/<name>.yaml
    cluster_name: str = "hpc-cluster"
    # One pin for both the provider template deployed and the schema used to validate offline.
    parallelcluster_version: str = "3.16.1"
    # On-prem job submission through the data bucket (seed 004); opt-in.
    job_bridge: bool = False
    job_bridge_prefix: str = "jobs/"
    job_bridge_user: str = ""  # empty: the OS's default user (ubuntu, ec2-user, rocky)
    # IAM roles (ARNs, * allowed) that may write under the job prefix; everyone else is denied.
    job_bridge_submitters: tuple[str, ...] = ()

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
        prefix = reader.string("job_bridge_prefix", d.job_bridge_prefix)
        if not JOB_PREFIX.match(prefix):
            reader.fail("job_bridge_prefix", "is not an S3 key prefix ending in '/'",
                        "use letters, digits, '.', '_', '-' and '/', e.g. jobs/")
        user = reader.string("job_bridge_user", d.job_bridge_user)
        if user and not re.match(r"^[a-z_][a-z0-9_-]{0,31}$", user):
            reader.fail("job_bridge_user", "is not a Linux user name", "use e.g. ubuntu or ec2-user, or leave it empty")
        elif user == "root":
            reader.fail("job_bridge_user", "would run every uploaded job as root on the head node",
                        "use the cluster's login user (leave it empty for the OS default) or another unprivileged user")
        bridge = reader.boolean("job_bridge", d.job_bridge)
        submitters = reader.json_list("job_bridge_submitters", list(d.job_bridge_submitters))
        for role in submitters:
            if not isinstance(role, str) or not ROLE_ARN.match(role):
                reader.fail("job_bridge_submitters", f"holds {role!r}, which is not an IAM role ARN",
                            "list role ARNs such as arn:aws:iam::123456789012:role/onprem-submitter", value=role)
        if bridge and not submitters:
            reader.fail("job_bridge_submitters", "is empty, and job_bridge=true lets only the roles listed there write "
                        "jobs (anyone else with s3:PutObject on the data bucket could run them)",
                        "-c 'job_bridge_submitters=[\"arn:aws:iam::<account>:role/<on-prem submitter role>\"]' "
                        "(README: on-premises job submission)", value=submitters)
        settings = cls(cluster_config=config, cluster_name=name, parallelcluster_version=version,
                       job_bridge=bridge, job_bridge_prefix=prefix, job_bridge_user=user,
                       job_bridge_submitters=tuple(s for s in submitters if isinstance(s, str)))
        reader.raise_if_errors()
        return settings
