"""ParallelCluster's worker process: the account it builds ahead (the last one asked for) speeds up the
next synth and never changes an answer; the jsii kernel runs with the V8 pool size app.py chooses."""

from __future__ import annotations

import copy
import os
import sys
import subprocess

import pytest

from stacks.jsii_kernel import jsii_node_options
from cluster_yaml import sidecar
from cluster_yaml.simulation import simulate

pytestmark = pytest.mark.long  # real dry runs in fresh ParallelCluster workers

REGION = "us-east-1"


@pytest.fixture(scope="module")
def deployment(default_app) -> tuple[dict, list[dict]]:
    """The default app's simulated account and the cluster config its template carries."""
    templates = {name: default_app.synthesis.template(name) for name in default_app.stacks}
    scripts = default_app.stacks["ClusterStack"].node_actions
    simulation = simulate(templates, REGION, objects={f"ClusterStack/{scripts.bucket_logical_id}":
                                                      scripts.deployed_keys})
    return simulation.account, simulation.configs


def without_ingress(account: dict) -> dict:
    """The same account with every inbound rule gone: the file systems cannot be reached."""
    closed = copy.deepcopy(account)
    for group in closed["security_groups"]:
        group["ingress"] = []
    return closed


def dryrun_request(account: dict, configs: list[dict]) -> dict:
    return {"dryrun": {"region": REGION, "account": account, "clusters": [
        {"name": "vanilla", "cluster_name": "hpc-cluster", "config": config} for config in configs]}}


def dry_run(account: dict, configs: list[dict], ahead: dict | None, tmp_path, monkeypatch) -> dict:
    monkeypatch.setattr(sidecar, "CACHE_DIR", tmp_path)
    sidecar.last_account_file(REGION).unlink(missing_ok=True)
    if ahead is not None:
        sidecar.remember_account(REGION, ahead)
    with sidecar.PclusterProcess(REGION, warm=True) as process:
        answer = process.ask(dryrun_request(account, configs))
    return answer


def errors(answer: dict) -> list[tuple[str, str]]:
    return sorted((f["type"], f["message"]) for r in answer["results"] for f in r["findings"] if f["level"] == "ERROR")


@pytest.fixture(scope="module")
def one_worker(deployment, tmp_path_factory) -> list[dict]:
    """A worker with nothing to build ahead (its guess of the account is unreadable), asked for the default config,
    one with an unknown instance type, and the default config again."""
    account, [config] = deployment
    unknown = copy.deepcopy(config)
    unknown["HeadNode"]["InstanceType"] = "c5.99xlarge"
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(sidecar, "CACHE_DIR", tmp_path_factory.mktemp("cache"))
        sidecar.last_account_file(REGION).write_text("{not json")
        with sidecar.PclusterProcess(REGION, warm=True) as process:
            return [process.ask(dryrun_request(account, [c])) for c in (config, unknown, config)]


def test_the_last_account_is_built_ahead_and_answers_as_a_fresh_one(deployment, one_worker, tmp_path, monkeypatch):
    account, configs = deployment
    fresh = one_worker[0]  # the first answer of a worker that had nothing to build ahead
    ahead = dry_run(account, configs, account, tmp_path, monkeypatch)
    assert not fresh["timing"]["account_built_ahead"] and ahead["timing"]["account_built_ahead"]
    assert [r["findings"] for r in ahead["results"]] == [r["findings"] for r in fresh["results"]]
    assert ahead["results"][0]["validators"] == fresh["results"][0]["validators"] > 60


def test_a_stale_guess_never_reaches_the_answer(deployment, tmp_path, monkeypatch):
    account, configs = deployment
    closed = without_ingress(account)
    # Built ahead: the open account; asked: the closed one. ParallelCluster must see the closed one.
    asked_closed = dry_run(closed, configs, account, tmp_path, monkeypatch)
    assert not asked_closed["timing"]["account_built_ahead"]
    assert any(kind == "ExistingFsxNetworkingValidator" for kind, _ in errors(asked_closed))
    # And the other way round: nothing of the closed guess is left in the open account.
    asked_open = dry_run(account, configs, closed, tmp_path, monkeypatch)
    assert not asked_open["timing"]["account_built_ahead"] and errors(asked_open) == []


