#!/usr/bin/env python3
"""CDK entry point. Bad configuration exits with a readable message, never a stack trace."""

import sys

from aws_cdk import App

from settings.errors import ConfigError, ConfigErrors
from stacks.app_builder import synthesize


def main() -> int:
    app = App()
    try:
        result = synthesize(app).deployment
    except (ConfigError, ConfigErrors) as error:
        print(f"Configuration error:\n{error}", file=sys.stderr)
        return 1
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
