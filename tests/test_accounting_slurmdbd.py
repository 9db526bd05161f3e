"""Slurm accounting for real: the Database settings we render (Uri host:port, UserName, a plain
password as in the secret) configure slurmdbd as ParallelCluster does, against a real MariaDB, and
a job run by slurmctld shows up in sacct."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

import cluster_config
from cluster_config.accounting import with_accounting
from cluster_config.render import render

NEEDED = ("mariadb-install-db", "mariadbd", "slurmdbd", "slurmctld", "slurmd", "munged", "sacct", "sacctmgr")
missing = [n for n in NEEDED if not (shutil.which(n) or shutil.which(n, path="/usr/sbin:/usr/bin"))]
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    bool(missing) or os.geteuid() != 0,
    reason=f"needs Debian's mariadb-server, slurmdbd, slurm-wlm and root (missing: {missing}); `make test` "
           "installs them as root")]
PASSWORD = "S3cretFromSecretsManager"


def tool(name: str) -> str:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin") or name


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(check, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {check.__doc__}")


def rendered_database(db_port: int) -> dict[str, str]:
    """SlurmSettings.Database exactly as the app renders it, with the database's address in the Uri."""
    document = with_accounting(cluster_config.load_named_config("vanilla"))
    values = cluster_config.dummy_values("us-east-1", "10.0.0.0/16", "k", {}.get, True)
    values.stack = {**values.stack, "AccountingDatabaseUri": f"127.0.0.1:{db_port}"}
    return render(document, values)["Scheduling"]["SlurmSettings"]["Database"]


def slurmdbd_conf(database: dict[str, str], password: str, base: Path, dbd_port: int) -> str:
    """ParallelCluster's mapping of the Database settings to slurmdbd.conf (Uri -> host and port)."""
    host, _, port = database["Uri"].rpartition(":")
    return (f"AuthType=auth/munge\nAuthInfo=socket={base}/munge.sock\nDbdHost=localhost\nDbdPort={dbd_port}\n"
            f"SlurmUser=root\nStorageType=accounting_storage/mysql\nStorageHost={host}\nStoragePort={port}\n"
            f"StorageUser={database['UserName']}\nStoragePass={password}\nStorageLoc=hpc_cluster\n"
            f"LogFile={base}/log/slurmdbd.log\nPidFile={base}/slurmdbd.pid\n")


@pytest.fixture(scope="module")
def accounting_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    base = tmp_path_factory.mktemp("acct")
    for sub in ("db", "state", "spool", "log"):
        (base / sub).mkdir()
    db_port, dbd_port, ctld_port, slurmd_port = (free_port() for _ in range(4))
    pids: list[Path] = []
    subprocess.run([tool("mariadb-install-db"), f"--datadir={base}/db", "--user=root", "--auth-root-authentication-method=normal",
                    "--skip-test-db"], check=True, capture_output=True)
    init = base / "init.sql"
    init.write_text(f"CREATE USER 'slurm_admin'@'%' IDENTIFIED BY '{PASSWORD}';\n"
                    "GRANT ALL ON *.* TO 'slurm_admin'@'%';\nFLUSH PRIVILEGES;\n")
    subprocess.Popen([tool("mariadbd"), f"--datadir={base}/db", "--user=root", f"--port={db_port}",
                      "--bind-address=127.0.0.1", f"--socket={base}/mysql.sock", f"--pid-file={base}/mysqld.pid",
                      f"--init-file={init}", f"--log-error={base}/log/mysqld.log"],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pids.append(base / "mysqld.pid")

    def mysql_up():
        """MariaDB to accept connections"""
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", db_port)) == 0

    try:
        wait_for(mysql_up)
        database = rendered_database(db_port)
        (base / "slurmdbd.conf").write_text(slurmdbd_conf(database, PASSWORD, base, dbd_port))
        (base / "slurmdbd.conf").chmod(0o600)
        host = socket.gethostname().split(".")[0]
        (base / "slurm.conf").write_text(f"""ClusterName=hpccluster
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={base}/munge.sock
CredType=cred/munge
StateSaveLocation={base}/state
SlurmdSpoolDir={base}/spool
SlurmctldPidFile={base}/slurmctld.pid
SlurmdPidFile={base}/slurmd.pid
SlurmctldLogFile={base}/log/slurmctld.log
SlurmdLogFile={base}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort={dbd_port}
AccountingStoragePass={base}/munge.sock
JobCompType=jobcomp/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")
        env = {**os.environ, "SLURM_CONF": str(base / "slurm.conf")}
        subprocess.run([tool("munged"), "--force", f"--socket={base}/munge.sock", "--key-file=/etc/munge/munge.key",
                        f"--pid-file={base}/munged.pid", f"--log-file={base}/log/munged.log",
                        f"--seed-file={base}/munge.seed"], check=True)
        pids.append(base / "munged.pid")
        subprocess.run([tool("slurmdbd")], env=env, check=True)  # reads slurmdbd.conf beside SLURM_CONF
        pids.append(base / "slurmdbd.pid")

        def dbd_up():
            """slurmdbd to answer"""
            return subprocess.run([tool("sacctmgr"), "-i", "add", "cluster", "hpccluster"], env=env,
                                  capture_output=True, text=True).returncode == 0 or subprocess.run(
                [tool("sacctmgr"), "-n", "show", "cluster"], env=env, capture_output=True, text=True).stdout.strip()

        wait_for(dbd_up)
        subprocess.run([tool("slurmctld"), "-f", str(base / "slurm.conf")], env=env, check=True)
        pids.append(base / "slurmctld.pid")
        subprocess.run([tool("slurmd"), "-f", str(base / "slurm.conf")], env=env, check=True)
        pids.append(base / "slurmd.pid")

        def node_idle():
            """the node to be idle"""
            return subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True,
                                  text=True).stdout.strip() == "idle"

        wait_for(node_idle)
        yield {"env_conf": str(base / "slurm.conf"), "base": str(base), "uri": database["Uri"]}
    finally:
        for pid_file in reversed(pids):
            try:
                os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
            except (FileNotFoundError, ProcessLookupError, ValueError):
                pass


def test_rendered_database_settings_drive_slurmdbd_and_jobs_are_accounted(accounting_cluster, tmp_path: Path):
    env = {**os.environ, "SLURM_CONF": accounting_cluster["env_conf"]}
    assert accounting_cluster["uri"].startswith("127.0.0.1:")  # host:port, as ParallelCluster expects
    (tmp_path / "job.sh").write_text("#!/bin/bash\necho accounted\n")
    job_id = subprocess.run(["sbatch", "--parsable", "--job-name=acct", "--chdir", str(tmp_path),
                             str(tmp_path / "job.sh")], env=env, capture_output=True, text=True,
                            check=True).stdout.strip()

    def accounted():
        """sacct to show the job COMPLETED"""
        out = subprocess.run([tool("sacct"), "-n", "-X", "-j", job_id, "-o", "JobName,State"], env=env,
                             capture_output=True, text=True).stdout.split()
        return out == ["acct", "COMPLETED"]

    wait_for(accounted)