def test_an_unreadable_guess_is_ignored(one_worker):
    answer = one_worker[0]  # the worker found "{not json" where its guess of the account belongs
    assert not answer["timing"]["account_built_ahead"] and errors(answer) == []


def test_one_worker_answers_request_after_request_as_fresh_workers_do(one_worker):
    """Answers from moto's packaged data (instance types and offerings) are reused within a worker."""
    answers = one_worker
    assert errors(answers[0]) == errors(answers[2]) == []
    assert any(kind == "InstanceTypeValidator" and "c5.99xlarge" in message for kind, message in errors(answers[1]))
    assert answers[0]["results"][0]["findings"] == answers[2]["results"][0]["findings"]


# -- the jsii kernel's V8 pool ------------------------------------------------------------------------
def test_the_v8_pool_gets_half_the_cores_at_most_four():
    pool = [option for option in jsii_node_options("", 2).split() if option.startswith("--v8-pool-size")]
    assert pool == ["--v8-pool-size=1"]
    for cores, size in ((1, 1), (6, 3), (64, 4)):
        assert f"--v8-pool-size={size}" in jsii_node_options("", cores)
    assert jsii_node_options("--max-old-space-size=8192", 2).startswith("--max-old-space-size=8192 --v8-pool-size=1 ")


def test_a_pool_size_the_user_set_wins_and_nothing_is_added_twice():
    options = jsii_node_options("--v8-pool-size=8", 2)
    assert "--v8-pool-size=1" not in options and options.startswith("--v8-pool-size=8 ")
    assert jsii_node_options(options, 2) == options


def test_node_takes_the_options_and_the_preload_silently(tmp_path):
    """NODE_OPTIONS takes only allow-listed flags (a rejected one would stop the jsii kernel, and synth);
    the preload must print nothing (a V8 flag this node does not know would be reported)."""
    script = tmp_path / "probe.js"
    script.write_text("process.stdout.write(String(process.execArgv.length))")
    result = subprocess.run(["node", str(script)], capture_output=True, text=True,
                            env={**os.environ, "NODE_OPTIONS": jsii_node_options("", os.cpu_count() or 1)})
    assert (result.returncode, result.stdout, result.stderr) == (0, "0", "")


def test_the_preload_path_survives_spaces(tmp_path, monkeypatch):
    from stacks import jsii_kernel

    spaced = tmp_path / "a dir with spaces" / "jsii_kernel.js"
    spaced.parent.mkdir()
    spaced.write_text(jsii_kernel.KERNEL_PRELOAD.read_text())
    monkeypatch.setattr(jsii_kernel, "KERNEL_PRELOAD", spaced)
    result = subprocess.run(["node", "-e", "0"], capture_output=True, text=True,
                            env={**os.environ, "NODE_OPTIONS": jsii_kernel.jsii_node_options("", 2)})
    assert (result.returncode, result.stderr) == (0, "")


def test_two_synths_at_once_write_the_cache_without_tripping_over_each_other(tmp_path):
    """Each writer has its own temporary file: with a shared one, a writer can find it gone (crash)."""
    script = (f"import sys; sys.path.insert(0, {str(sidecar.REPO_ROOT)!r})\n"
              "from pathlib import Path\nfrom cluster_yaml import sidecar\n"
              f"sidecar.CACHE_DIR = Path({str(tmp_path)!r})\n"
              "for n in range(300):\n"
              "    sidecar.store('same-key', {'n': n, 'pad': 'x' * 4096})\n"
              "    sidecar.remember_account('us-east-1', {'n': n})\n")
    writers = [subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [(w.wait(), w.stderr.read()) for w in writers]
    assert results == [(0, "")] * 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last-account-us-east-1.json", "same-key.json"]
