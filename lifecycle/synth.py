"""Synthesizes this app, or the app at another git ref, into a cdk.out directory (offline)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from settings.context import REPO_ROOT

CDK = REPO_ROOT / "node_modules" / ".bin" / "cdk"


def shared_installs() -> list[str]:
    """What a worktree of another ref reuses: the venvs (one per ParallelCluster version) and the CDK CLI."""
    return [".venv", "node_modules", *sorted(p.name for p in REPO_ROOT.glob(".venv-pcluster-*"))]


def synth_env() -> dict[str, str]:
    return {**os.environ, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20", "AWS_EC2_METADATA_DISABLED": "true",
            "CDK_DISABLE_VERSION_CHECK": "1"}


def synth(out_dir: Path, *, ref: str | None = None, context: dict[str, str] | None = None) -> Path:
    """`cdk synth` of the working tree (ref None) or of ``ref`` into ``out_dir``; returns out_dir."""
    args = [str(CDK), "synth", "--quiet", "--output", str(out_dir.resolve())]
    for key, value in (context or {}).items():
        args += ["-c", f"{key}={value}"]
    if ref is None:
        _run(args, REPO_ROOT)
        return out_dir
    worktree = Path(tempfile.mkdtemp(prefix="synth-ref-"))
    try:
        _run(["git", "worktree", "add", "--detach", "--force", str(worktree), ref], REPO_ROOT)
        for name in shared_installs():
            if (REPO_ROOT / name).exists() and not (worktree / name).exists():
                (worktree / name).symlink_to(REPO_ROOT / name)
        _run(args, worktree)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=REPO_ROOT, capture_output=True)
        shutil.rmtree(worktree, ignore_errors=True)
    return out_dir


def _run(args: list[str], cwd: Path) -> None:
    result = subprocess.run(args, cwd=cwd, env=synth_env(), capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args[:2])} failed in {cwd}:\n{result.stderr.strip()[-2000:]}")
