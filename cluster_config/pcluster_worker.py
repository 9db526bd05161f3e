"""Runs inside .venv-pcluster (aws-parallelcluster pins CDK v1, so it cannot share our venv).

Reads {"configs": [{"name", "cluster_name", "config"}]} as JSON on stdin, loads each config with
ParallelCluster's own ClusterSchema, and writes {"version", "results": [{"name", "errors"}]}.
Standard library and pcluster only: this file must not import the project.
"""

import json
import sys
from importlib.metadata import version


def main() -> int:
    request = json.load(sys.stdin)
    from marshmallow import ValidationError
    from pcluster.schemas.cluster_schema import ClusterSchema

    results = []
    for item in request["configs"]:
        try:
            # Load only: walking the loaded object (storage, reservations) would call AWS.
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
