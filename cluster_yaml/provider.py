"""The ParallelCluster provider's contract (parallelcluster_provider.yaml): which custom-resource
properties reach ``pcluster.lib`` and which node policies the provider's IAM may attach."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

import yaml

CONTRACT_FILE = Path(__file__).with_name("parallelcluster_provider.yaml")


@dataclass(frozen=True)
class ProviderContract:
    dropped_properties: tuple[str, ...]
    added_arguments: dict[str, Any]
    operations: dict[str, str]  # CloudFormation request type -> pcluster.lib function
    attachable_patterns: tuple[str, ...]  # ArnLike patterns with ${Partition} and ${AccountId}

    def attachable(self, policy_arn: str, *, account: str, partition: str = "aws") -> bool:
        """True when the provider's default IAM lets ParallelCluster attach ``policy_arn`` to node roles."""
        return any(_arn_like(pattern.replace("${Partition}", partition).replace("${AccountId}", account), policy_arn)
                   for pattern in self.attachable_patterns)

    def needing_grant(self, policy_arns: Iterable[str], *, account: str, partition: str = "aws") -> list[str]:
        """The ARNs the provider may not attach by default, in order, without duplicates."""
        seen: dict[str, None] = {}
        for arn in policy_arns:
            if not self.attachable(arn, account=account, partition=partition):
                seen.setdefault(arn, None)
        return list(seen)


def _arn_like(pattern: str, arn: str) -> bool:
    # IAM's ArnLike: '*' matches any run of characters, '?' one character, case-sensitive.
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, arn) is not None


@lru_cache(maxsize=1)
def load_contract() -> ProviderContract:
    data = yaml.safe_load(CONTRACT_FILE.read_text())
    return ProviderContract(
        dropped_properties=tuple(data["handler"]["dropped_properties"]),
        added_arguments=dict(data["handler"]["added_arguments"]),
        operations=dict(data["handler"]["operations"]),
        attachable_patterns=tuple(data["attach_role_policy"]["policy_arn_like"]),
    )


def additional_iam_policies(config: Any) -> list[str]:
    """Every ``AdditionalIamPolicies[].Policy`` of a cluster config (head node, queues, login pools)."""
    found: list[str] = []
    if isinstance(config, dict):
        for key, value in config.items():
            if key == "AdditionalIamPolicies" and isinstance(value, list):
                found += [item["Policy"] for item in value if isinstance(item, dict) and "Policy" in item]
            else:
                found += additional_iam_policies(value)
    elif isinstance(config, list):
        for item in config:
            found += additional_iam_policies(item)
    return found
