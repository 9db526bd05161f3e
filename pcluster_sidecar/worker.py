"""Runs inside .venv-pcluster-<version> (aws-parallelcluster pins CDK v1, so it cannot share our venv).

One JSON request per line on stdin, one JSON answer per line on stdout, until stdin closes; standard
library, pcluster and moto only (no project imports; account.py sits beside this file):
- {"configs": [{"name", "cluster_name", "config", "kind"}]}: load each config with ParallelCluster's own
  ClusterSchema (or ImageBuilderSchema when kind is "image") -> {"version", "results": [{"name", "errors"}]}.
- {"dryrun": {"region", "account", "clusters": [{"name", "cluster_name", "config"}]}}: every validator of
  ``pcluster create-cluster --dryrun`` in a simulated account (account.py)
  -> {"version", "results": [{"name", "findings", "stand_ins", "validators", "runs", "seconds"}]}.
- {"patch": {"cluster_name", "base", "target", "running"}}: ParallelCluster's own ConfigPatch, offline
  -> {"version", "changes": [{"path", "key", "old", "new", "policy", "check", "reason", "action"}]}.
- {"cluster_template": {"region", "account", "cluster_name", "config"}}: the CloudFormation template
  ParallelCluster generates for the cluster, in the simulated account -> {"version", "template", "nested"}.
- {"provider_call": {"operation", "properties", "dropped", "added"}}: what the provider's handler does
  with the custom resource's properties, then pcluster.lib's own argument check (nothing is dispatched)
  -> {"version", "arguments", "error"}.
Started with ``--warm REGION [ACCOUNT_FILE]``, it builds the simulated account's backends before the first
request, and the account ACCOUNT_FILE describes (the last one asked for: usually asked for again).
"""

import json
import os
import sys
from importlib.metadata import version

_ACCOUNT = None
_WARMING = None


def _build(region, account_file=None):
    global _ACCOUNT
    from account import SimulatedAccount

    _ACCOUNT = SimulatedAccount(region)
    if account_file:
        try:
            with open(account_file) as file:
                account = json.load(file)
        except (OSError, ValueError):
            return  # no guess to build ahead
        try:
            _ACCOUNT.build_ahead(account)
        except Exception:  # noqa: BLE001 - a guess that does not build: nothing counts as built ahead,
            pass  # and the request resets the account and builds its own


def simulator(region):
    if _WARMING is not None:
        _WARMING.join()
    if _ACCOUNT is None or _ACCOUNT.region != region:
        _build(region)
    return _ACCOUNT


def warm(region, account_file=None):
    """Builds the simulator in the background: schema requests are answered meanwhile."""
    global _WARMING
    import threading

    _WARMING = threading.Thread(target=_build, args=(region, account_file), daemon=True)
    _WARMING.start()


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


def dryrun(request):
    import time

    started = time.monotonic()
    sim = simulator(request["region"])
    ready = time.monotonic()
    built_ahead = sim.prepare(request["account"])  # one account per request
    built = time.monotonic()
    results = []
    for cluster in request["clusters"]:
        stand_ins = sim.stand_ins(cluster["config"])
        outcome = sim.dry_run(cluster["cluster_name"], cluster["config"])
        results.append({"name": cluster["name"], "stand_ins": stand_ins, **outcome})
    return {"version": version("aws-parallelcluster"), "results": results,
            "timing": {"waited_for_simulator": round(ready - started, 3), "account": round(built - ready, 3),
                       "account_built_ahead": built_ahead,
                       "total": round(time.monotonic() - started, 3)}}


def cluster_template(request):
    sim = simulator(request["region"])
    sim.prepare(request["account"])
    sim.stand_ins(request["config"])
    return {"version": version("aws-parallelcluster"), **sim.cluster_template(request["cluster_name"], request["config"])}


