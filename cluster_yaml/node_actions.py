"""Where ``${NodeAction:<script>}`` points, and why there are two places.

ParallelCluster cannot update a head node's (or a login pool's) ``OnNodeStart`` / ``OnNodeConfigured``
(update policy UNSUPPORTED in its schema); a queue's custom actions update with the
QueueUpdateStrategy. So a script's URL may change in queues but never in those two events:

- in ``HeadNode`` / ``LoginNodes.Pools[*]`` ``OnNodeStart`` and ``OnNodeConfigured`` it is the
  script's **stable** key, ``stable/<script>``: a new head node always runs the current script, and
  editing the script never changes the config there;
- everywhere else it is the **pinned** key, ``<sha256 prefix>/<script>``: an edit changes the URL,
  so ParallelCluster replaces queue nodes (QueueUpdateStrategy) and runs ``OnNodeUpdated``.

``with_node_updates`` repeats a head node's (and each login pool's) node-action steps of
``OnNodeConfigured`` in its ``OnNodeUpdated`` (update policy SUPPORTED), at pinned keys: an edited
script changes that URL, ParallelCluster updates in place, and the running head node runs the new
version. Running login nodes do not: ParallelCluster 3.16.1 gives their launch template no ``update``
configSet (the head node's has one; tests/test_node_permissions.py reads both), so a login pool runs an
edited script when its nodes are replaced, from the stable key; the repeat in its ``OnNodeUpdated`` is
kept for a release that runs it. Node actions must be idempotent (ours are, and their tests run each twice).
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any

from cluster_yaml.document import ConfigDocument, YamlPath

STABLE_PREFIX = "stable"
FIXED_EVENTS = ("OnNodeStart", "OnNodeConfigured")  # UNSUPPORTED on update for head node and login pools
UPDATE_EVENT = "OnNodeUpdated"
NODE_ACTION_PREFIX = "${NodeAction:"


def script_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def object_key(script: str, digest: str | None) -> str:
    """``stable/<script>`` when digest is None, else ``<digest>/<script>``."""
    return f"{STABLE_PREFIX}/{script}" if digest is None else f"{digest}/{script}"


def is_fixed_location(path: YamlPath) -> bool:
    """True inside a head node's or login pool's OnNodeStart/OnNodeConfigured."""
    if len(path) >= 3 and path[0] == "HeadNode" and path[1] == "CustomActions":
        return path[2] in FIXED_EVENTS
    if len(path) >= 5 and path[:2] == ("LoginNodes", "Pools") and path[3] == "CustomActions":
        return path[4] in FIXED_EVENTS
    return False


def event_steps(action: Any) -> list[dict[str, Any]]:
    """The steps of one custom-action event, single ``Script`` or ``Sequence``, as a list."""
    if not isinstance(action, dict):
        return []
    if "Sequence" in action:
        return [s for s in action["Sequence"] or [] if isinstance(s, dict)]
    return [{k: action[k] for k in ("Script", "Args") if k in action}] if "Script" in action else []


def _mirror(section: Any) -> None:
    if not isinstance(section, dict) or not isinstance(section.get("CustomActions"), dict):
        return
    actions = section["CustomActions"]
    ours = [copy.deepcopy(s) for s in event_steps(actions.get("OnNodeConfigured"))
            if str(s.get("Script", "")).startswith(NODE_ACTION_PREFIX)]
    if not ours:
        return
    existing = event_steps(actions.get(UPDATE_EVENT))
    wanted = [s for s in ours if s not in existing]
    if wanted:
        actions[UPDATE_EVENT] = {"Sequence": existing + wanted}


def with_node_updates(document: ConfigDocument) -> ConfigDocument:
    """The config with node actions of fixed events repeated in OnNodeUpdated (see module docstring)."""
    data = copy.deepcopy(document.data)
    _mirror(data.get("HeadNode"))
    pools = (data.get("LoginNodes") or {}).get("Pools") if isinstance(data.get("LoginNodes"), dict) else None
    for pool in pools if isinstance(pools, list) else []:
        _mirror(pool)
    lines = dict(document.lines)
    for prefix in (("HeadNode",), *((("LoginNodes", "Pools", i) for i in range(len(pools or []))))):
        configured = (*prefix, "CustomActions", "OnNodeConfigured")
        updated = (*prefix, "CustomActions", UPDATE_EVENT)
        if configured in lines and updated not in lines:
            lines[updated] = lines[configured]  # errors in the added steps point at the steps they repeat
    return ConfigDocument(source=document.source, data=data, lines=lines)
