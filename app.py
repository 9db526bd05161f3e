#!/usr/bin/env python3
"""CDK entry point. Bad configuration exits with a readable message, never a stack trace."""

import sys

from aws_cdk import App

from settings.errors import ConfigError, ConfigErrors
from stacks.app_builder import build


def main() -> int:
    app = App()
    try:
        build(app)
    except (ConfigError, ConfigErrors) as error:
        print(f"Configuration error:\n{error}", file=sys.stderr)
        return 1
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