def provider_call(request):
    """The provider handler's transformation, then the generated pcluster.lib function with dispatch
    stubbed: its own check of required and unexpected arguments and of their types runs for real."""
    import pcluster.lib as pc
    import pcluster.lib.lib as lib_module
    import pcluster.utils

    properties = {k: v for k, v in request["properties"].items() if k not in request["dropped"]}
    arguments = {**{pcluster.utils.to_snake_case(k): v for k, v in properties.items()}, **request["added"]}
    dispatched = {}

    def record(model, args):
        dispatched.update({k: v for k, v in vars(args).items() if k not in ("func",)})
        return {"dispatched": True}

    original = lib_module.dispatch
    lib_module.dispatch = record
    try:
        getattr(pc, request["operation"])(**arguments)
        error = None
    except TypeError as exc:
        error = str(exc)
    finally:
        lib_module.dispatch = original
    return {"version": version("aws-parallelcluster"), "arguments": sorted(arguments), "error": error,
            "dispatched": sorted(k for k, v in dispatched.items() if v is not None)}


def schema(request):
    from marshmallow import ValidationError
    from pcluster.schemas.cluster_schema import ClusterSchema
    from pcluster.schemas.imagebuilder_schema import ImageBuilderSchema

    results = []
    for item in request["configs"]:
        schema = ImageBuilderSchema() if item.get("kind") == "image" else ClusterSchema(cluster_name=item["cluster_name"])
        fields = {}
        try:
            # Load only: walking the loaded object (storage, reservations) would call AWS.
            schema.load(item["config"])
            errors = None
        except ValidationError as error:
            errors = error.messages
            for path in _unknown_field_paths(errors, ()):
                fields[".".join(path[:-1])] = _allowed_keys(schema, path[:-1])
        except Exception as error:  # noqa: BLE001 - a crash is reported as this config's error
            errors = {"_schema": [f"{type(error).__name__}: {error}"]}
        results.append({"name": item["name"], "errors": errors, "fields": fields})
    return {"version": version("aws-parallelcluster"), "results": results}


def _unknown_field_paths(messages, path):
    """Paths (keys only, no list indices) of marshmallow's "Unknown field." messages."""
    if isinstance(messages, list):
        if "Unknown field." in messages:
            yield path
        for item in messages:
            if isinstance(item, dict):
                yield from _unknown_field_paths(item, path)
        return
    if isinstance(messages, dict):
        for key, value in messages.items():
            step = () if str(key).isdigit() or key == "_schema" else (str(key),)
            yield from _unknown_field_paths(value, path + step)


def _allowed_keys(schema, path):
    """The keys ParallelCluster's schema accepts at ``path`` (for "did you mean" hints)."""
    current = schema
    for step in path:
        field = next((f for name, f in current.fields.items() if (f.data_key or name) == step), None)
        field = getattr(field, "inner", field)  # List(Nested(...))
        nested = getattr(field, "schema", None)
        if nested is None:
            return []
        current = nested
    return sorted(f.data_key or name for name, f in current.fields.items())


HANDLERS = {"configs": schema, "patch": lambda r: patch(r["patch"]), "dryrun": lambda r: dryrun(r["dryrun"]),
            "provider_call": lambda r: provider_call(r["provider_call"]),
            "cluster_template": lambda r: cluster_template(r["cluster_template"])}


def _checking(error):
    """What the worker was checking when it failed: a validator, or the key a stand-in was being made for."""
    if getattr(error, "where", None):
        return error.where
    if _ACCOUNT is not None and _ACCOUNT.checking:
        return f"the stand-in for {_ACCOUNT.checking}"
    return None


def main() -> int:
    if len(sys.argv) in (3, 4) and sys.argv[1] == "--warm":
        # Warming up is background work: the synthesis it overlaps goes first (measured: 0.2 s faster
        # synth on 2 cores); the dry run comes after the synthesis, when the priority hardly matters.
        os.nice(10)
        warm(*sys.argv[2:])
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        kind = next(k for k in HANDLERS if k in request)
        try:
            answer = HANDLERS[kind](request)
        except Exception as error:  # noqa: BLE001 - reported to the caller, which names the worker
            import traceback

            cause = error.__cause__ or error
            answer = {"version": version("aws-parallelcluster"), "crash": f"{type(cause).__name__}: {cause}",
                      "checking": _checking(error), "traceback": traceback.format_exc()[-3000:]}
        sys.stdout.write(json.dumps(answer, default=str) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
