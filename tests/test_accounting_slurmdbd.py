"""Slurm accounting for real: the Database settings we render (Uri host:port, UserName, a plain
password as in the secret) configure slurmdbd as ParallelCluster does, against a real MariaDB, and
a job run by slurmctld shows up in sacct."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

import cluster_config
from cluster_config.accounting import with_accounting
from cluster_config.render import render
from tests.local_slurm import LocalSlurm, free_port, missing_tools, tool, wait_for

missing = missing_tools("mariadb-install-db", "mariadbd", "slurmdbd", "slurmctld", "slurmd", "munged", "sacct",
                        "sacctmgr")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    bool(missing) or os.geteuid() != 0,
    reason=f"needs Debian's mariadb-server, slurmdbd, slurm-wlm and root (missing: {missing}); `make test` "
           "installs them as root")]
PASSWORD = "S3cretFromSecretsManager"


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
    (base / "db").mkdir()
    slurm = LocalSlurm(base, cluster_name="hpccluster")
    db_port, dbd_port = free_port(), free_port()
    subprocess.run([tool("mariadb-install-db"), f"--datadir={base}/db", "--user=root",
                    "--auth-root-authentication-method=normal", "--skip-test-db"], check=True, capture_output=True)
    init = base / "init.sql"
    init.write_text(f"CREATE USER 'slurm_admin'@'%' IDENTIFIED BY '{PASSWORD}';\n"
                    "GRANT ALL ON *.* TO 'slurm_admin'@'%';\nFLUSH PRIVILEGES;\n")
    subprocess.Popen([tool("mariadbd"), f"--datadir={base}/db", "--user=root", f"--port={db_port}",
                      "--bind-address=127.0.0.1", f"--socket={base}/mysql.sock", f"--pid-file={base}/mysqld.pid",
                      f"--init-file={init}", f"--log-error={base}/log/mysqld.log"],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    slurm.track(base / "mysqld.pid")

    def mysql_up() -> bool:
        """MariaDB to accept connections"""
        return subprocess.run(["bash", "-c", f"echo > /dev/tcp/127.0.0.1/{db_port}"], capture_output=True).returncode == 0

    try:
        wait_for(mysql_up)
        database = rendered_database(db_port)
        (base / "slurmdbd.conf").write_text(slurmdbd_conf(database, PASSWORD, base, dbd_port))
        (base / "slurmdbd.conf").chmod(0o600)
        slurm.write_conf(f"JobAcctGatherType=jobacct_gather/linux\nAccountingStorageType=accounting_storage/slurmdbd\n"
                         f"AccountingStorageHost=localhost\nAccountingStoragePort={dbd_port}\n"
                         f"AccountingStoragePass={slurm.munge_socket}\nJobCompType=jobcomp/none")
        slurm.start_munge()
        slurm.start_daemon([tool("slurmdbd")], "slurmdbd.pid")  # reads slurmdbd.conf beside SLURM_CONF

        def dbd_up() -> bool:
            """slurmdbd to register the cluster"""
            return subprocess.run([tool("sacctmgr"), "-i", "add", "cluster", "hpccluster"], env=slurm.env,
                                  capture_output=True).returncode == 0

        wait_for(dbd_up)
        slurm.start_slurm()
        yield {"env_conf": str(slurm.conf), "base": str(base), "uri": database["Uri"]}
    finally:
        slurm.stop()


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
