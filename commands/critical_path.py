"""Deploy critical path: the slow resources (FSx, DRAs, the cluster) that run in series, with
typical durations. Reads a cdk.out directory (default: synthesize the working tree)."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from lifecycle.critical_path import critical_path, to_text
from lifecycle.synth import synth
from lifecycle.templates import app_stacks, load_template


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", metavar="DIR", help="a cdk.out directory (default: synthesize)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        source = args.source or str(synth(Path(tmp) / "out"))
        templates = {stack: load_template(source, stack) for stack in app_stacks(source)}
    print(to_text(critical_path({k: v for k, v in templates.items() if v})), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
