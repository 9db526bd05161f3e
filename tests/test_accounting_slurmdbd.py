"""Slurm accounting for real: the MySQL user our custom resource creates (its statements run against a real
MariaDB as the master user, as the Data API would run them), and the Database settings we render (Uri
host:port, UserName, DatabaseName, a plain password as in the secret), configure slurmdbd as
ParallelCluster does; a job run by slurmctld shows up in sacct, and that user can reach nothing else."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import pytest

import cluster_yaml
from cluster_yaml.accounting import with_accounting
from cluster_yaml.render import render
from tests.local_slurm import LocalSlurm, free_port, needs, tool, wait_for

pytestmark = needs("mariadb-install-db", "mariadbd", "slurmdbd", "slurmctld", "slurmd", "munged", "sacct", "sacctmgr",
                   packages="mariadb-server, slurmdbd, slurm-wlm")
PASSWORD = "S3cretFromSecretsManager"  # the slurmdbd user's, as in its Secrets Manager secret
ADMIN_PASSWORD = "MasterFromRdsSecret"
FUNCTION_DIR = Path(__file__).resolve().parent.parent / "hpc_constructs" / "accounting_user"


def user_function():
    import importlib.util

    spec = importlib.util.spec_from_file_location("accounting_user_index", FUNCTION_DIR / "index.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def mysql(base: Path, user: str, password: str, sql: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("mariadb"), f"--socket={base}/mysql.sock", f"--user={user}", f"--password={password}",
                           "-N", "-e", sql], capture_output=True, text=True)


def rendered_database(db_port: int) -> dict[str, str]:
    """SlurmSettings.Database exactly as the app renders it, with the database's address in the Uri."""
    document = with_accounting(cluster_yaml.load_named_config("vanilla"))
    values = cluster_yaml.dummy_values("us-east-1", "10.0.0.0/16", "k", {}.get, True)
    values.stack = {**values.stack, "AccountingDatabaseUri": f"127.0.0.1:{db_port}"}
    return render(document, values)["Scheduling"]["SlurmSettings"]["Database"]


def slurmdbd_conf(database: dict[str, str], password: str, base: Path, dbd_port: int) -> str:
    """ParallelCluster's mapping of the Database settings to slurmdbd.conf (Uri -> host and port,
    DatabaseName -> StorageLoc)."""
    host, _, port = database["Uri"].rpartition(":")
    return (f"AuthType=auth/munge\nAuthInfo=socket={base}/munge.sock\nDbdHost=localhost\nDbdPort={dbd_port}\n"
            f"SlurmUser=root\nStorageType=accounting_storage/mysql\nStorageHost={host}\nStoragePort={port}\n"
            f"StorageUser={database['UserName']}\nStoragePass={password}\nStorageLoc={database['DatabaseName']}\n"
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
    # The master user, as RDS creates it from the admin secret.
    init.write_text(f"CREATE USER 'admin_slurm'@'%' IDENTIFIED BY '{ADMIN_PASSWORD}';\n"
                    "GRANT ALL ON *.* TO 'admin_slurm'@'%' WITH GRANT OPTION;\n"
                    f"CREATE USER 'admin_slurm'@'localhost' IDENTIFIED BY '{ADMIN_PASSWORD}';\n"
                    "GRANT ALL ON *.* TO 'admin_slurm'@'localhost' WITH GRANT OPTION;\nFLUSH PRIVILEGES;\n")
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
        # The custom resource's statements, executed as the master user; its response goes to a local
        # server standing in for CloudFormation's pre-signed URL.
        answers: list[dict] = []

        class Answer(http.server.BaseHTTPRequestHandler):
            def do_PUT(self):  # noqa: N802 - http.server's name
                answers.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        server = http.server.HTTPServer(("127.0.0.1", 0), Answer)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        executed: list[str] = []

        def execute_statement(resourceArn, secretArn, sql):  # noqa: N803 - the Data API's names
            executed.append(sql)
            result = mysql(base, "admin_slurm", ADMIN_PASSWORD, sql)
            if result.returncode:
                raise RuntimeError(result.stderr)

        clients = SimpleNamespace(rds_data=SimpleNamespace(execute_statement=execute_statement), secrets=SimpleNamespace(
            get_secret_value=lambda SecretId: {"SecretString": {"arn:user": PASSWORD}[SecretId]}))
        event = {"RequestType": "Create", "ResponseURL": f"http://127.0.0.1:{server.server_port}/", "StackId": "s",
                 "RequestId": "r", "LogicalResourceId": "SlurmdbdUser", "ResourceProperties": {
                     "ClusterArn": "arn:cluster", "AdminSecretArn": "arn:admin", "UserSecretArn": "arn:user",
                     "UserName": database["UserName"], "DatabaseName": database["DatabaseName"]}}
        for request_type in ("Create", "Update"):  # an update applies the same statements again
            user_function().handler({**event, "RequestType": request_type}, None, clients=clients)
        server.shutdown()
        assert [a["Status"] for a in answers] == ["SUCCESS", "SUCCESS"], answers
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
        yield {"env_conf": str(slurm.conf), "base": str(base), "uri": database["Uri"], "user": database["UserName"],
               "executed": executed}
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


def test_slurmdbds_user_reaches_its_database_and_nothing_else(accounting_cluster):
    base = Path(accounting_cluster["base"])
    user = accounting_cluster["user"]
    assert user == "slurm"
    tables = mysql(base, user, PASSWORD, "SHOW TABLES FROM slurm_acct_db")
    assert tables.returncode == 0 and "hpccluster_job_table" in tables.stdout  # slurmdbd created its tables
    for forbidden in ("SELECT user FROM mysql.user", "CREATE DATABASE other_db", "CREATE USER 'x'@'%'"):
        result = mysql(base, user, PASSWORD, forbidden)
        assert result.returncode != 0 and "denied" in result.stderr.lower(), forbidden


def test_a_failed_statement_never_reports_the_password():
    module = user_function()
    properties = {"UserSecretArn": "arn:user", "UserName": "slurm", "DatabaseName": "slurm_acct_db"}

    def fails(sql: str) -> None:
        if "IDENTIFIED BY" in sql:  # a database error that quotes the statement, password included
            raise RuntimeError(f"You have an error in your SQL syntax near '{sql}'")

    with pytest.raises(module.StatementFailed) as info:
        module.apply(properties, fails, lambda arn: "TopSecret123")
    assert "TopSecret123" not in str(info.value) and "IDENTIFIED BY '********'" in str(info.value)
