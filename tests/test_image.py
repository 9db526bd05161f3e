"""Custom AMI: image config and AWSTOE components validated offline; the build flow against stubs."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
import yaml
from botocore.stub import Stubber

from cluster_yaml import image
from cluster_yaml.image import (COMPONENT_DIR, INCLUDE, load_image_config, render_component, validate_image)
from commands import build_ami
from ops import image as image_builder
from settings.context import REPO_ROOT
from settings.errors import ConfigError, ConfigErrors
from tests.conftest import Synthesized, synth

COMPONENTS = sorted(COMPONENT_DIR.glob("*.yaml"))


def test_image_config_passes_parallelclusters_image_schema():
    config = validate_image(load_image_config(), "us-east-1", "10.0.0.0/16", {}.get, "3.16.1")
    assert [c["Value"].split("/")[1] for c in config["Build"]["Components"]] == ["enroot-pyxis", "hpc-tools"]
    assert config["Build"]["ParentImage"] == "arn:aws:imagebuilder:us-east-1:aws:image/ubuntu-server-22-lts-x86/x.x.x"


@pytest.mark.parametrize("path", COMPONENTS, ids=[p.stem for p in COMPONENTS])
def test_components_have_build_and_test_phases(path: Path):
    document = yaml.safe_load(render_component(path))
    assert {p["name"] for p in document["phases"]} == {"build", "test"}
    for phase in document["phases"]:
        for step in phase["steps"]:
            assert step["action"] == "ExecuteBash" and step["inputs"]["commands"]


def test_components_run_the_repos_own_node_action():
    document = yaml.safe_load(render_component(COMPONENT_DIR / "enroot-pyxis.yaml"))
    [build] = [p for p in document["phases"] if p["name"] == "build"]
    assert build["steps"][0]["inputs"]["commands"][0] == (REPO_ROOT / "scripts/node_actions/enable_pyxis.sh").read_text()
    assert not INCLUDE.search(render_component(COMPONENT_DIR / "enroot-pyxis.yaml"))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def component_errors(monkeypatch, tmp_path: Path, text: str) -> str:
    monkeypatch.setattr("cluster_yaml.image.REPO_ROOT", tmp_path)
    with pytest.raises((ConfigError, ConfigErrors)) as info:
        render_component(write(tmp_path, text))
    return str(info.value)


def test_bad_components_are_rejected(monkeypatch, tmp_path: Path):
    no_test = ("# component-version: 1.0.0\nname: x\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n"
               "      - name: S\n        action: ExecuteBash\n        inputs: {commands: [echo]}\n")
    assert "has no test phase" in component_errors(monkeypatch, tmp_path, no_test)
    bad_action = no_test.replace("ExecuteBash", "RunSomething") + (
        "  - name: test\n    steps:\n      - name: T\n        action: ExecuteBash\n        inputs: {commands: [true]}\n")
    assert "'RunSomething' is not an AWSTOE action" in component_errors(monkeypatch, tmp_path, bad_action)
    missing_include = no_test.replace("[echo]", '["#@include scripts/nope.sh"]') + (
        "  - name: test\n    steps:\n      - name: T\n        action: ExecuteBash\n        inputs: {commands: [true]}\n")
    assert "includes scripts/nope.sh, which does not exist" in component_errors(monkeypatch, tmp_path, missing_include)
    unversioned = (no_test + "  - name: test\n    steps:\n      - name: T\n        action: ExecuteBash\n"
                   "        inputs: {commands: [true]}\n").replace("# component-version: 1.0.0\n", "")
    assert "has no '# component-version: X.Y.Z' line" in component_errors(monkeypatch, tmp_path, unversioned)


def test_cluster_configs_take_the_custom_ami_from_context(default_app: Synthesized):
    def image(app: Synthesized) -> dict:
        [cluster] = app.template("ClusterStack").find_resources("Custom::PclusterCluster").values()
        return cluster["Properties"]["ClusterConfiguration"]["Image"]

    assert image(default_app) == {"Os": "ubuntu2204"}  # an unset optional placeholder leaves the key out
    assert image(synth(CUSTOM_AMI="ami-0123456789abcdef0")) == {"Os": "ubuntu2204", "CustomAmi": "ami-0123456789abcdef0"}


def test_dry_run_prints_components_and_config(capsys):
    assert build_ami.main(["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "# component enroot-pyxis" in out and "# image_configs/pcluster-ami.yaml" in out


def test_build_uploads_components_runs_pcluster_and_waits(aws, capsys, monkeypatch, tmp_path: Path):
    boto3.client("s3").create_bucket(Bucket="data-bucket")
    template = {"Resources": {"T": {"Type": "AWS::SNS::Topic"}}, "Outputs": {
        k: {"Value": v} for k, v in {"DataBucketName": "data-bucket", "PublicSubnet": "subnet-0aaaaaaaaaaaaaaaa",
                                     "SecurityGroup": "sg-0cccccccccccccccc", "KeyPairName": "k"}.items()}}
    boto3.client("cloudformation").create_stack(StackName="PrereqStack", TemplateBody=json.dumps(template))
    # moto has no Image Builder: stub its two calls.
    imagebuilder = boto3.client("imagebuilder", region_name="us-east-1")
    stub = Stubber(imagebuilder)
    versions = {name: image.component_version(image.COMPONENT_DIR / f"{name}.yaml") for name in ("enroot-pyxis", "hpc-tools")}
    for name, version in versions.items():
        stub.add_response("create_component", {"componentBuildVersionArn":
                          f"arn:aws:imagebuilder:us-east-1:123456789012:component/{name}/{version}/1"})
    stub.activate()
    real_client = build_ami.connect

    def connect_with_stub(*args, **kwargs):
        session = real_client(*args, **kwargs)
        original = session.client
        session.client = lambda service: imagebuilder if service == "imagebuilder" else original(service)
        return session

    monkeypatch.setattr(build_ami, "connect", connect_with_stub)
    calls = tmp_path / "calls"
    fake = tmp_path / "pcluster"  # answers build-image, then IN_PROGRESS once, then COMPLETE
    fake.write_text(f"""#!/bin/bash
