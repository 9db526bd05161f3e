"""The nodes can do what this app's promises need, judged on the IAM that ParallelCluster itself generates
for the synthesized config (tests/node_permissions.py): read their node-action scripts, and, with the
job bridge, list, read and write the job prefix of the data bucket."""

from __future__ import annotations

from typing import Any

import pytest

from cluster_yaml import available_configs
from cluster_yaml.sections import action_steps
from cluster_yaml.simulation import Templates, simulate
from tests.conftest import BRIDGE, synth
from tests.corpus import _objects
from tests.node_permissions import REGION, NodeRoles, cluster_templates, s3_arn

CONTEXT = {"gpu-p5": {"CAPACITY_RESERVATION_ID": "cr-0123456789abcdef0"}}


class Cluster:
    """A synthesized app with the job bridge, its simulated ids, and its node roles as ParallelCluster makes them."""

    def __init__(self, config: str) -> None:
        app = synth(cluster_config=config, **BRIDGE, **CONTEXT.get(config, {}))
        self.templates = {name: app.synthesis.template(name) for name in app.stacks}
        self.objects = _objects(app)
        simulation = simulate(self.templates, REGION, objects=self.objects)
        self.values, [self.config] = simulation.values, simulation.configs
        self.roles = NodeRoles(cluster_templates(self.templates, self.objects, "hpc-cluster"), self.templates)
        [(bucket_id, self.script_keys)] = self.objects.items()
        self.scripts_bucket = Templates(self.templates, REGION).ref(*bucket_id.split("/"))


@pytest.fixture(scope="module", params=available_configs())
def cluster(request: pytest.FixtureRequest) -> Cluster:
    return Cluster(request.param)


def scripts_of(section: dict[str, Any]) -> list[str]:
    """The s3:// URLs every custom action of a config section runs."""
    return [step["Script"] for _, step in action_steps(section) if "Script" in step]


def test_the_head_node_can_list_read_and_write_the_job_prefix(cluster: Cluster):
    bucket = cluster.values["DataBucketName"]
    assert cluster.roles.allows("RoleHeadNode", "s3:ListBucket", s3_arn(bucket))  # list-objects-v2, aws s3 sync
    for action in ("s3:GetObject", "s3:PutObject"):
        assert cluster.roles.allows("RoleHeadNode", action, s3_arn(bucket, "jobs/onprem-submitter/job0001/job-aws-stat.txt")), action


def test_the_head_node_cannot_write_outside_the_job_prefix(cluster: Cluster):
    bucket = cluster.values["DataBucketName"]
    assert not cluster.roles.allows("RoleHeadNode", "s3:PutObject", s3_arn(bucket, "data/results.csv"))


def test_the_head_node_can_read_the_job_bridge_installer_and_users_script(cluster: Cluster):
    for script in ("job_bridge.sh", "job_users.sh"):
        [key] = [k for k in cluster.script_keys if k.endswith(f"/{script}") and not k.startswith("stable/")]
        assert cluster.roles.allows("RoleHeadNode", "s3:GetObject", s3_arn(cluster.scripts_bucket, key)), script


def test_every_node_can_read_the_scripts_its_config_runs(cluster: Cluster):
    sections = [("RoleHeadNode", cluster.config["HeadNode"])]
    sections += [(cluster.roles.queue_role("hpc-cluster", q["Name"]), q) for q in cluster.config["Scheduling"]["SlurmQueues"]]
    sections += [(cluster.roles.login_role(p["Name"]), p) for p in (cluster.config.get("LoginNodes") or {}).get("Pools", [])]
    checked = 0
    for role, section in sections:
        for url in scripts_of(section):
            bucket, key = url.removeprefix("s3://").split("/", 1)
            assert key in cluster.script_keys, f"{url} is not deployed"
            assert cluster.roles.allows(role, "s3:GetObject", s3_arn(bucket, key)), f"{role} cannot read {url}"
            checked += 1
    assert checked >= 2


def test_the_data_buckets_job_writers_include_the_head_nodes_role_path(cluster: Cluster):
    """The bucket policy lets role/parallelcluster/<cluster>/* write jobs: that is where ParallelCluster
    puts the head node's role."""
    [head] = [t["Resources"]["RoleHeadNode"] for t in cluster.roles.templates.values() if "RoleHeadNode" in t["Resources"]]
    assert head["Properties"]["Path"] == "/parallelcluster/hpc-cluster/"
    [policy] = [r for r in cluster.templates["PrereqStack"]["Resources"].values()
                if r["Type"] == "AWS::S3::BucketPolicy" and r["Properties"]["Bucket"]["Ref"].startswith("DataBucketBD")]
    [deny] = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s.get("Sid") == "JobBridgeWritersOnly"]
    assert ":role/parallelcluster/hpc-cluster/*" in str(deny["Condition"]["ArnNotLike"]["aws:PrincipalArn"])


def test_running_login_nodes_have_no_update_hook_in_parallelclusters_templates(cluster: Cluster):
    """What docs/cluster-configs.md says of OnNodeUpdated, judged on the templates ParallelCluster 3.16.1 generates: the head node's
    launch template carries an `update` configSet (run by cfn-hup on a cluster update), a login pool's carries
    none, so running login nodes do not run OnNodeUpdated; new ones run OnNodeConfigured at the stable key."""
    if not cluster.config.get("LoginNodes"):
        pytest.skip("no login pool in this config")
    templates = cluster.roles.templates
    head = templates["cluster"]["Resources"]["HeadNodeLaunchTemplate"]
    assert "update" in head["Metadata"]["AWS::CloudFormation::Init"]["configSets"]
    login = [r for t in templates.values() for logical, r in t.get("Resources", {}).items()
             if logical.startswith("LoginNodeLaunchTemplate")]
    assert login and all("AWS::CloudFormation::Init" not in r.get("Metadata", {}) for r in login)


def test_compute_and_login_nodes_cannot_reach_the_job_prefix(cluster: Cluster):
    """Jobs on compute nodes can read their instance role's credentials (ParallelCluster locks IMDS to root only on
    head and login nodes): the bucket policy exempts every role of the cluster from the writers' deny, so the
    compute and login roles themselves must grant nothing under the job prefix."""
    bucket = cluster.values["DataBucketName"]
    job_key = s3_arn(bucket, "jobs/onprem-submitter/victim/job-aws-run.sh")
    roles = [cluster.roles.queue_role("hpc-cluster", q["Name"]) for q in cluster.config["Scheduling"]["SlurmQueues"]]
    roles += [cluster.roles.login_role(p["Name"]) for p in (cluster.config.get("LoginNodes") or {}).get("Pools", [])]
    assert roles
    for role in roles:
        for action, resource in (("s3:GetObject", job_key), ("s3:PutObject", job_key), ("s3:ListBucket", s3_arn(bucket))):
            assert not cluster.roles.allows(role, action, resource), (role, action)
