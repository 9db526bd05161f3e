"""The pull-request workflow and the report it posts."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from lifecycle.templates import SNAPSHOT_DIR, SNAPSHOT_FILES
from settings.context import REPO_ROOT
from tests.conftest import Synthesized, installed_command, synth

WORKFLOW = REPO_ROOT / ".github" / "workflows" / "pull-request.yml"
CHECK_JSONSCHEMA = REPO_ROOT / ".venv" / "bin" / "check-jsonschema"


@pytest.mark.skipif(not CHECK_JSONSCHEMA.exists(), reason="run `make test`: it installs check-jsonschema")
def test_workflow_matches_the_github_actions_schema():
    result = subprocess.run([str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflow_installs_with_the_readme_command_and_posts_the_report():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    assert list(workflow[True]) == ["pull_request"]  # YAML 1.1 reads the key `on` as True
    steps = workflow["jobs"]["report"]["steps"]
    runs = [step.get("run", "") for step in steps]
    assert "make test" in runs
    assert any("hpc-pr-report --base-ref" in run for run in runs)
    assert any("GITHUB_STEP_SUMMARY" in run for run in runs)  # where a fork's report goes
    comment = workflow["jobs"]["comment"]
    assert any("gh pr comment" in step.get("run", "") for step in comment["steps"])
    slurm = [run for run in runs if "tests/test_job_bridge_slurm.py" in run]
    assert slurm and slurm[0].lstrip().startswith("sudo -E")  # as root, as on a head node
    # Every file whose servers need root (tests/local_slurm.needs) runs there: under make test on GitHub it skips.
    root_files = {p.name for p in (REPO_ROOT / "tests").glob("test_*.py") if "\npytestmark = needs(" in p.read_text()}
    assert {"test_job_bridge_slurm.py", "test_upgrade_slurm.py"} <= root_files
    assert [name for name in sorted(root_files) if f"tests/{name}" not in slurm[0]] == []


SAME_REPOSITORY = "github.event.pull_request.head.repo.full_name == github.repository"


def test_the_pull_requests_code_never_runs_with_a_token_that_can_write():
    """The report job runs the pull request's code (make test, hpc-pr-report): read-only token, not persisted in
    .git/config where that code could read it. The job that writes (the comment) checks nothing out and runs no
    code of the pull request."""
    workflow = yaml.safe_load(WORKFLOW.read_text())
    assert workflow["permissions"] == {"contents": "read"}
    report, comment = workflow["jobs"]["report"], workflow["jobs"]["comment"]
    assert report["permissions"] == {"contents": "read", "id-token": "write"}
    [checkout] = [s for s in report["steps"] if s.get("uses", "").startswith("actions/checkout")]
    assert checkout["with"]["persist-credentials"] is False
    assert comment["permissions"] == {"pull-requests": "write"}
    assert not [s for s in comment["steps"] if s.get("uses", "").startswith(("actions/checkout", "actions/setup"))]
    assert all("make" not in s.get("run", "") and "python" not in s.get("run", "") for s in comment["steps"])
    # A fork's token cannot comment: forks get the job summary, and no comment job.
    assert SAME_REPOSITORY in comment["if"]


def test_the_live_account_diff_is_only_for_private_repositories_and_never_for_forks():
    steps = yaml.safe_load(WORKFLOW.read_text())["jobs"]["report"]["steps"]
    account_diff = [s for s in steps if "cdk diff --no-change-set PrereqStack ClusterStack" in s.get("run", "")]
    [credentials] = [s for s in steps if "configure-aws-credentials" in s.get("uses", "")]
    for step in (*account_diff, credentials):
        assert step["if"] == f"vars.AWS_ROLE_ARN != '' && {SAME_REPOSITORY} && github.event.repository.private"


def write_assembly(app: Synthesized, directory: Path) -> Path:
    shutil.copytree(app.assembly.directory, directory)
    return directory


def test_report_shows_diff_update_policies_guard_and_critical_path(tmp_path: Path):
    base = tmp_path / "base"
    base.mkdir()
    for stack, name in SNAPSHOT_FILES.items():
        shutil.copy(SNAPSHOT_DIR / name, base / f"{stack}.template.json")
    head = write_assembly(synth(HEAD_NODE_INSTANCE_TYPE="c5.18xlarge", availability_zone="us-east-1b"), tmp_path / "head")
    result = subprocess.run([installed_command("hpc-pr-report"), "--base", str(base), "--head",
                             str(head), "--output", str(tmp_path / "report.md")], capture_output=True, text=True)
    assert result.returncode == 1, result.stderr
    report = (tmp_path / "report.md").read_text()
    assert "<code>cdk diff PrereqStack</code>" in report and "HomeFileSystem776A06C2 replace" in report
    assert "| `HeadNode.InstanceType` | `c5.9xlarge` | `c5.18xlarge` | UNSUPPORTED |" in report
    assert ":x: Data at risk." in report and "REFUSED      PrereqStack/LustreFileSystem" in report  # the cluster imports it
    assert "critical path: ~42 min, 3 slow resource(s) in series" in report
