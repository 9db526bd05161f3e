"""Builds the custom AMI with `pcluster build-image`: uploads the AWSTOE components, starts the build, waits.

The command line is `hpc-build-ami` (commands/build_ami.py); this module holds what it does, so tests drive it
with moto, a stubbed Image Builder and a fake `pcluster`.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from typing import Any, Callable

import yaml

from cluster_yaml import dummy_values
from cluster_yaml.document import ConfigDocument
from cluster_yaml.image import COMPONENT_DIR, component_version, components_used, image_values, render_component
from cluster_yaml.render import render
from cluster_yaml.stack_values import DATA_BUCKET_NAME, KEY_PAIR_NAME
from ops.cluster import OpsError, Session, outputs
from cluster_yaml.sidecar import DEFAULT_VERSION, pcluster_venv

# The pcluster CLI of the version's isolated venv (aws-parallelcluster pins CDK v1); PCLUSTER overrides it.
PCLUSTER = os.environ.get("PCLUSTER")


def pcluster_cli(version: str) -> str:
    return PCLUSTER or str(pcluster_venv(version) / "bin" / "pcluster")
DONE, FAILED = "BUILD_COMPLETE", ("BUILD_FAILED", "DELETE_FAILED", "DELETE_COMPLETE")


def _say(line: str) -> None:
    print(line, flush=True)  # a build takes an hour: each status line shows at once, also when piped


def upload_components(aws: Session, bucket: str, names: list[str], say: Callable[[str], None] = _say) -> dict[str, str]:
    """Component name -> ARN; an existing name/version is reused (Image Builder versions are immutable)."""
    s3, imagebuilder = aws.client("s3"), aws.client("imagebuilder")
    arns = {}
    for name in names:
        path = COMPONENT_DIR / f"{name}.yaml"
        version = component_version(path)
        key = f"image-components/{name}/{version}.yaml"
        s3.put_object(Bucket=bucket, Key=key, Body=render_component(path).encode())
        try:
            arns[name] = imagebuilder.create_component(
                name=name, semanticVersion=version, platform="Linux", uri=f"s3://{bucket}/{key}",
                description=f"{name} from image_configs/components (parallelcluster-cdk)",
                clientToken=f"{name}-{version}")["componentBuildVersionArn"]
        except imagebuilder.exceptions.ResourceAlreadyExistsException:
            found = imagebuilder.list_components(owner="Self", filters=[{"name": "name", "values": [name]}])
            arns[name] = next(c["arn"] for c in found["componentVersionList"] if c["version"] == version) + "/1"
        say(f"component {name} {version}: {arns[name]}")
    return arns


def pcluster(version: str, *args: str) -> dict[str, Any]:
    result = subprocess.run([pcluster_cli(version), *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise OpsError(f"pcluster {args[0]} failed: {(result.stdout + result.stderr).strip()[-1500:]}")
    return json.loads(result.stdout)


def wait_for_image(image_id: str, region: str, poll_seconds: float, sleep: Callable[[float], None] = time.sleep,
                   say: Callable[[str], None] = _say, version: str = DEFAULT_VERSION) -> str:
    while True:
        image = pcluster(version, "describe-image", "--image-id", image_id, "--region", region)
        status = image.get("imageBuildStatus", "UNKNOWN")
        say(f"{image_id}: {status}")
        if status == DONE:
            return image["ec2AmiInfo"]["amiId"]
        if status in FAILED:
            reason = image.get("imagebuilderImageStatusReason") or image.get("cloudformationStackStatusReason", "")
            raise OpsError(f"image build {image_id} ended in {status}: {reason} (pcluster get-image-log-events "
                           f"--image-id {image_id} --log-stream-name <stream> for details)")
        sleep(poll_seconds)


def build_image(aws: Session, document: ConfigDocument, image_id: str, vpc_cidr: str, context: Callable[[str], Any],
                poll_seconds: float, version: str, say: Callable[[str], None] = _say) -> str:
    """Uploads the components the image config uses, renders it with PrereqStack's outputs, builds with ``version``'s
    pcluster, waits: the AMI id."""
    prereq = outputs(aws, "PrereqStack")
    arns = upload_components(aws, prereq[DATA_BUCKET_NAME], components_used(document), say)
    base = dummy_values(aws.region, vpc_cidr, prereq.get(KEY_PAIR_NAME, ""), context, False)
    values = image_values(base, arns.__getitem__)
    values.stack = {**base.stack, **prereq}
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        yaml.safe_dump(render(document, values), handle, sort_keys=False)
    started = pcluster(version, "build-image", "--image-configuration", handle.name, "--image-id", image_id,
                       "--region", aws.region)
    say(f"build started: {started.get('image', {}).get('imageBuildStatus', 'BUILD_IN_PROGRESS')}")
    return wait_for_image(image_id, aws.region, poll_seconds, say=say, version=version)
