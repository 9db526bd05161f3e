"""Custom resource (Lambda, Python 3.14 with its bundled boto3): creates the MySQL user slurmdbd logs in
as, with rights on its own database only, through the RDS Data API and the cluster's admin secret.

Neither password ever appears in the template, the event or the logs: the function reads both secrets
itself. Properties: ClusterArn, AdminSecretArn (RDS's JSON secret of the master user), UserSecretArn
(the plain password ParallelCluster gives slurmdbd), UserName, DatabaseName. On Delete the user is
left in place (the database and its snapshot keep the accounting history).
"""

from __future__ import annotations

import json
import re
import urllib.request
from typing import Any, Callable

IDENTIFIER = re.compile(r"^[A-Za-z0-9_]{1,32}$")


def quote(text: str) -> str:
    """A MySQL string literal (the generated passwords are alphanumeric; quoted anyway)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def statements(user: str, password: str, database: str) -> list[str]:
    """The user, its password (set again on every update: a rotated secret takes effect), and its rights:
    everything on slurmdbd's database, nothing elsewhere."""
    for name in (user, database):
        if not IDENTIFIER.match(name):
            raise ValueError(f"not a MySQL identifier this function accepts: {name!r}")
    account = f"{quote(user)}@'%'"
    return [f"CREATE DATABASE IF NOT EXISTS `{database}`",
            f"CREATE USER IF NOT EXISTS {account} IDENTIFIED BY {quote(password)}",
            f"ALTER USER {account} IDENTIFIED BY {quote(password)}",
            f"GRANT ALL PRIVILEGES ON `{database}`.* TO {account}"]


class StatementFailed(Exception):
    """A statement failed; the message has the password blanked out (database errors may quote the SQL)."""


def apply(properties: dict[str, Any], execute: Callable[[str], None], secret: Callable[[str], str]) -> None:
    password = secret(properties["UserSecretArn"])
    for sql in statements(properties["UserName"], password, properties["DatabaseName"]):
        try:
            execute(sql)
        except Exception as error:  # noqa: BLE001 - re-raised without the password
            raise StatementFailed(f"{type(error).__name__}: {error}".replace(password, "********")) from None


def _respond(event: dict[str, Any], status: str, reason: str = "") -> None:
    body = json.dumps({"Status": status, "Reason": reason[:1000], "PhysicalResourceId": event.get(
        "PhysicalResourceId") or f"slurm-user-{event['ResourceProperties']['UserName']}", "StackId": event["StackId"],
        "RequestId": event["RequestId"], "LogicalResourceId": event["LogicalResourceId"]}).encode()
    request = urllib.request.Request(event["ResponseURL"], data=body, method="PUT",
                                     headers={"Content-Type": "", "Content-Length": str(len(body))})
    urllib.request.urlopen(request, timeout=30).close()


def handler(event: dict[str, Any], context: Any, clients: Any = None) -> None:
    try:
        if event["RequestType"] in ("Create", "Update"):
            import boto3

            properties = event["ResourceProperties"]
            data = clients.rds_data if clients else boto3.client("rds-data")
            secrets = clients.secrets if clients else boto3.client("secretsmanager")

            def execute(sql: str) -> None:
                data.execute_statement(resourceArn=properties["ClusterArn"], secretArn=properties["AdminSecretArn"],
                                       sql=sql)

            apply(properties, execute, lambda arn: secrets.get_secret_value(SecretId=arn)["SecretString"])
        _respond(event, "SUCCESS")
    except Exception as error:  # noqa: BLE001 - CloudFormation needs an answer either way
        print(f"failed: {type(error).__name__}: {error}")  # never the SQL: it holds the password
        _respond(event, "FAILED", f"{type(error).__name__}: {error}")
