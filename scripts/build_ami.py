#!/usr/bin/env python3
"""Builds the custom AMI: uploads the AWSTOE components, runs `pcluster build-image`, waits, prints the AMI.

    scripts/build_ami.py --dry-run                  # validate and print what would be built (offline)
    scripts/build_ami.py --image-id hpc-ubuntu-v1   # build (AWS credentials; PrereqStack deployed)

Then deploy the cluster on it: npx cdk deploy ClusterStack -c CUSTOM_AMI=ami-...
Components go to s3://<data bucket>/image-components/ and become Image Builder components named
after their files, at the version in their `# component-version:` line (reused if it exists).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cluster_config import dummy_values  # noqa: E402
from cluster_config.image import (COMPONENT_DIR, component_version, components_used, image_values,  # noqa: E402
                                  load_image_config, render_component, validate_image)
from cluster_config.render import render  # noqa: E402
from cluster_config.stack_values import DATA_BUCKET_NAME, KEY_PAIR_NAME  # noqa: E402
from ops.cluster import OpsError, connect, outputs  # noqa: E402
from settings import PrereqSettings, read  # noqa: E402
from settings.cluster import ClusterSettings  # noqa: E402
from settings.context import REPO_ROOT, shipped_context  # noqa: E402
from settings.errors import ConfigError, ConfigErrors  # noqa: E402

PCLUSTER = os.environ.get("PCLUSTER", str(REPO_ROOT / ".venv-pcluster" / "bin" / "pcluster"))
DONE, FAILED = "BUILD_COMPLETE", ("BUILD_FAILED", "DELETE_FAILED", "DELETE_COMPLETE")


def upload_components(aws: Any, bucket: str, names: list[str]) -> dict[str, str]:
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
        print(f"component {name} {version}: {arns[name]}")
    return arns


def pcluster(*args: str) -> dict[str, Any]:
    result = subprocess.run([PCLUSTER, *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise OpsError(f"pcluster {args[0]} failed: {(result.stdout + result.stderr).strip()[-1500:]}")
    return json.loads(result.stdout)


def wait_for_image(image_id: str, region: str, poll_seconds: float, sleep: Callable[[float], None] = time.sleep) -> str:
    while True:
        image = pcluster("describe-image", "--image-id", image_id, "--region", region)
        status = image.get("imageBuildStatus", "UNKNOWN")
        print(f"{image_id}: {status}", flush=True)
        if status == DONE:
            return image["ec2AmiInfo"]["amiId"]
        if status in FAILED:
            reason = image.get("imagebuilderImageStatusReason") or image.get("cloudformationStackStatusReason", "")
            raise OpsError(f"image build {image_id} ended in {status}: {reason} (pcluster get-image-log-events "
                           f"--image-id {image_id} --log-stream-name <stream> for details)")
        sleep(poll_seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="pcluster-ami", help="image_configs/<name>.yaml")
    parser.add_argument("--image-id", default="hpc-cluster-image", help="pcluster image id (also its stack name)")
    parser.add_argument("--dry-run", action="store_true", help="validate and print, no AWS call")
    parser.add_argument("--region")
    parser.add_argument("--profile")
    parser.add_argument("-c", "--context", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--poll-seconds", type=float, default=60)
    args = parser.parse_args(argv)
    overrides = dict(pair.split("=", 1) for pair in args.context)
    # UPPER_CASE names are the image config's own ${PLACEHOLDERS}, read from context as the app reads them.
    context = {**shipped_context(), **overrides}
    try:
        network = read(PrereqSettings, overrides).network
        version = read(ClusterSettings, overrides).parallelcluster_version
        region = args.region or os.environ.get("AWS_DEFAULT_REGION") or network.region or "us-east-1"
        document = load_image_config(args.config)
        config = validate_image(document, region, network.vpc_cidr, context.get, version)
        if args.dry_run:
            for name in components_used(document):
                print(f"# component {name}\n{render_component(COMPONENT_DIR / f'{name}.yaml')}")
            print(f"# {document.source} (validation stand-ins)\n{yaml.safe_dump(config, sort_keys=False)}", end="")
            return 0
        aws = connect(region, args.profile)
        prereq = outputs(aws, "PrereqStack")
        arns = upload_components(aws, prereq[DATA_BUCKET_NAME], components_used(document))
        base = dummy_values(region, network.vpc_cidr, prereq.get(KEY_PAIR_NAME, ""), context.get, False)
        values = image_values(base, arns.__getitem__)
        values.stack = {**base.stack, **prereq}
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
            yaml.safe_dump(render(document, values), handle, sort_keys=False)
        started = pcluster("build-image", "--image-configuration", handle.name, "--image-id", args.image_id,
                           "--region", region)
        print(f"build started: {started.get('image', {}).get('imageBuildStatus', 'BUILD_IN_PROGRESS')}")
        ami = wait_for_image(args.image_id, region, args.poll_seconds)
        print(f"AMI {ami}\nuse it: npx cdk deploy ClusterStack -c CUSTOM_AMI={ami}")
    except (ConfigError, ConfigErrors) as error:
        print(f"Configuration error:\n{error}", file=sys.stderr)
        return 1
    except OpsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
