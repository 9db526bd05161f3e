"""Wires PrereqStack's accounting database into a cluster config (Scheduling.SlurmSettings.Database)."""

from __future__ import annotations

import copy

from cluster_yaml.document import ConfigDocument

SLURMDBD_USER = "slurm"  # created by hpc_constructs/accounting_database.py, with rights on DATABASE_NAME only
DATABASE_NAME = "slurm_acct_db"
DATABASE = {"Uri": "${AccountingDatabaseUri}", "UserName": "${AccountingDatabaseUser}",
            "PasswordSecretArn": "${AccountingDatabaseSecretArn}", "DatabaseName": DATABASE_NAME}


def with_accounting(document: ConfigDocument) -> ConfigDocument:
    """Adds the Database settings, unless the config already names a database of its own."""
    data = copy.deepcopy(document.data)
    slurm = data.setdefault("Scheduling", {}).setdefault("SlurmSettings", {})
    slurm.setdefault("Database", dict(DATABASE))
    return ConfigDocument(source=document.source, data=data, lines=document.lines)
