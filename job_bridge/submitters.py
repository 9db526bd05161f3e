"""Who submits through the job bridge, and as whom their jobs run.

Each submitter is one IAM role. Its name is the role's name; it owns the prefix ``<job prefix><role name>/``
(only that role may read or write there: the data bucket's policy) and its jobs run as its own unprivileged
Linux user, ``jb-<role name>``, which is no sudoer and exists with the same uid on the head node and every
compute node. The uid is derived from the user name, so every node computes the same one without a
directory service and reordering the list changes nothing.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

# A role name as IAM allows it (no wildcard: a prefix and a Linux user belong to exactly one role).
ROLE_NAME = re.compile(r"^[A-Za-z0-9+=,.@_-]{1,64}$")
ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):role/(?:[A-Za-z0-9+=,.@_-]+/)*([A-Za-z0-9+=,.@_*-]+)$")
ASSUMED_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:sts::\d{12}:assumed-role/([A-Za-z0-9+=,.@_-]+)/.+$")
USER_PREFIX = "jb-"
# Above the users distributions and ParallelCluster's AMIs create (from 1000) and below SSSD's id mapping
# (from 200000, what ParallelCluster's DirectoryService uses), so no login user of a cluster holds one.
FIRST_UID, UID_COUNT = 40000, 10000


@dataclass(frozen=True)
class Submitter:
    role_arn: str
    name: str  # the role's name: the S3 folder under the job prefix
    user: str  # the Linux user its jobs run as
    uid: int

    @property
    def spec(self) -> str:
        """``name:user:uid``, as the head node and the compute nodes' node action receive it."""
        return f"{self.name}:{self.user}:{self.uid}"


def linux_user(role_name: str) -> str:
    """``jb-`` and the role name in the characters Linux user names take, at most 32 characters."""
    return (USER_PREFIX + re.sub(r"[^a-z0-9_-]", "-", role_name.lower()))[:32]


def uid_of(user: str) -> int:
    return FIRST_UID + int(hashlib.sha256(user.encode()).hexdigest(), 16) % UID_COUNT


def submitter(role_arn: str) -> Submitter:
    """Raises ValueError (one sentence: the problem) for an ARN that does not name one role."""
    match = ROLE_ARN.match(role_arn)
    if not match:
        raise ValueError(f"{role_arn!r} is not an IAM role ARN")
    name = match.group(2)
    if not ROLE_NAME.match(name):
        raise ValueError(f"{role_arn!r} does not name one role (a wildcard would share one prefix and one "
                         "Linux user between roles)")
    user = linux_user(name)
    return Submitter(role_arn=role_arn, name=name, user=user, uid=uid_of(user))


def submitters(role_arns: list[str]) -> tuple[tuple[Submitter, ...], list[str]]:
    """The submitters and, as sentences, every problem: bad ARNs, and two roles that would share a prefix,
    a Linux user or a uid."""
    found: list[Submitter] = []
    problems: list[str] = []
    for arn in role_arns:
        try:
            found.append(submitter(arn))
        except ValueError as error:
            problems.append(str(error))
    for i, one in enumerate(found):
        for other in found[i + 1:]:
            for what in ("name", "user", "uid"):
                if getattr(one, what) == getattr(other, what):
                    problems.append(f"{one.role_arn} and {other.role_arn} would share the {what} "
                                    f"{getattr(one, what)!r} (prefix, Linux user and uid come from the role name)")
                    break
    return tuple(found), problems


def role_name_of(caller_arn: str) -> str | None:
    """The role name of an STS caller identity (assumed role) or of a role ARN; None for anything else."""
    match = ASSUMED_ROLE_ARN.match(caller_arn) or ROLE_ARN.match(caller_arn)
    if not match:
        return None
    return match.group(match.re.groups)
