"""The warm AWS CLI the job bridge's tests run (tests/warm_aws_cli.py) behaves as the real `aws` where the bridge
relies on it: output, exit status, stdin, relative paths, umask, and a kill that stops an upload."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.job_bridge_cluster import BUCKET, s3_client, s3_server
from tests.warm_aws_cli import REAL_AWS, warm_aws_cli

pytestmark = pytest.mark.long  # the real AWS CLI beside the warm one, and kills timed in seconds


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    yield from s3_server()


@pytest.fixture(scope="module")
def warm() -> Iterator[str]:
    with warm_aws_cli() as folder:
        yield str(folder / "aws")


@pytest.fixture
def env(endpoint: str) -> dict[str, str]:
    return {**os.environ, "AWS_ENDPOINT_URL": endpoint, "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def run(cli: str, command: str, env: dict[str, str], cwd: Path | str = "/", stdin: str = "") -> tuple[int, str, str]:
    done = subprocess.run(["bash", "-c", command.replace("AWS ", f"{cli} ")], env=env, cwd=cwd, input=stdin,
                          capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout, done.stderr


@pytest.mark.parametrize("command,stdin", [
    (f"AWS s3 cp - s3://{BUCKET}/same/one.txt --only-show-errors", "one\n"),
    (f"AWS s3 cp s3://{BUCKET}/same/one.txt - | head -n 1", ""),
    (f"AWS s3api head-object --bucket {BUCKET} --key same/one.txt --query ContentLength --output text", ""),
    (f"AWS s3api head-object --bucket {BUCKET} --key same/missing.txt", ""),
    (f"AWS s3api list-objects-v2 --bucket {BUCKET} --prefix same/ --query 'Contents[].Key' --output text", ""),
    ("AWS s3api head-object --no-such-option", ""),
])
def test_output_and_exit_status_are_the_real_clis(warm: str, env: dict[str, str], command: str, stdin: str):
    real = run(str(REAL_AWS), command, env, stdin=stdin)
    assert run(warm, command, env, stdin=stdin) == real


def variant(env: dict[str, str], change: str, folder: Path) -> dict[str, str]:
    """The environment of another caller: a daemon's, without a locale or PYTHON variables (the epilog's), the C
    locale, a data path of its own, unbuffered output."""
    if change == "daemon":
        return {k: v for k, v in env.items() if not k.startswith(("LANG", "LC_", "PYTHON"))}
    return {**env, **{"C locale": {"LC_ALL": "C"}, "data path": {"AWS_DATA_PATH": str(folder)},
                      "unbuffered": {"PYTHONUNBUFFERED": "1"}}[change]}


CHANGES = ["daemon", "C locale", "data path", "unbuffered"]


@pytest.mark.parametrize("change", CHANGES)
def test_another_callers_environment_gets_the_real_clis_output(warm: str, env: dict[str, str], endpoint: str,
                                                               change: str, tmp_path: Path):
    s3_client(endpoint).put_object(Bucket=BUCKET, Key="names/caf\u00e9 \u00fcber.txt", Body=b"x")
    command = f"AWS s3api list-objects-v2 --bucket {BUCKET} --prefix names/ --query 'Contents[].Key' --output text"
    caller = variant(env, change, tmp_path)
    assert run(warm, command, caller) == run(str(REAL_AWS), command, caller)


@pytest.mark.parametrize("change,served", [(None, True), ("daemon", True), ("data path", False)])
def test_the_server_serves_the_callers_it_was_started_for(warm: str, env: dict[str, str], change: str | None,
                                                          served: bool, tmp_path: Path):
    """The speed-up is real for the bridge's callers (the test's environment and the epilog's), and a caller whose
    startup differs runs the real CLI (the client replaces itself with it)."""
    caller = variant(env, change, tmp_path) if change else env
    waiting = subprocess.Popen([warm, "s3", "cp", "-", f"s3://{BUCKET}/never"], stdin=subprocess.PIPE, env=caller,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1)
        command_line = Path(f"/proc/{waiting.pid}/cmdline").read_bytes().split(b"\0")
        assert (command_line[2] == warm.encode()) is served, command_line
    finally:
        waiting.kill()
        waiting.wait()


def test_relative_paths_and_the_umask_are_the_callers(warm: str, env: dict[str, str], endpoint: str, tmp_path: Path):
    s3_client(endpoint).put_object(Bucket=BUCKET, Key="tree/a.txt", Body=b"a")
    modes = {}
    for label, cli in (("real", str(REAL_AWS)), ("warm", warm)):
        for mask in ("077", "022"):
            cwd = tmp_path / f"{label}-{mask}"
            cwd.mkdir()
            status, _, err = run(cli, f"umask {mask} && AWS s3 sync s3://{BUCKET}/tree/ out --only-show-errors", env,
                                 cwd=cwd)
            assert status == 0, err
            modes[cli, mask] = oct((cwd / "out" / "a.txt").stat().st_mode & 0o777)
    assert modes[str(REAL_AWS), "077"] != modes[str(REAL_AWS), "022"]  # the umask matters to the real CLI
    assert [modes[warm, m] for m in ("077", "022")] == [modes[str(REAL_AWS), m] for m in ("077", "022")]


@pytest.mark.parametrize("which", ["real", "warm"])
def test_a_killed_cli_uploads_nothing(warm: str, env: dict[str, str], endpoint: str, which: str):
    """The fault tests kill the bridge's process group mid-upload: the upload must stop as with the real CLI."""
    cli = str(REAL_AWS) if which == "real" else warm
    key = f"killed/{which}.txt"
    upload = subprocess.Popen([cli, "s3", "cp", "-", f"s3://{BUCKET}/{key}"], stdin=subprocess.PIPE, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert upload.stdin is not None
    upload.stdin.write(b"partial\n")
    upload.stdin.flush()
    time.sleep(2)  # the CLI is reading its stdin
    upload.send_signal(signal.SIGKILL)
    assert upload.wait(timeout=10) == -signal.SIGKILL
    upload.stdin.close()  # a CLI still alive would now upload what it read
    time.sleep(2)
    assert s3_client(endpoint).list_objects_v2(Bucket=BUCKET, Prefix=key).get("KeyCount") == 0


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("runuser"), reason="needs root to run as another user")
def test_another_user_cannot_run_the_servers_cli(warm: str, env: dict[str, str], endpoint: str):
    """The server runs as root for the bridge: a local user with a copy of the client reaches nothing."""
    folder = Path(tempfile.mkdtemp(prefix="warm-aws-copy-"))
    folder.chmod(0o755)
    client = folder / "aws"
    shutil.copy(warm, client)
    client.chmod(0o755)
    done = subprocess.run(["runuser", "-u", "nobody", "--", str(client), "s3", "cp", "-", f"s3://{BUCKET}/by-nobody"],
                          input=b"x", env=env, capture_output=True, timeout=60)
    assert done.returncode != 0
    assert b"Permission denied" in done.stderr
    assert s3_client(endpoint).list_objects_v2(Bucket=BUCKET, Prefix="by-nobody").get("KeyCount") == 0


