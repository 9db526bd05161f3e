"""Every value the stacks publish or a cluster config reads, declared once (issue 18).

A ``StackValue`` is a stack output (PrereqStack's, under the names users of the awsome-distributed-training
prerequisites template know, or ClusterStack's, which the commands in ops/ read), a value the app knows at
synth (Region, VpcCidr), or one ClusterStack makes for the config (the node-actions bucket, two policies).
Producers (stacks/) take the description and whether an output always exists from here; readers (render's
placeholders, validation's stand-ins, ops/ and scripts/) take the names from here. tests/test_stack_values.py
checks every output of every synthesized variant against this table.
"""

from __future__ import annotations

from dataclasses import dataclass

PREREQ, CLUSTER, APP = "PrereqStack", "ClusterStack", "app"


@dataclass(frozen=True)
class StackValue:
    name: str
    source: str  # PREREQ or CLUSTER (a stack output, or a value ClusterStack makes for the config), or APP
    description: str
    stand_in: str = ""  # for validation before deploy: {region}, {account}, {vpc_cidr}, {key_pair_name}
    aliases: tuple[str, ...] = ()  # names awsome-distributed-training's templates and guides use for it
    placeholder: bool = True  # a cluster config may read it as ${name}
    output: bool = True  # a CloudFormation output of ``source``
    always: bool = True  # output whatever the settings (ClusterStack may import a PrereqStack one's export)


VALUES: tuple[StackValue, ...] = (
    StackValue("Region", APP, "Region of both stacks", "{region}", ("AWS_REGION",), output=False),
    StackValue("VpcCidr", APP, "CIDR of the VPC (context vpc_cidr)", "{vpc_cidr}", output=False),
    StackValue("VPC", PREREQ, "VPC of the cluster", "vpc-0ffffffffffffffff"),
    StackValue("PublicSubnet", PREREQ, "Head node subnet", "subnet-0aaaaaaaaaaaaaaaa", ("PUBLIC_SUBNET_ID",)),
    StackValue("PrimaryPrivateSubnet", PREREQ, "Compute subnet", "subnet-0bbbbbbbbbbbbbbbb", ("PRIVATE_SUBNET_ID",)),
    StackValue("SecondaryPrivateSubnet", PREREQ, "Second-zone subnet (OpenZFS MULTI_AZ_1)",
               "subnet-0bbbbbbbbbbbbbbb2", always=False),
    StackValue("SecurityGroup", PREREQ, "Security group for every cluster node (EFA self rules)",
               "sg-0cccccccccccccccc", ("SECURITY_GROUP",)),
    StackValue("FSxLustreFilesystemId", PREREQ, "FSx for Lustre file system id", "fs-0dddddddddddddddd", ("FSX_ID",)),
    StackValue("FSxLustreFilesystemDNSname", PREREQ, "FSx for Lustre DNS name",
               "fs-0dddddddddddddddd.fsx.{region}.amazonaws.com"),
    StackValue("FSxLustreFilesystemMountname", PREREQ, "FSx for Lustre mount name", "lustremount"),
    StackValue("FSxOpenZfsFilesystemId", PREREQ, "FSx for OpenZFS file system id", "fs-0eeeeeeeeeeeeeeee"),
    StackValue("FSxORootVolumeId", PREREQ, "OpenZFS root volume (/home)", "fsvol-0eeeeeeeeeeeeeeee", ("FSXO_ID",)),
    StackValue("DataBucketName", PREREQ, "Data bucket", "prereqstack-databucket-example",
               ("DATA_BUCKET_NAME", "S3_BUCKET_NAME")),
    StackValue("KeyPairName", PREREQ, "EC2 key pair for the head node", "{key_pair_name}",
               ("KEY_PAIR_NAME", "KEYPAIR_NAME", "SSH_KEY")),
    StackValue("PrivateKeySsmParameter", PREREQ,
               "SSM parameter holding the private key (aws ssm get-parameter --with-decryption)",
               "/ec2/keypair/key-0123456789abcdef0", always=False),
    StackValue("AccountingDatabaseUri", PREREQ, "Slurm accounting database host:port",
               "accounting.cluster-0123456789ab.{region}.rds.amazonaws.com:3306", always=False),
    StackValue("AccountingDatabaseUser", PREREQ, "Slurm accounting database user", "slurm", always=False),
    StackValue("AccountingDatabaseSecretArn", PREREQ, "Secrets Manager secret with the accounting database password",
               "arn:aws:secretsmanager:{region}:{account}:secret:slurm-db-AbCdEf", always=False),
    StackValue("ScriptsBucket", CLUSTER, "Bucket of the node-action scripts (when the config uses any)",
               "clusterstack-nodeactionsbucket-example", output=False),
    StackValue("NodeActionsReadPolicy", CLUSTER, "Managed policy: read the node-action scripts",
               "arn:aws:iam::{account}:policy/parallelcluster-example-{region}-node-actions", output=False),
    StackValue("JobBridgeListPolicy", CLUSTER, "Managed policy: the head node lists the job prefix",
               "arn:aws:iam::{account}:policy/parallelcluster-example-{region}-job-bridge", output=False),
    StackValue("ClusterName", CLUSTER, "ParallelCluster cluster name", placeholder=False),
    StackValue("ClusterConfig", CLUSTER, "Cluster config file deployed", placeholder=False),
    StackValue("HeadNodeInstanceId", CLUSTER, "Instance id of the head node", placeholder=False),
    StackValue("HeadNodePrivateIp", CLUSTER, "Private IP address of the head node", placeholder=False),
    StackValue("HeadNodeUser", CLUSTER, "Login user of the OS", placeholder=False),
    StackValue("SsmSessionCommand", CLUSTER, "Shell on the head node without SSH or open ports", placeholder=False),
    StackValue("JobBridgePrefix", CLUSTER, "Jobs uploaded under s3://<DataBucketName>/<prefix><submitter role name>/ "
               "run on the cluster", placeholder=False, always=False),
    StackValue("ValidationMessages", CLUSTER, "ParallelCluster's validation messages from the last create/update",
               placeholder=False),
    StackValue("PrereqExportsInUse", CLUSTER, "PrereqStack resources this cluster uses: CloudFormation refuses to "
               "delete or replace them while this stack exists", placeholder=False),
    StackValue("PrereqRevision", CLUSTER, "Changes with every PrereqStack setting, so a PrereqStack change updates "
               "this stack in the same deploy", placeholder=False),
)
BY_NAME = {value.name: value for value in VALUES}

