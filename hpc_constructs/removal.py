"""One rule for stateful resources: retained unless the user opted into a throwaway environment."""

from aws_cdk import RemovalPolicy


def data_removal_policy(destroy_data_on_delete: bool) -> RemovalPolicy:
    """RETAIN keeps the resource on stack deletion and on replacement (UpdateReplacePolicy)."""
    return RemovalPolicy.DESTROY if destroy_data_on_delete else RemovalPolicy.RETAIN
