"""The README is part of the product: its diagram and commands must match the code."""

from __future__ import annotations

import re

from tools.architecture_diagram import README, mermaid, readme_block
from settings.context import REPO_ROOT
from tests.conftest import Synthesized, installed_command


def test_readme_diagram_matches_the_synthesized_app(default_app: Synthesized):
    templates = {name: default_app.template(name).to_json() for name in default_app.stacks}
    assert readme_block(mermaid(templates)) in README.read_text(), (
        "README diagram is stale: run .venv/bin/python tools/architecture_diagram.py --readme")


def test_ci_runs_exactly_the_readme_test_command():
    ci_commands = [line for line in (REPO_ROOT / ".ci" / "run").read_text().splitlines()
                   if line.strip() and not line.startswith(("#", "set ", "cd "))]
    assert ci_commands == ["make test"]
    assert re.search(r"^make test\s+#", README.read_text(), re.M)


DOCS = REPO_ROOT / "docs"


def test_readme_documents_every_context_key():
    from settings.context import shipped_context

    readme = (DOCS / "configuration.md").read_text()
    ours = [k for k in shipped_context() if not k.startswith("@")]
    assert [k for k in ours if f"`{k}`" not in readme] == []


def test_the_readmes_verify_sample_is_what_verify_prints():
    """Parse the sample back into results: `table()` must print exactly docs/deploy.md's block."""
    from ops.verify import CheckResult, table

    readme = (DOCS / "deploy.md").read_text()
    block = readme.split("What it prints on `vanilla`", 1)[1].split("```text\n", 1)[1].split("```", 1)[0].rstrip("\n")
    rows = block.splitlines()[2:-1]
    parsed = []
    for row in rows:
        match = re.match(r"^(\S+)\s+(PASS|FAIL|SKIP)\s+(\d+)s  (.*)$", row)
        assert match, row
        parsed.append(CheckResult(match[1], match[2], int(match[3]), match[4]))
    assert table(parsed) == block


def test_the_readmes_day2_commands_exist_with_help():
    import subprocess

    for command in (["hpc-deploy", "--help"], ["hpc-ops", "verify", "--help"],
                    ["hpc-ops", "connect", "--help"]):
        done = subprocess.run([installed_command(command[0]), *command[1:]], cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0 and "usage:" in done.stdout, (command, done.stderr)
        assert command[0] in README.read_text()


def test_the_readme_is_short_and_links_every_document_which_links_only_what_exists():
    """The README says what it is, how to run it and where to read on; every page in docs/ is reachable from it,
    and no relative link of the README or docs/ points at a missing file."""
    readme = README.read_text()
    assert len(readme) < 11_000, f"README.md is {len(readme)} characters: move detail into docs/"
    pages = sorted(p.name for p in DOCS.glob("*.md"))
    assert pages and [p for p in pages if f"(docs/{p})" not in readme] == []
    for page in [README, *DOCS.glob("*.md")]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"
