"""User commands against a deployed cluster (boto3), wrapped by hpc-ops."""
