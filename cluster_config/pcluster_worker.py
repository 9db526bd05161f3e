"""Runs inside .venv-pcluster (aws-parallelcluster pins CDK v1, so it cannot share our venv).

Two requests, JSON on stdin, JSON on stdout; standard library and pcluster only (no project imports):
- {"configs": [{"name", "cluster_name", "config", "kind"}]}: load each config with ParallelCluster's own
  ClusterSchema (or ImageBuilderSchema when kind is "image") -> {"version", "results": [{"name", "errors"}]}.
- {"patch": {"cluster_name", "base", "target", "running"}}: ParallelCluster's own ConfigPatch, offline
  -> {"version", "changes": [{"path", "key", "old", "new", "policy", "check", "reason", "action"}]}.
"""

import json
import sys
from importlib.metadata import version


class _OfflineCluster:
    """What ConfigPatch asks of a cluster, answered without AWS: assume it is running (worst case)."""

    def __init__(self, name, running):
        self.name = name
        self.stack_name = name
        self._running = running

    def has_running_capacity(self, *args, **kwargs):
        return self._running

    def has_running_login_nodes(self, *args, **kwargs):
        return False


def _text(value, change, patch):
    if callable(value):
        try:
            return str(value(change, patch))
        except Exception as error:  # noqa: BLE001 - some messages need the live cluster
            return f"(needs the live cluster: {type(error).__name__})"
    return "" if value in (None, "-") else str(value)


def patch(request):
    from pcluster.config.config_patch import ConfigPatch

    config_patch = ConfigPatch(_OfflineCluster(request["cluster_name"], request.get("running", True)),
                               base_config=request["base"], target_config=request["target"])
    changes = []
    for change in config_patch.changes:
        policy = change.update_policy
        try:
            result, reason, action, shown = policy.check(change, config_patch)
            check, reason, action = result.value, reason, action
        except Exception as error:  # noqa: BLE001 - check() needs AWS for some policies
            check, shown = f"UNCHECKED ({type(error).__name__})", True
            reason, action = policy.fail_reason, policy.action_needed
        if not shown and policy.name == "IGNORED":
            continue
        changes.append({"path": ".".join(str(p) for p in change.path), "key": change.key,
                        "old": change.old_value, "new": change.new_value, "policy": policy.name, "check": check,
                        "reason": _text(reason, change, config_patch), "action": _text(action, change, config_patch)})
    return {"version": version("aws-parallelcluster"), "changes": changes}


def main() -> int:
    request = json.load(sys.stdin)
    if "patch" in request:
        json.dump(patch(request["patch"]), sys.stdout, default=str)
        return 0
    from marshmallow import ValidationError
    from pcluster.schemas.cluster_schema import ClusterSchema
    from pcluster.schemas.imagebuilder_schema import ImageBuilderSchema

    results = []
    for item in request["configs"]:
        try:
            # Load only: walking the loaded object (storage, reservations) would call AWS.
            if item.get("kind") == "image":
                ImageBuilderSchema().load(item["config"])
            else:
                ClusterSchema(cluster_name=item["cluster_name"]).load(item["config"])
            errors = None
        except ValidationError as error:
            errors = error.messages
        except Exception as error:  # noqa: BLE001 - a crash is reported as this config's error
            errors = {"_schema": [f"{type(error).__name__}: {error}"]}
        results.append({"name": item["name"], "errors": errors})
    json.dump({"version": version("aws-parallelcluster"), "results": results}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
