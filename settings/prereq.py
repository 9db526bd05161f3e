"""PrereqStack settings: CDK context -> typed, validated dataclasses.

The dataclass defaults are the product defaults; ``cdk.json`` repeats them so users can read and
override them (a test keeps the two equal). Every check FSx or EC2 would otherwise make 20 minutes
into a deploy is made here, at synth, with the key, the bad value and the allowed values.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from settings.context import ContextReader

DATA_BUCKET_PLACEHOLDER = "${DataBucket}"
# Where `hpc-ops export-logs` has CloudWatch Logs write the cluster's logs in the data bucket (the bucket policy
# lets the logs service write there and nowhere else).
CLUSTER_LOGS_PREFIX = "cluster-logs"

LUSTRE_THROUGHPUTS = (125, 250, 500, 1000)  # PERSISTENT_2 MB/s per TiB
LUSTRE_METADATA_IOPS = (1500, 3000, 6000, *range(12000, 192001, 12000))
MAX_DRAS_PER_FILE_SYSTEM = 8
OPENZFS_THROUGHPUTS = {  # MB/s, by deployment type (FSx API reference)
    "SINGLE_AZ_1": (64, 128, 256, 512, 1024, 2048, 3072, 4096),
    "SINGLE_AZ_HA_1": (64, 128, 256, 512, 1024, 2048, 3072, 4096),
    "SINGLE_AZ_2": (160, 320, 640, 1280, 2560, 3840, 5120, 7680, 10240),
    "SINGLE_AZ_HA_2": (160, 320, 640, 1280, 2560, 3840, 5120, 7680, 10240),
    "MULTI_AZ_1": (160, 320, 640, 1280, 2560, 3840, 5120, 7680, 10240),
}
AZ_PATTERN = re.compile(r"^(?P<region>[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d)(?P<letter>[a-z])$")
S3_BUCKET_PATTERN = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def created_key_pair_name(stack_name: str) -> str:
    """The name CloudFormation gives the key pair PrereqStack creates (hpc_constructs/key_pair.py)."""
    return f"{stack_name}-cluster"


@dataclass(frozen=True)
class NetworkSettings:
    availability_zone: str = "us-east-1a"
    # Only used when a resource needs two AZs (OpenZFS MULTI_AZ_1).
    secondary_availability_zone: str = ""
    vpc_cidr: str = "10.0.0.0/16"

    @property
    def region(self) -> str:
        match = AZ_PATTERN.match(self.availability_zone)
        return match.group("region") if match else ""

    @property
    def availability_zones(self) -> list[str]:
        return [z for z in (self.availability_zone, self.secondary_availability_zone) if z]


@dataclass(frozen=True)
class DataRepositoryAssociationSettings:
    file_system_path: str
    # s3://bucket/prefix/ ; ``${DataBucket}`` stands for the data bucket this stack creates.
    data_repository_path: str
    auto_export: bool = False
    batch_import_metadata_on_create: bool = True

    @property
    def uses_data_bucket(self) -> bool:
        return self.data_repository_path.startswith(f"s3://{DATA_BUCKET_PLACEHOLDER}")


def _default_dras() -> tuple[DataRepositoryAssociationSettings, ...]:
    # The Blue Brain Project's pair: read/write project data, import-only container images.
    return (
        DataRepositoryAssociationSettings("/data", f"s3://{DATA_BUCKET_PLACEHOLDER}/data/", auto_export=True),
        DataRepositoryAssociationSettings("/containers", f"s3://{DATA_BUCKET_PLACEHOLDER}/containers/"),
    )


@dataclass(frozen=True)
class LustreSettings:
    storage_capacity_gib: int = 1200
    per_unit_storage_throughput: int = 250
    metadata_iops: int | None = None  # None: AUTOMATIC metadata mode
    # FSx does not back up a file system linked to S3: with associations (the default), the exporting
    # association's S3 copy is the durable one. Backups only for a file system without associations.
    backup_retention_days: int = 0
    data_repository_associations: tuple[DataRepositoryAssociationSettings, ...] = field(
        default_factory=_default_dras)


@dataclass(frozen=True)
class OpenZfsSettings:
    deployment_type: str = "SINGLE_AZ_1"  # offered in every region that has FSx for OpenZFS
    throughput_mbps: int = 64
    storage_capacity_gib: int = 128
    backup_retention_days: int = 7

    @property
    def multi_az(self) -> bool:
        return self.deployment_type.startswith("MULTI_AZ")


@dataclass(frozen=True)
class PrereqSettings:
    network: NetworkSettings = field(default_factory=NetworkSettings)
    lustre: LustreSettings = field(default_factory=LustreSettings)
    openzfs: OpenZfsSettings = field(default_factory=OpenZfsSettings)
    key_pair_name: str = ""  # empty: create an ed25519 key pair; else use this existing one
    slurm_accounting: bool = False  # Aurora MySQL Serverless v2 for slurmdbd (needs a second zone)
    destroy_data_on_delete: bool = False  # throwaway dev environments only

    @property
    def needs_second_zone(self) -> bool:
        return self.openzfs.multi_az or self.slurm_accounting

    @classmethod
    def from_context(cls, reader: ContextReader) -> "PrereqSettings":
        network = _network(reader)
        openzfs = _openzfs(reader, network)
        lustre = _lustre(reader)
        settings = cls(
            network=network, lustre=lustre, openzfs=openzfs,
            key_pair_name=reader.string("key_pair_name", cls.key_pair_name),
            destroy_data_on_delete=reader.boolean("destroy_data_on_delete", cls.destroy_data_on_delete),
            slurm_accounting=reader.boolean("slurm_accounting", cls.slurm_accounting),
        )
        if settings.slurm_accounting and not network.secondary_availability_zone:
            reader.fail("secondary_availability_zone", "is required by slurm_accounting=true (an RDS subnet group "
                        "spans two zones)", f"set -c secondary_availability_zone=<another zone of {network.region}>",
                        value="")
        reader.raise_if_errors()
        return settings


def _network(reader: ContextReader) -> NetworkSettings:
    d = NetworkSettings()
    az = reader.string("availability_zone", d.availability_zone)
    if not AZ_PATTERN.match(az):
        reader.fail("availability_zone", "is not an availability zone name",
                    "use a zone name like us-east-1a or ap-northeast-1c (region + letter)")
        az = d.availability_zone
    second = reader.string("secondary_availability_zone", d.secondary_availability_zone)
    if second:
        match = AZ_PATTERN.match(second)
        if not match:
            reader.fail("secondary_availability_zone", "is not an availability zone name",
                        "use a zone name like us-east-1b, in the same region as availability_zone")
            second = ""
        elif match.group("region") != AZ_PATTERN.match(az).group("region") or second == az:
            reader.fail("secondary_availability_zone",
                        f"must be a different zone in the same region as availability_zone ({az})",
                        f"use another zone of {AZ_PATTERN.match(az).group('region')}")
            second = ""
    cidr = reader.string("vpc_cidr", d.vpc_cidr)
    try:
        network = ipaddress.IPv4Network(cidr, strict=True)
        if not 16 <= network.prefixlen <= 20:
            reader.fail("vpc_cidr", f"has prefix /{network.prefixlen}; the cluster subnets need /16 to /20",
                        "use a block such as 10.0.0.0/16 (a p5 node uses one IP per EFA device)")
            cidr = d.vpc_cidr
    except ValueError as exc:
        reader.fail("vpc_cidr", f"is not a valid IPv4 CIDR block ({exc})",
                    "use network-address/prefix with host bits zero, e.g. 10.0.0.0/16")
        cidr = d.vpc_cidr
    return NetworkSettings(availability_zone=az, secondary_availability_zone=second, vpc_cidr=cidr)


def _lustre_capacity_problem(gib: int) -> str | None:
    if gib in (1200, 2400) or (gib > 2400 and gib % 2400 == 0):
        return None
    return "is not a valid PERSISTENT_2 SSD storage capacity"


def _lustre(reader: ContextReader) -> LustreSettings:
    d = LustreSettings()
    capacity = reader.integer("lustre_storage_capacity_gib", d.storage_capacity_gib,
                              check=_lustre_capacity_problem,
                              hint="1200, 2400, or a multiple of 2400 (GiB)")
    throughput = reader.integer("lustre_per_unit_storage_throughput", d.per_unit_storage_throughput,
                                allowed=LUSTRE_THROUGHPUTS)
    metadata_iops: int | None = None  # AUTOMATIC unless a number is given
    raw_iops = reader.raw("lustre_metadata_iops")
    if raw_iops is not None and str(raw_iops).strip().lower() != "automatic":
        metadata_iops = reader.integer("lustre_metadata_iops", 0, allowed=LUSTRE_METADATA_IOPS,
                                       hint="automatic, 1500, 3000, 6000, or a multiple of 12000 up to 192000") or None
    retention = reader.integer("lustre_backup_retention_days", d.backup_retention_days,
                               check=_retention_problem, hint="0 (no automatic backups) to 90")
    dras = _dras(reader)
    if retention and dras:
        reader.fail("lustre_backup_retention_days", f"asks for automatic backups, but the file system has {len(dras)} "
                    "data repository association(s): FSx does not back up file systems linked to S3",
                    "set -c lustre_backup_retention_days=0 (the S3 export of an auto_export association is the durable "
                    "copy), or -c 'lustre_data_repository_associations=[]' to keep FSx backups instead")
    return LustreSettings(storage_capacity_gib=capacity, per_unit_storage_throughput=throughput,
                          metadata_iops=metadata_iops, backup_retention_days=retention,
                          data_repository_associations=dras)


def _retention_problem(days: int) -> str | None:
    return None if 0 <= days <= 90 else "is outside the range FSx accepts"


DRA_KEY = "lustre_data_repository_associations"
DRA_FIELDS = {"file_system_path", "data_repository_path", "auto_export", "batch_import_metadata_on_create"}


def _dras(reader: ContextReader) -> tuple[DataRepositoryAssociationSettings, ...]:
    entries = reader.json_list(DRA_KEY, None)  # type: ignore[arg-type]
    if entries is None:
        return _default_dras()
    if len(entries) > MAX_DRAS_PER_FILE_SYSTEM:
        reader.fail(DRA_KEY, f"lists {len(entries)} associations; FSx allows {MAX_DRAS_PER_FILE_SYSTEM} per file system",
                    "merge associations under a common prefix or drop some", value=f"{len(entries)} entries")
        return _default_dras()
    result: list[DataRepositoryAssociationSettings] = []
    for index, entry in enumerate(entries):
        dra = _dra(reader, index, entry)
        if dra:
            result.append(dra)
    _check_overlaps(reader, result)
    return tuple(result)


def _dra(reader: ContextReader, index: int, entry: Any) -> DataRepositoryAssociationSettings | None:
    where = f"{DRA_KEY}[{index}]"
    example = '{"file_system_path": "/data", "data_repository_path": "s3://${DataBucket}/data/", "auto_export": true}'
    if not isinstance(entry, dict):
        reader.fail(DRA_KEY, f"entry {index} is not an object", f"write each entry like {example}", value=entry)
        return None
    unknown = set(entry) - DRA_FIELDS
    if unknown:
        reader.fail(DRA_KEY, f"entry {index} has unknown field(s) {sorted(unknown)}",
                    f"allowed fields: {', '.join(sorted(DRA_FIELDS))}", value=entry)
        return None
    fs_path = entry.get("file_system_path")
    ok = True
    if not isinstance(fs_path, str) or not fs_path.startswith("/") or "//" in fs_path or "/../" in f"{fs_path}/":
        reader.fail(DRA_KEY, f"{where}.file_system_path is not an absolute path",
                    "use an absolute path inside the Lustre file system, e.g. /data", value=fs_path)
        ok = False
    fs_path = fs_path.rstrip("/") or "/" if isinstance(fs_path, str) else fs_path
    default_s3 = f"s3://{DATA_BUCKET_PLACEHOLDER}{fs_path if fs_path != '/' else ''}/" if ok else ""
    s3_path = entry.get("data_repository_path", default_s3)
    if not _valid_s3_path(s3_path):
        reader.fail(DRA_KEY, f"{where}.data_repository_path is not an s3:// path",
                    f"use s3://BUCKET/prefix/ or s3://{DATA_BUCKET_PLACEHOLDER}/prefix/ for the data bucket",
                    value=s3_path)
        ok = False
    flags = {}
    for name in ("auto_export", "batch_import_metadata_on_create"):
        value = entry.get(name, name == "batch_import_metadata_on_create")
        if not isinstance(value, bool):
            reader.fail(DRA_KEY, f"{where}.{name} must be true or false", f"set \"{name}\": true or false",
                        value=value)
            ok = False
        flags[name] = value
    if not ok:
        return None
    return DataRepositoryAssociationSettings(fs_path, s3_path, **flags)


def _valid_s3_path(path: Any) -> bool:
    if not isinstance(path, str) or not path.startswith("s3://"):
        return False
    bucket = path[len("s3://"):].split("/", 1)[0]
    return bucket == DATA_BUCKET_PLACEHOLDER or bool(S3_BUCKET_PATTERN.match(bucket))


def _nested(a: str, b: str) -> bool:
    """True when one slash-separated path equals or contains the other."""
    a, b = a.rstrip("/") + "/", b.rstrip("/") + "/"
    return a.startswith(b) or b.startswith(a)


def _check_overlaps(reader: ContextReader, dras: list[DataRepositoryAssociationSettings]) -> None:
    for i, first in enumerate(dras):
        for second in dras[i + 1:]:
            if _nested(first.file_system_path, second.file_system_path):
                reader.fail(DRA_KEY, f"file system paths {first.file_system_path} and {second.file_system_path} "
                            "overlap; FSx rejects nested associations",
                            "give each association its own top-level directory, e.g. /data and /containers",
                            value=[first.file_system_path, second.file_system_path])
            if _nested(first.data_repository_path[len("s3://"):], second.data_repository_path[len("s3://"):]):
                reader.fail(DRA_KEY, f"S3 paths {first.data_repository_path} and {second.data_repository_path} "
                            "overlap; FSx rejects nested associations",
                            "use separate prefixes, e.g. s3://bucket/data/ and s3://bucket/containers/",
                            value=[first.data_repository_path, second.data_repository_path])


def _openzfs(reader: ContextReader, network: NetworkSettings) -> OpenZfsSettings:
    d = OpenZfsSettings()
    deployment = reader.choice("openzfs_deployment_type", d.deployment_type, OPENZFS_THROUGHPUTS)
    allowed = OPENZFS_THROUGHPUTS[deployment]
    default_throughput = d.throughput_mbps if d.throughput_mbps in allowed else allowed[0]
    throughput = reader.integer("openzfs_throughput_mbps", default_throughput, allowed=allowed,
                                hint=f"{', '.join(map(str, allowed))} (for {deployment})")
    capacity = reader.integer("openzfs_storage_capacity_gib", d.storage_capacity_gib,
                              check=lambda g: None if 64 <= g <= 524288 else "is outside 64-524288 GiB",
                              hint="64 to 524288 (GiB)")
    retention = reader.integer("openzfs_backup_retention_days", d.backup_retention_days,
                               check=_retention_problem, hint="0 (no automatic backups) to 90")
    settings = OpenZfsSettings(deployment_type=deployment, throughput_mbps=throughput,
                               storage_capacity_gib=capacity, backup_retention_days=retention)
    if settings.multi_az and not network.secondary_availability_zone:
        reader.fail("secondary_availability_zone", f"is required by openzfs_deployment_type={deployment}",
                    f"set -c secondary_availability_zone=<another zone of {network.region}>", value="")
    return settings
