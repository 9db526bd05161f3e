"""The user commands: thin entry points (argument parsing, exit codes, one-line errors), installed as the
``hpc-*`` console scripts declared in pyproject.toml. What they do lives in ops/, lifecycle/ and job_bridge/."""

import sys


def failed(error: Exception) -> int:
    """A problem the user can act on: one line on stderr, exit status 1 (never a traceback)."""
    print(f"error: {error}", file=sys.stderr)
    return 1
