"""The pull-request report (`hpc-pr-report`): template diff against the base branch (offline `cdk diff`), the
cluster update preview (ParallelCluster update policies), the data-safety guard and the deploy critical path."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from lifecycle.critical_path import critical_path
from lifecycle.critical_path import to_text as critical_path_text
from lifecycle.replacement_guard import replacements, report, unacknowledged
from lifecycle.synth import CDK, synth_env
from lifecycle.templates import app_stacks, is_cluster_stack, load_template
from lifecycle.update_preview import preview, to_markdown
from settings import read
from settings.context import REPO_ROOT
from settings.lifecycle import LifecycleSettings

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def cdk_diff(base: Path, head: Path, stack: str) -> str:
    """`cdk diff` of ``stack`` in the head assembly against the base template, without AWS."""
    base_template = base / f"{stack}.template.json"
    if not base_template.exists():
        return f"{stack} is new in this change."
    result = subprocess.run([str(CDK), "diff", "--app", str(head), "--exclusively", "--template", str(base_template),
                             stack], cwd=REPO_ROOT, capture_output=True, text=True,
                            env={**synth_env(), "FORCE_COLOR": "0", "NO_COLOR": "1"})
    text = ANSI.sub("", result.stdout + result.stderr).strip()
    return "\n".join(line for line in text.splitlines() if "Number of stacks with differences" not in line).strip()


def build_report(base: Path, head: Path) -> tuple[str, bool]:
    sections = ["## Infrastructure changes", ""]
    stacks = app_stacks(str(base), str(head))
    for stack in stacks:
        sections += [f"<details><summary><code>cdk diff {stack}</code></summary>", "", "```", cdk_diff(base, head, stack),
                     "```", "</details>", ""]
    prereq = (load_template(str(base), "PrereqStack"), load_template(str(head), "PrereqStack"))
    has_errors = False
    clusters = [s for s in stacks if is_cluster_stack(s)]
    for stack in clusters:  # each cluster of the clusters knob, with its own version's policies
        cluster = preview(load_template(str(base), stack), load_template(str(head), stack), prereq=prereq)
        has_errors = has_errors or cluster.has_errors
        sections.append((f"#### {stack}\n\n" if len(clusters) > 1 else "") + to_markdown(cluster))
    acknowledged = list(read(LifecycleSettings).acknowledged_replacements)
    found = replacements({s: load_template(str(base), s) for s in stacks}, {s: load_template(str(head), s) for s in stacks})
    blocked = unacknowledged(found, acknowledged)
    sections += ["### Stored data", "", ":x: Data at risk." if blocked else ":white_check_mark: No resource holding data "
                 "is replaced or deleted without acknowledgement.", "", "```", report(found, acknowledged), "```", ""]
    templates = {s: t for s in stacks if (t := load_template(str(head), s))}
    sections += ["### Deploy critical path", "", "```", critical_path_text(critical_path(templates)).strip(), "```"]
    return "\n".join(sections) + "\n", bool(blocked) or has_errors
