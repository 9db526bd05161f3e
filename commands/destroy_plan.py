"""Simulates `cdk destroy`: whether it completes, what it deletes and keeps, and how to remove what remains.

    hpc-destroy-plan                 # from a fresh synth of the working tree
    hpc-destroy-plan --source cdk.out
    hpc-destroy-plan --deployed      # also fill in physical ids from the deployed stacks
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from lifecycle.destroy_plan import deployed_physical_ids, simulate, to_text
from lifecycle.synth import synth
from lifecycle.templates import app_stacks, load_template


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", metavar="DIR", help="a cdk.out directory (default: synthesize)")
    parser.add_argument("--deployed", action="store_true", help="read physical ids with AWS credentials")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        source = args.source or str(synth(Path(tmp) / "out"))
        templates = {stack: load_template(source, stack) for stack in app_stacks(source)}
    physical = deployed_physical_ids(tuple(templates)) if args.deployed else None
    print(to_text(simulate(templates, physical)), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
