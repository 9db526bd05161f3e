"""ClusterStack settings: which cluster config, the cluster's name, the pinned ParallelCluster version."""

from __future__ import annotations

import re
from dataclasses import dataclass

from settings.context import ContextReader

CLUSTER_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{0,59}$")
VERSION = re.compile(r"^3\.(\d+)\.\d+$")
RESERVED_NAMES = ("PrereqStack", "ClusterStack")  # ParallelCluster creates a stack named after the cluster


@dataclass(frozen=True)
class ClusterSettings:
    cluster_config: str = "vanilla"  # cluster_configs/<name>.yaml
    cluster_name: str = "hpc-cluster"
    # One pin for both the provider template deployed and the schema used to validate offline.
    parallelcluster_version: str = "3.16.1"

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
        settings = cls(cluster_config=config, cluster_name=name, parallelcluster_version=version)
        reader.raise_if_errors()
        return settings
