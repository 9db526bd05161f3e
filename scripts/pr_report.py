#!/usr/bin/env python3
"""The pull-request report: template diff against the base branch (offline `cdk diff`), the cluster
update preview (ParallelCluster update policies), the data-safety guard and the deploy critical path.

    scripts/pr_report.py --base-ref origin/main --output pr-report.md
    scripts/pr_report.py --base cdk.out.base --head cdk.out --output pr-report.md

Exit code 1 when the change would replace or delete stored data without acknowledgement, or when the
cluster update cannot be applied to the running cluster. The report is written either way.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lifecycle.critical_path import critical_path  # noqa: E402
from lifecycle.critical_path import to_text as critical_path_text  # noqa: E402
from lifecycle.replacement_guard import replacements, report, unacknowledged  # noqa: E402
from lifecycle.synth import CDK, synth, synth_env  # noqa: E402
from lifecycle.templates import STACKS, load_template  # noqa: E402
from lifecycle.update_preview import preview, to_markdown  # noqa: E402
from settings import read  # noqa: E402
from settings.context import REPO_ROOT  # noqa: E402
from settings.lifecycle import LifecycleSettings  # noqa: E402

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
    for stack in STACKS:
        sections += [f"<details><summary><code>cdk diff {stack}</code></summary>", "", "```", cdk_diff(base, head, stack),
                     "```", "</details>", ""]
    cluster = preview(load_template(str(base), "ClusterStack"), load_template(str(head), "ClusterStack"),
                      prereq=(load_template(str(base), "PrereqStack"), load_template(str(head), "PrereqStack")))
    sections.append(to_markdown(cluster))
    acknowledged = list(read(LifecycleSettings).acknowledged_replacements)
    found = replacements({s: load_template(str(base), s) for s in STACKS}, {s: load_template(str(head), s) for s in STACKS})
    blocked = unacknowledged(found, acknowledged)
    sections += ["### Stored data", "", ":x: Data at risk." if blocked else ":white_check_mark: No resource holding data "
                 "is replaced or deleted without acknowledgement.", "", "```", report(found, acknowledged), "```", ""]
    templates = {s: t for s in STACKS if (t := load_template(str(head), s))}
    sections += ["### Deploy critical path", "", "```", critical_path_text(critical_path(templates)).strip(), "```"]
    return "\n".join(sections) + "\n", bool(blocked) or cluster.has_errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    base = parser.add_mutually_exclusive_group(required=True)
    base.add_argument("--base", type=Path, metavar="DIR", help="cdk.out of the base branch")
    base.add_argument("--base-ref", metavar="REF", help="git ref to synthesize as the base")
    parser.add_argument("--head", type=Path, metavar="DIR", help="cdk.out of this branch (default: synthesize)")
    parser.add_argument("--output", type=Path, help="write the Markdown here (default: stdout)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        base_dir = args.base or synth(Path(tmp) / "base", ref=args.base_ref)
        head_dir = args.head or synth(Path(tmp) / "head")
        text, failed = build_report(base_dir, head_dir)
    if args.output:
        args.output.write_text(text)
    else:
        print(text, end="")
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    sys.exit(main())