echo "$@" >> {calls}
case "$1" in
  build-image) cp "$3" {tmp_path}/rendered.yaml; echo '{{"image": {{"imageBuildStatus": "BUILD_IN_PROGRESS"}}}}' ;;
  describe-image) if [ $(grep -c describe-image {calls}) -lt 2 ]; then echo '{{"imageBuildStatus": "BUILD_IN_PROGRESS"}}';
                  else echo '{{"imageBuildStatus": "BUILD_COMPLETE", "ec2AmiInfo": {{"amiId": "ami-0fedcba9876543210"}}}}'; fi ;;
esac
""")
    fake.chmod(0o755)
    monkeypatch.setattr(image_builder, "PCLUSTER", str(fake))
    assert build_ami.main(["--image-id", "img-1", "--poll-seconds", "0"]) == 0
    out = capsys.readouterr().out
    assert "AMI ami-0fedcba9876543210" in out and "-c CUSTOM_AMI=ami-0fedcba9876543210" in out
    stub.assert_no_pending_responses()
    uploaded = boto3.client("s3").get_object(Bucket="data-bucket",
                                             Key=f"image-components/enroot-pyxis/{versions['enroot-pyxis']}.yaml")
    assert b"enable_pyxis" in uploaded["Body"].read()
    rendered = yaml.safe_load((tmp_path / "rendered.yaml").read_text())
    assert rendered["Build"]["SubnetId"] == "subnet-0aaaaaaaaaaaaaaaa"
    assert rendered["Build"]["Components"][0]["Value"].endswith(f"component/enroot-pyxis/{versions['enroot-pyxis']}/1")


def test_failed_build_says_how_to_see_why(monkeypatch, tmp_path: Path):
    fake = tmp_path / "pcluster"
    fake.write_text("#!/bin/bash\necho '{\"imageBuildStatus\": \"BUILD_FAILED\", "
                    "\"imagebuilderImageStatusReason\": \"component hpc-tools failed\"}'\n")
    fake.chmod(0o755)
    monkeypatch.setattr(image_builder, "PCLUSTER", str(fake))
    with pytest.raises(image_builder.OpsError, match="ended in BUILD_FAILED: component hpc-tools failed"):
        image_builder.wait_for_image("img", "us-east-1", 0)
