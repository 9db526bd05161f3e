"""Builds the custom AMI: uploads the AWSTOE components, runs `pcluster build-image`, waits, prints the AMI.

    hpc-build-ami --dry-run                  # validate and print what would be built (offline)
    hpc-build-ami --image-id hpc-ubuntu-v1   # build (AWS credentials; PrereqStack deployed)

Then deploy the cluster on it: npx cdk deploy ClusterStack -c CUSTOM_AMI=ami-...
Components go to s3://<data bucket>/image-components/ and become Image Builder components named
after their files, at the version in their `# component-version:` line (reused if it exists).
"""

from __future__ import annotations

import argparse
import os
import sys

import yaml

from cluster_yaml.image import COMPONENT_DIR, components_used, load_image_config, render_component, validate_image
from commands import failed
from ops.cluster import OpsError, connect
from ops.image import build_image
from settings import PrereqSettings, read
from settings.cluster import ClusterSettings
from settings.context import shipped_context
from settings.errors import ConfigError, ConfigErrors


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
        ami = build_image(connect(region, args.profile), document, args.image_id, network.vpc_cidr, context.get,
                          args.poll_seconds, version)
        print(f"AMI {ami}\nuse it: npx cdk deploy ClusterStack -c CUSTOM_AMI={ami}")
    except (ConfigError, ConfigErrors) as error:
        print(f"Configuration error:\n{error}", file=sys.stderr)
        return 1
    except OpsError as error:
        return failed(error)
    return 0


if __name__ == "__main__":
    sys.exit(main())
