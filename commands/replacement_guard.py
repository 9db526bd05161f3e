"""Fails when a change would replace or delete a resource that holds data, unless acknowledged.

    hpc-replacement-guard                          # working tree vs the committed snapshots
    hpc-replacement-guard --base cdk.out.base --target cdk.out    # what the PR workflow runs
    hpc-replacement-guard --base deployed          # working tree vs the deployed stacks

Acknowledge an intended replacement in cdk.json: "acknowledged_replacements": ["PrereqStack/<LogicalId>"].
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from lifecycle.replacement_guard import replacements, report, unacknowledged
from lifecycle.synth import synth
from lifecycle.templates import app_stacks, load_template
from settings import read
from settings.lifecycle import LifecycleSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="snapshot", metavar="SOURCE",
                        help="cdk.out dir, 'snapshot' (default: the committed templates) or 'deployed'")
    parser.add_argument("--target", metavar="SOURCE", help="cdk.out dir (default: synthesize the working tree)")
    args = parser.parse_args(argv)
    acknowledged = list(read(LifecycleSettings).acknowledged_replacements)
    with tempfile.TemporaryDirectory() as tmp:
        target = args.target or str(synth(Path(tmp) / "target"))
        stacks = app_stacks(args.base, target)
        found = replacements({stack: load_template(args.base, stack) for stack in stacks},
                             {stack: load_template(target, stack) for stack in stacks})
    print(report(found, acknowledged))
    return 1 if unacknowledged(found, acknowledged) else 0


if __name__ == "__main__":
    sys.exit(main())
