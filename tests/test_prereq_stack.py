"""What users rely on in the synthesized PrereqStack, property by property."""

from __future__ import annotations

from typing import Any

from aws_cdk.assertions import Match, Template

from tests.conftest import synth


def only(template: Template, type_: str, props: Any = None) -> tuple[str, dict[str, Any]]:
    found = template.find_resources(type_, props or {})
    assert len(found) == 1, f"expected one {type_}, found {list(found)}"
    return next(iter(found.items()))


# -- network ----------------------------------------------------------------------------------
def test_vpc_has_dns_and_the_configured_cidr(prereq: Template):
    prereq.has_resource_properties("AWS::EC2::VPC", {
        "CidrBlock": "10.0.0.0/16", "EnableDnsHostnames": True, "EnableDnsSupport": True})


def test_one_public_and_one_private_subnet_in_the_chosen_zone(prereq: Template):
    subnets = prereq.find_resources("AWS::EC2::Subnet")
    zones = sorted((s["Properties"]["AvailabilityZone"], s["Properties"]["MapPublicIpOnLaunch"])
                   for s in subnets.values())
    assert zones == [("us-east-1a", False), ("us-east-1a", True)]


def test_internet_gateway_one_nat_and_s3_gateway_endpoint(prereq: Template):
    prereq.resource_count_is("AWS::EC2::InternetGateway", 1)
    prereq.resource_count_is("AWS::EC2::NatGateway", 1)
    prereq.has_resource_properties("AWS::EC2::VPCEndpoint", {
        "VpcEndpointType": "Gateway",
        "ServiceName": {"Fn::Join": ["", ["com.amazonaws.", {"Ref": "AWS::Region"}, ".s3"]]}})
    prereq.has_resource_properties("AWS::EC2::Route", {
        "DestinationCidrBlock": "0.0.0.0/0", "NatGatewayId": Match.any_value()})
    prereq.has_resource_properties("AWS::EC2::Route", {
        "DestinationCidrBlock": "0.0.0.0/0", "GatewayId": Match.any_value()})


def test_zone_and_cidr_come_from_context():
    template = synth(availability_zone="ap-northeast-1c", vpc_cidr="172.20.0.0/18").template("PrereqStack")
    template.has_resource_properties("AWS::EC2::VPC", {"CidrBlock": "172.20.0.0/18"})
    cidrs = sorted(s["Properties"]["CidrBlock"] for s in template.find_resources("AWS::EC2::Subnet").values())
    assert cidrs == ["172.20.0.0/26", "172.20.32.0/19"]
    for subnet in template.find_resources("AWS::EC2::Subnet").values():
        assert subnet["Properties"]["AvailabilityZone"] == "ap-northeast-1c"


# -- security groups ------------------------------------------------------------------------------
def cluster_sg_id(template: Template) -> str:
    logical_id, _ = only(template, "AWS::EC2::SecurityGroup",
                         {"Properties": {"GroupDescription": Match.string_like_regexp("^ParallelCluster nodes")}})
    return logical_id


def test_cluster_sg_allows_all_traffic_to_and_from_itself(prereq: Template):
    sg = {"Fn::GetAtt": [cluster_sg_id(prereq), "GroupId"]}
    prereq.has_resource_properties("AWS::EC2::SecurityGroupIngress", {
        "GroupId": sg, "SourceSecurityGroupId": sg, "IpProtocol": "-1"})
    prereq.has_resource_properties("AWS::EC2::SecurityGroupEgress", {
        "GroupId": sg, "DestinationSecurityGroupId": sg, "IpProtocol": "-1"})


def ingress_ports(template: Template, group_description: str, source_logical_id: str) -> set[tuple[str, int, int]]:
    group, _ = only(template, "AWS::EC2::SecurityGroup",
                    {"Properties": {"GroupDescription": Match.string_like_regexp(group_description)}})
    rules = template.find_resources("AWS::EC2::SecurityGroupIngress", {"Properties": {
        "GroupId": {"Fn::GetAtt": [group, "GroupId"]},
        "SourceSecurityGroupId": {"Fn::GetAtt": [source_logical_id, "GroupId"]}}})
    return {(r["Properties"]["IpProtocol"], r["Properties"]["FromPort"], r["Properties"]["ToPort"])
            for r in rules.values()}


def test_lustre_ports_from_cluster_sg(prereq: Template):
    assert ingress_ports(prereq, "^FSx for Lustre", cluster_sg_id(prereq)) == {
        ("tcp", 988, 988), ("tcp", 1018, 1023)}


