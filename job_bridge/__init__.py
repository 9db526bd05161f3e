"""On-premises job submission through S3 (seed 004): the client side. The head-node side is
scripts/node_actions/job_bridge.sh; the AWS wiring is hpc_constructs/job_bridge.py."""
