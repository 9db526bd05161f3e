"""The EC2 key pair for SSH to the head node: created here (ed25519) or an existing one by name."""

from __future__ import annotations

from aws_cdk import RemovalPolicy, Stack, aws_ec2 as ec2
from constructs import Construct

from settings.prereq import created_key_pair_name


class ClusterKeyPair(Construct):
    """With no ``existing_name``, CloudFormation creates an ed25519 key pair and stores its private
    key in SSM Parameter Store (``/ec2/keypair/<key-pair-id>``); nothing is written to disk.

    The key pair is deleted with the stack: it only opens a head node that ``cdk destroy`` has
    already removed, and a retained one would block the next deploy with "already exists".
    """

    def __init__(self, scope: Construct, construct_id: str, *, existing_name: str = "") -> None:
        super().__init__(scope, construct_id)
        self.private_key_parameter_name: str | None = None
        if existing_name:
            self.key_pair: ec2.IKeyPair = ec2.KeyPair.from_key_pair_name(self, "Existing", existing_name)
            self.key_pair_name = existing_name
            return
        created = ec2.KeyPair(self, "KeyPair", key_pair_name=created_key_pair_name(Stack.of(self).stack_name),
                              type=ec2.KeyPairType.ED25519, format=ec2.KeyPairFormat.PEM)
        created.apply_removal_policy(RemovalPolicy.DESTROY)
        self.key_pair = created
        self.key_pair_name = created.key_pair_name
        self.private_key_parameter_name = created.private_key.parameter_name
