"""The pull-request report: template diff against the base branch (offline `cdk diff`), the cluster
update preview (ParallelCluster update policies), the data-safety guard and the deploy critical path.

    hpc-pr-report --base-ref origin/main --output pr-report.md
    hpc-pr-report --base cdk.out.base --head cdk.out --output pr-report.md

Exit code 1 when the change would replace or delete stored data without acknowledgement, or when the
cluster update cannot be applied to the running cluster. The report is written either way.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from cluster_yaml.sidecar import WorkerError
from commands import failed
from lifecycle.pr_report import build_report
from lifecycle.synth import synth


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
        try:
            text, blocked = build_report(base_dir, head_dir)
        except WorkerError as error:
            return failed(error)
    if args.output:
        args.output.write_text(text)
    else:
        print(text, end="")
    return 1 if blocked else 0


if __name__ == "__main__":
    sys.exit(main())
