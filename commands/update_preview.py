"""Preview a cluster update: per changed key, ParallelCluster's update policy (offline ConfigPatch).

    hpc-update-preview --base-ref origin/main            # this branch vs the base branch
    hpc-update-preview --base deployed                   # this branch vs the deployed ClusterStack
    hpc-update-preview --base cdk.out.base --target cdk.out --markdown   # what the PR workflow runs

SOURCE is a cdk.out directory, a ClusterStack template file, `snapshot` (the committed template) or
`deployed` (needs AWS credentials).
Without --target the working tree is synthesized. Exit code 1 when a change cannot be applied to the
running cluster (e.g. HeadNode.InstanceType), with the recommended path.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from cluster_yaml.sidecar import WorkerError
from commands import failed
from lifecycle.synth import synth
from lifecycle.templates import app_stacks, is_cluster_stack, load_template
from lifecycle.update_preview import preview, to_markdown, to_terminal


def context_pairs(pairs: list[str]) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in pairs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    base = parser.add_mutually_exclusive_group(required=True)
    base.add_argument("--base", metavar="SOURCE", help="cdk.out dir, template file, or 'deployed'")
    base.add_argument("--base-ref", metavar="REF", help="git ref to synthesize as the baseline")
    parser.add_argument("--target", metavar="SOURCE", help="default: synthesize the working tree")
    parser.add_argument("-c", "--context", action="append", default=[], metavar="KEY=VALUE",
                        help="CDK context for the synthesized sides (as with cdk synth -c)")
    parser.add_argument("--markdown", action="store_true", help="Markdown table for a PR comment")
    parser.add_argument("--stopped", action="store_true",
                        help="assume the compute fleet is stopped (default: running, the worst case)")
    args = parser.parse_args(argv)
    context = context_pairs(args.context)
    with tempfile.TemporaryDirectory() as tmp:
        base_source = args.base or str(synth(Path(tmp) / "base", ref=args.base_ref, context=context))
        target_source = args.target or str(synth(Path(tmp) / "target", context=context))
        prereq = (load_template(base_source, "PrereqStack"), load_template(target_source, "PrereqStack"))
        clusters = [s for s in app_stacks(base_source, target_source) if is_cluster_stack(s)]
        results = []
        try:  # each cluster of the clusters knob (one by default), judged by its own ParallelCluster version
            for stack in clusters:
                results.append((stack, preview(load_template(base_source, stack), load_template(target_source, stack),
                                               running=not args.stopped, prereq=prereq)))
        except WorkerError as error:
            return failed(error)
    for stack, result in results:
        if len(results) > 1:
            print(f"#### {stack}\n" if args.markdown else f"== {stack} ==")
        print(to_markdown(result) if args.markdown else to_terminal(result), end="")
    return 1 if any(result.has_errors for _, result in results) else 0


if __name__ == "__main__":
    sys.exit(main())
