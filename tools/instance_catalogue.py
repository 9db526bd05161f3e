#!/usr/bin/env python3
"""Prints the record of the instance-type catalogue (pcluster_sidecar/instance_catalogue.json) for the moto and
aws-parallelcluster pinned in requirements-pcluster-<version>.txt. Developer tool, needs PyPI: the dates are the build
times of the two wheels' files. After bumping moto: run it, review, and write its output to the record."""

import glob
import gzip
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def pinned(package: str) -> str:
    from settings import read
    from settings.cluster import ClusterSettings

    version = read(ClusterSettings).parallelcluster_version
    text = (REPO / f"requirements-pcluster-{version}.txt").read_text()  # the lock of the shipped version
    return re.search(rf"^{re.escape(package)}==(\S+)$", text, re.M | re.I).group(1)


def wheel(package: str, version: str, folder: str) -> zipfile.ZipFile:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", folder, f"{package}=={version}"],
                   check=True)
    return zipfile.ZipFile(glob.glob(f"{folder}/{package.replace('-', '_')}-{version}-*.whl")[0])


def built(archive: zipfile.ZipFile) -> str:
    return "%04d-%02d-%02d" % max(info.date_time for info in archive.infolist())[:3]


def main() -> None:
    record = json.loads((REPO / "pcluster_sidecar" / "instance_catalogue.json").read_text())
    with tempfile.TemporaryDirectory() as folder:
        moto = wheel("moto", pinned("moto"), folder)
        parallelcluster = wheel("aws-parallelcluster", pinned("aws-parallelcluster"), folder)
        types = json.loads(gzip.decompress(moto.read("moto/ec2/resources/instance_types.json.gz")))
        regions = {n for n in moto.namelist() if n.startswith("moto/ec2/resources/instance_type_offerings/region/")}
        record.update(version=pinned("moto"), data_date=built(moto), types=len(types), regions=len(regions),
                      parallelcluster=pinned("aws-parallelcluster"), parallelcluster_date=built(parallelcluster))
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
