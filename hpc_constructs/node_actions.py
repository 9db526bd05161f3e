"""Node-action scripts from scripts/node_actions/, uploaded by CDK as assets (nothing from GitHub at boot)."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct


class NodeActionScripts(Construct):
    """One S3 asset per referenced script; the URL goes into the cluster config's CustomActions.

    Assets are content-addressed: editing a script changes its URL, so the cluster update that
    follows actually runs the new version instead of a cached one.
    """

    def __init__(self, scope: Construct, construct_id: str, *, directory: Path, scripts: list[str]) -> None:
        super().__init__(scope, construct_id)
        self._assets = {
            script: s3_assets.Asset(self, script.replace("/", "-").replace(".", "-"), path=str(directory / script))
            for script in scripts
        }

    def url(self, script: str) -> str:
        return self._assets[script].s3_object_url

    @property
    def bucket_name(self) -> str | None:
        """The bucket of the assets (CDK's bootstrap bucket), for the nodes' S3Access."""
        first = next(iter(self._assets.values()), None)
        return first.s3_bucket_name if first else None
