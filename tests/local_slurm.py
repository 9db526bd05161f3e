"""A one-node Slurm cluster on localhost for integration tests (Debian's slurm-wlm and munge).

Everything lives in one temporary directory with its own munge socket and free ports, so tests
never touch a system Slurm. ``start_daemon`` records pid files; ``stop`` terminates them in reverse.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import pytest


def tool(name: str) -> str:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin") or name


def missing_tools(*names: str) -> list[str]:
    return [n for n in names if not (shutil.which(n) or shutil.which(n, path="/usr/sbin:/usr/bin"))]


def needs(*tools: str, packages: str = "slurm-wlm and munge") -> list[pytest.MarkDecorator]:
    """``pytestmark`` of a test file that starts daemons as root: skipped, saying why, without them."""
    missing = missing_tools(*tools)
    return [pytest.mark.slow, pytest.mark.servers, pytest.mark.skipif(
        bool(missing) or os.geteuid() != 0,
        reason=f"needs Debian's {packages} and root (missing: {missing}); `make test` installs them as root")]


def ensure_user(name: str) -> int:
    """A local user (created with a home folder when missing), the way jobs run on a cluster: not root."""
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        # Test files run in parallel: another may create the same user first (useradd exits 9, "already exists").
        made = subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", name], capture_output=True)
        if made.returncode not in (0, 9):
            raise subprocess.CalledProcessError(made.returncode, made.args, made.stdout, made.stderr)
        return pwd.getpwnam(name).pw_uid


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(check: Callable[[], object], timeout: float = 180, interval: float = 0.5) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {check.__doc__ or check}")


class LocalSlurm:
    def __init__(self, base: Path, cluster_name: str = "bridge") -> None:
        self.base, self.cluster_name = base, cluster_name
        for sub in ("state", "spool", "log"):
            (base / sub).mkdir(exist_ok=True)
        self.conf = base / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.munge_socket = base / "munge.sock"
        self._pid_files: list[Path] = []

    def write_conf(self, extra: str = "") -> None:
        host = socket.gethostname().split(".")[0]
        b = self.base
        self.conf.write_text(f"""ClusterName={self.cluster_name}
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={self.munge_socket}
CredType=cred/munge
StateSaveLocation={b}/state
SlurmdSpoolDir={b}/spool
SlurmctldPidFile={b}/slurmctld.pid
SlurmdPidFile={b}/slurmd.pid
SlurmctldLogFile={b}/log/slurmctld.log
SlurmdLogFile={b}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
{extra.strip()}
NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")

    def track(self, pid_file: Path) -> None:
        """Stop this daemon (by its pid file) with the others."""
        self._pid_files.append(pid_file)

    def start_daemon(self, args: list[str], pid_file: str) -> None:
        subprocess.run(args, env=self.env, check=True)
        self.track(self.base / pid_file)

    def start_munge(self) -> None:
        self.start_daemon([tool("munged"), "--force", f"--socket={self.munge_socket}",
                           "--key-file=/etc/munge/munge.key", f"--pid-file={self.base}/munged.pid",
                           f"--log-file={self.base}/log/munged.log", f"--seed-file={self.base}/munge.seed"],
                          "munged.pid")

    def start_slurm(self) -> None:
        self.start_daemon([tool("slurmctld"), "-f", str(self.conf)], "slurmctld.pid")
        self.start_daemon([tool("slurmd"), "-f", str(self.conf)], "slurmd.pid")

        def node_idle() -> bool:
            """the node to be idle"""
            out = subprocess.run(["sinfo", "-h", "-o", "%t"], env=self.env, capture_output=True, text=True).stdout
            return out.strip() == "idle"

        wait_for(node_idle)

    def stop(self) -> None:
        for pid_file in reversed(self._pid_files):
            try:
                os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
            except (FileNotFoundError, ProcessLookupError, ValueError):
                pass


@contextmanager
def running(base: Path, cluster_name: str, conf: str) -> Iterator[LocalSlurm]:
    """A started one-node cluster in ``base`` (``conf``: lines added to slurm.conf); afterwards its daemons
    are stopped and ``base`` is removed."""
    cluster = LocalSlurm(base, cluster_name=cluster_name)
    cluster.write_conf(conf)
    try:
        cluster.start_munge()
        cluster.start_slurm()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def plain_cluster(name: str, user: str) -> Iterator[LocalSlurm]:
    """A started one-node cluster without accounting, whose jobs run as ``user`` (created when missing)."""
    import tempfile

    ensure_user(user)
    base = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    base.chmod(0o755)
    with running(base, name, "JobAcctGatherType=jobacct_gather/none\nKillWait=2") as cluster:
        yield cluster