def test_openzfs_nfs_ports_from_cluster_sg(prereq: Template):
    expected = {(proto, lo, hi) for proto in ("tcp", "udp") for lo, hi in ((111, 111), (2049, 2049), (20001, 20003))}
    assert ingress_ports(prereq, "^FSx for OpenZFS", cluster_sg_id(prereq)) == expected


def test_file_systems_wait_for_their_security_group_rules(prereq: Template):
    rules = prereq.find_resources("AWS::EC2::SecurityGroupIngress")
    for fs_type, group in (("LUSTRE", "Lustre"), ("OPENZFS", "OpenZfs")):
        _, fs = only(prereq, "AWS::FSx::FileSystem", {"Properties": {"FileSystemType": fs_type}})
        own_rules = {rid for rid, r in rules.items() if group in r["Properties"]["GroupId"]["Fn::GetAtt"][0]}
        assert own_rules and own_rules <= set(fs["DependsOn"]), fs_type


# -- Lustre -----------------------------------------------------------------------------------
def test_lustre_persistent_2_defaults(prereq: Template):
    prereq.has_resource_properties("AWS::FSx::FileSystem", {
        "FileSystemType": "LUSTRE",
        "FileSystemTypeVersion": "2.15",
        "StorageCapacity": 1200,
        "SubnetIds": [{"Ref": Match.string_like_regexp("PrivateSubnet1Subnet")}],
        "LustreConfiguration": {
            "DeploymentType": "PERSISTENT_2",
            "PerUnitStorageThroughput": 250,
            "DataCompressionType": "LZ4",
            "MetadataConfiguration": {"Mode": "AUTOMATIC"},
            "AutomaticBackupRetentionDays": 0,  # linked to S3: FSx takes no backups, the S3 export is the copy
        }})
    [lustre] = [r for r in prereq.find_resources("AWS::FSx::FileSystem").values()
                if r["Properties"]["FileSystemType"] == "LUSTRE"]
    assert "DailyAutomaticBackupStartTime" not in lustre["Properties"]["LustreConfiguration"]


def test_lustre_backups_only_without_s3_associations():
    template = synth(lustre_data_repository_associations=[], lustre_backup_retention_days=7).template("PrereqStack")
    template.has_resource_properties("AWS::FSx::FileSystem", {"LustreConfiguration": {
        "AutomaticBackupRetentionDays": 7, "DailyAutomaticBackupStartTime": "03:00", "CopyTagsToBackups": True}})


def test_lustre_knobs_from_context():
    template = synth(lustre_storage_capacity_gib=4800, lustre_per_unit_storage_throughput=1000,
                     lustre_metadata_iops=24000, lustre_backup_retention_days=0).template("PrereqStack")
    template.has_resource_properties("AWS::FSx::FileSystem", {
        "StorageCapacity": 4800,
        "LustreConfiguration": {
            "PerUnitStorageThroughput": 1000,
            "MetadataConfiguration": {"Mode": "USER_PROVISIONED", "Iops": 24000},
            "AutomaticBackupRetentionDays": 0,
            "DailyAutomaticBackupStartTime": Match.absent()}})


def data_bucket_id(template: Template) -> str:
    logical_id, _ = only(template, "AWS::S3::Bucket", {"Properties": {"VersioningConfiguration": Match.any_value()}})
    return logical_id


def test_each_dra_from_context(prereq: Template, default_app):
    lustre, _ = only(prereq, "AWS::FSx::FileSystem", {"Properties": {"FileSystemType": "LUSTRE"}})
    bucket = data_bucket_id(prereq)
    # Beside the file system, not a cluster: every cluster of this PrereqStack mounts the same /fsx
    default_app.template("ClusterStack").resource_count_is("AWS::FSx::DataRepositoryAssociation", 0)
    dras = {d["Properties"]["FileSystemPath"]: d["Properties"]
            for d in prereq.find_resources("AWS::FSx::DataRepositoryAssociation").values()}
    assert set(dras) == {"/data", "/containers"}
    events = ["NEW", "CHANGED", "DELETED"]
    for path, props in dras.items():
        assert props["FileSystemId"] == {"Ref": lustre}
        assert props["BatchImportMetaDataOnCreate"] is True
        assert props["DataRepositoryPath"] == {"Fn::Join": ["", ["s3://", {"Ref": bucket}, f"{path}/"]]}
        assert props["S3"]["AutoImportPolicy"] == {"Events": events}
    assert dras["/data"]["S3"]["AutoExportPolicy"] == {"Events": events}  # read/write
    assert "AutoExportPolicy" not in dras["/containers"]["S3"]  # import only