PLACEHOLDERS = tuple(v.name for v in VALUES if v.placeholder)
ALIASES = {alias: v.name for v in VALUES for alias in v.aliases}
NODE_ACTION_VALUES = ("ScriptsBucket", "NodeActionsReadPolicy")  # exist only when the config uses node actions

# The names ops/ and scripts/ read from the deployed stacks' outputs.
DATA_BUCKET_NAME = BY_NAME["DataBucketName"].name
KEY_PAIR_NAME = BY_NAME["KeyPairName"].name
PRIVATE_KEY_SSM_PARAMETER = BY_NAME["PrivateKeySsmParameter"].name
CLUSTER_NAME = BY_NAME["ClusterName"].name
CLUSTER_CONFIG = BY_NAME["ClusterConfig"].name
HEAD_NODE_INSTANCE_ID = BY_NAME["HeadNodeInstanceId"].name
HEAD_NODE_USER = BY_NAME["HeadNodeUser"].name
JOB_BRIDGE_PREFIX = BY_NAME["JobBridgePrefix"].name


def stand_ins(*, region: str, account: str, vpc_cidr: str, key_pair_name: str,
              node_actions: bool) -> dict[str, str]:
    """Well-formed stand-ins for every placeholder value: they pass ParallelCluster's id patterns, and each repeats
    one hex digit so a reviewer of the rendered snapshot can tell them apart."""
    fields = {"region": region, "account": account, "vpc_cidr": vpc_cidr, "key_pair_name": key_pair_name}
    return {v.name: v.stand_in.format(**fields) for v in VALUES
            if v.placeholder and (node_actions or v.name not in NODE_ACTION_VALUES)}
