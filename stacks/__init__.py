"""Stacks compose constructs; all logic lives in ``hpc_constructs`` and ``settings``."""
