"""The README is part of the product: its diagram and commands must match the code."""

from __future__ import annotations

import re

from scripts.architecture_diagram import README, mermaid, readme_block
from settings.context import REPO_ROOT
from tests.conftest import Synthesized


def test_readme_diagram_matches_the_synthesized_app(default_app: Synthesized):
    templates = {name: default_app.template(name).to_json() for name in default_app.stacks}
    assert readme_block(mermaid(templates)) in README.read_text(), (
        "README diagram is stale: run .venv/bin/python scripts/architecture_diagram.py --readme")


def test_ci_runs_exactly_the_readme_test_command():
    ci_commands = [line for line in (REPO_ROOT / ".ci" / "run").read_text().splitlines()
                   if line.strip() and not line.startswith(("#", "set ", "cd "))]
    assert ci_commands == ["make test"]
    assert re.search(r"^make test\s+#", README.read_text(), re.M)


def test_readme_documents_every_context_key():
    from settings.context import shipped_context

    readme = README.read_text()
    ours = [k for k in shipped_context() if not k.startswith("@")]
    assert [k for k in ours if f"`{k}`" not in readme] == []
