"""On-premises job submission through S3 (after the S3 + EventBridge on-premises job-submission guide): the client side. The head-node side is
scripts/node_actions/job_bridge.sh; the AWS wiring is hpc_constructs/job_bridge.py."""