def test_dra_to_an_external_bucket():
    template = synth(lustre_data_repository_associations=[
        {"file_system_path": "/reference", "data_repository_path": "s3://genomes-public/hg38/",
         "batch_import_metadata_on_create": False}]).template("PrereqStack")
    template.resource_count_is("AWS::FSx::DataRepositoryAssociation", 1)
    template.has_resource_properties("AWS::FSx::DataRepositoryAssociation", {
        "FileSystemPath": "/reference", "DataRepositoryPath": "s3://genomes-public/hg38/",
        "BatchImportMetaDataOnCreate": False})


# -- OpenZFS ----------------------------------------------------------------------------------
def test_openzfs_home_export_and_backups(prereq: Template):
    prereq.has_resource_properties("AWS::FSx::FileSystem", {
        "FileSystemType": "OPENZFS",
        "StorageCapacity": 128,
        "OpenZFSConfiguration": {
            "DeploymentType": "SINGLE_AZ_1",
            "ThroughputCapacity": 64,
            "AutomaticBackupRetentionDays": 7,
            "RootVolumeConfiguration": {"NfsExports": [{"ClientConfigurations": [{
                "Clients": "10.0.0.0/16", "Options": ["rw", "crossmnt", "no_root_squash"]}]}]}}})


def test_multi_az_openzfs_adds_a_second_private_subnet():
    template = synth(openzfs_deployment_type="MULTI_AZ_1", openzfs_throughput_mbps=160,
                     secondary_availability_zone="us-east-1b").template("PrereqStack")
    private = [s["Properties"]["AvailabilityZone"] for s in template.find_resources("AWS::EC2::Subnet").values()
               if not s["Properties"]["MapPublicIpOnLaunch"]]
    assert sorted(private) == ["us-east-1a", "us-east-1b"]
    template.resource_count_is("AWS::EC2::NatGateway", 1)
    _, fs = only(template, "AWS::FSx::FileSystem", {"Properties": {"FileSystemType": "OPENZFS"}})
    config = fs["Properties"]["OpenZFSConfiguration"]
    assert len(fs["Properties"]["SubnetIds"]) == 2 and len(config["RouteTableIds"]) == 2
    assert config["PreferredSubnetId"] == fs["Properties"]["SubnetIds"][0]
    assert "SecondaryPrivateSubnet" in template.to_json()["Outputs"]


