"""The user commands: thin entry points (argument parsing, exit codes, one-line errors), installed as the
``hpc-*`` console scripts declared in pyproject.toml. What they do lives in ops/, lifecycle/ and job_bridge/."""