# Run in a process of its own: _ParsedData replaces botocore's loader methods, as it does in the server.
HANDED_OUT_ONCE = r'''
import json, os, sys
from botocore import loaders
from warm_aws_cli import _ParsedData

root = sys.argv[1]
data = _ParsedData(os.path.join(root, "log"))
model = os.path.join(root, "models", "svc", "2020-01-01", "service-2")
loader = loaders.Loader(extra_search_paths=[os.path.join(root, "models")], include_default_search_paths=False)
loaders.JSONFileLoader().load_file(model), loader.list_available_services("service-2")  # what a first child reads
data.refill()
preloaded = data.files[model]


def child() -> dict:
    read, write = os.pipe()
    if os.fork() == 0:
        first = loaders.JSONFileLoader().load_file(model)
        first["changed"] = True  # a caller changing what it got
        services = loader.list_available_services("service-2")
        services.append("changed")
        report = {"first_preloaded": first is preloaded, "again": loaders.JSONFileLoader().load_file(model),
                  "services": loader.list_available_services("service-2")}
        os.write(write, json.dumps(report).encode())
        os._exit(0)
    os.close(write)
    os.wait()
    return json.loads(os.read(read, 1 << 16))


print(json.dumps([child(), child(), [json.loads(line)[0] for line in open(os.path.join(root, "log"))]]))
'''


def test_the_servers_parsed_files_are_each_childs_own(tmp_path: Path):
    """The server reads botocore's JSON files and folder lists once, before it forks: every child gets them as a fresh
    `aws` would, its own copy, and a later load in the same child reads the file again."""
    model = tmp_path / "models" / "svc" / "2020-01-01" / "service-2.json"
    model.parent.mkdir(parents=True)
    model.write_text('{"version": "2.0"}')
    done = subprocess.run([str(REAL_AWS.parent / "python"), "-c", HANDED_OUT_ONCE, str(tmp_path)], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)})
    assert done.returncode == 0, done.stderr
    first, second, learned = json.loads(done.stdout)
    for report in (first, second):  # the second child sees nothing the first one changed
        assert report == {"first_preloaded": True, "again": {"version": "2.0"}, "services": ["svc"]}
    # Logged for the server: the first reads, then each child's second read of the file (the list stayed served).
    assert learned == ["file", "services", "file", "file"]
