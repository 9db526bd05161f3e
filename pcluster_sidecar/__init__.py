"""ParallelCluster's sidecar: what runs in `.venv-pcluster-<version>`, one venv per ParallelCluster version
(aws-parallelcluster pins CDK v1, so it cannot share the app's venv). This folder is those venvs' boundary: `worker.py` is the program the app starts there
(cluster_yaml/sidecar.py starts it and speaks JSON lines with it), `account.py` the account it simulates with
moto, `instance_catalogue.py`/`.json` the instance types it knows, `lookups.yaml` every AWS lookup
ParallelCluster makes and how it is answered. Its modules import only the standard library, pcluster, moto and
each other; the app's venv only reads the catalogue and the tests introspect them.
"""