# -- bucket -----------------------------------------------------------------------------------
def test_data_bucket_is_private_encrypted_versioned_and_notifies_eventbridge(prereq: Template):
    prereq.has_resource_properties("AWS::S3::Bucket", {
        "VersioningConfiguration": {"Status": "Enabled"},
        "PublicAccessBlockConfiguration": {"BlockPublicAcls": True, "BlockPublicPolicy": True,
                                           "IgnorePublicAcls": True, "RestrictPublicBuckets": True},
        "BucketEncryption": {"ServerSideEncryptionConfiguration": [
            {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]},
        "NotificationConfiguration": {"EventBridgeConfiguration": {"EventBridgeEnabled": True}},
        "LoggingConfiguration": {"DestinationBucketName": Match.any_value(), "LogFilePrefix": "data-bucket/"}})


def test_data_bucket_denies_non_tls_requests(prereq: Template):
    prereq.has_resource_properties("AWS::S3::BucketPolicy", {
        "Bucket": {"Ref": data_bucket_id(prereq)},
        "PolicyDocument": {"Statement": Match.array_with([Match.object_like({
            "Effect": "Deny", "Action": "s3:*",
            "Condition": {"Bool": {"aws:SecureTransport": "false"}}})])}})


# -- data safety --------------------------------------------------------------------------------
STATEFUL = ("AWS::S3::Bucket", "AWS::FSx::FileSystem")
# What a kept file system or bucket needs: its network interfaces' subnet, groups and VPC, the buckets' policies.
KEPT_WITH_THE_DATA = ("AWS::S3::BucketPolicy", "AWS::EC2::VPC")


def test_stateful_resources_are_retained_by_default(prereq: Template):
    for type_ in STATEFUL + KEPT_WITH_THE_DATA:
        for logical_id, resource in prereq.find_resources(type_).items():
            assert resource.get("DeletionPolicy") == "Retain", logical_id
            assert resource.get("UpdateReplacePolicy") == "Retain", logical_id
    prereq.resource_count_is("Custom::S3AutoDeleteObjects", 0)


def test_dras_go_with_the_file_system_and_keep_the_data(prereq: Template):
    for resource in prereq.find_resources("AWS::FSx::DataRepositoryAssociation").values():
        assert resource["DeletionPolicy"] == "Delete"  # the file system and the bucket, which hold the data, stay


def test_throwaway_flag_destroys_everything():
    template = synth(destroy_data_on_delete=True).template("PrereqStack")
    for type_ in STATEFUL + KEPT_WITH_THE_DATA + ("AWS::EC2::Subnet", "AWS::EC2::SecurityGroup"):
        for logical_id, resource in template.find_resources(type_).items():
            assert resource.get("DeletionPolicy", "Delete") == "Delete", logical_id
    template.resource_count_is("Custom::S3AutoDeleteObjects", 2)  # non-empty buckets can go too


# -- key pair ---------------------------------------------------------------------------------
def test_key_pair_is_ed25519_with_private_key_in_ssm(prereq: Template):
    prereq.has_resource_properties("AWS::EC2::KeyPair", {"KeyType": "ed25519", "KeyFormat": "pem"})
    key_pair, _ = only(prereq, "AWS::EC2::KeyPair")
    outputs = prereq.to_json()["Outputs"]
    assert outputs["PrivateKeySsmParameter"]["Value"] == {"Fn::Join": ["", [
        "/ec2/keypair/", {"Fn::GetAtt": [key_pair, "KeyPairId"]}]]}


def test_existing_key_pair_by_name():
    template = synth(key_pair_name="my-keypair").template("PrereqStack")
    template.resource_count_is("AWS::EC2::KeyPair", 0)
    outputs = template.to_json()["Outputs"]
    assert outputs["KeyPairName"]["Value"] == "my-keypair"
    assert "PrivateKeySsmParameter" not in outputs


# -- outputs ----------------------------------------------------------------------------------
def test_outputs_have_stable_export_names(prereq: Template):
    outputs = prereq.to_json()["Outputs"]
    expected = ["VPC", "PublicSubnet", "PrimaryPrivateSubnet", "SecurityGroup", "FSxLustreFilesystemId",
                "FSxLustreFilesystemDNSname", "FSxLustreFilesystemMountname", "FSxOpenZfsFilesystemId",
                "FSxORootVolumeId", "DataBucketName", "KeyPairName", "PrivateKeySsmParameter"]
    ours = [key for key in outputs if not key.startswith("PublishOutput")]  # CDK's weak cross-stack refs
    assert ours == expected
    for key in expected:
        assert outputs[key]["Export"] == {"Name": f"PrereqStack-{key}"}
    home, _ = only(prereq, "AWS::FSx::FileSystem", {"Properties": {"FileSystemType": "OPENZFS"}})
    lustre, _ = only(prereq, "AWS::FSx::FileSystem", {"Properties": {"FileSystemType": "LUSTRE"}})
    assert outputs["FSxORootVolumeId"]["Value"] == {"Fn::GetAtt": [home, "RootVolumeId"]}
    assert outputs["FSxLustreFilesystemMountname"]["Value"] == {"Fn::GetAtt": [lustre, "LustreMountName"]}
    assert outputs["SecurityGroup"]["Value"] == {"Fn::GetAtt": [cluster_sg_id(prereq), "GroupId"]}


def test_cloudwatch_logs_may_write_exports_under_the_prefix_export_logs_uses(prereq: Template):
    """`hpc-ops export-logs` asks CloudWatch Logs to write into the data bucket: the logs service reads the ACL and
    puts objects under cluster-logs/ only, for this account's log groups."""
    import inspect

    from ops import cluster
    from settings.prereq import CLUSTER_LOGS_PREFIX

    [policy] = prereq.find_resources("AWS::S3::BucketPolicy", {"Properties": {"Bucket": {"Ref": Match.string_like_regexp(
        "^DataBucketBD")}}}).values()
    statements = {s.get("Sid"): s for s in policy["Properties"]["PolicyDocument"]["Statement"]}
    acl, write = statements["CloudWatchLogsExportAcl"], statements["CloudWatchLogsExportWrite"]
    for statement in (acl, write):
        assert statement["Effect"] == "Allow"
        assert statement["Principal"] == {"Service": {"Fn::Join": ["", ["logs.", {"Ref": "AWS::Region"}, ".amazonaws.com"]]}}
        assert statement["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
    assert acl["Action"] == "s3:GetBucketAcl" and write["Action"] == "s3:PutObject"
    assert write["Resource"]["Fn::Join"][1][-1] == f"/{CLUSTER_LOGS_PREFIX}/*"
    assert "CLUSTER_LOGS_PREFIX}/{name}" in inspect.getsource(cluster.export_logs)
