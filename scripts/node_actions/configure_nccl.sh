#!/usr/bin/env bash
# Points NCCL at EFA through the aws-ofi-nccl plugin that the AMI already ships (GPU RDMA is
# detected by libfabric itself, so it is not forced here: g5 has EFA without RDMA).
#
# Nothing is built or downloaded: ParallelCluster AMIs install the EFA software (libfabric and the
# aws-ofi-nccl plugin); NCCL itself comes with the framework or container (PyTorch, NGC images).
# On a node without an NVIDIA GPU (a CPU head node, a CPU queue) this does nothing.
#
# Usage (OnNodeConfigured, GPU queues): configure_nccl.sh [NCCL_DEBUG_LEVEL]   (default WARN)
# Idempotent: writes /etc/profile.d/nccl-efa.sh only when its content changes.
# ROOT (default empty) prefixes every path so tests can run it against a fake root.
set -euo pipefail

ROOT="${ROOT:-}"
DEBUG_LEVEL="${1:-WARN}"
NVIDIA_SMI="${NVIDIA_SMI:-nvidia-smi}"
PROFILE="$ROOT/etc/profile.d/nccl-efa.sh"

log() { echo "configure_nccl: $*"; }

if ! command -v "$NVIDIA_SMI" > /dev/null 2>&1; then
  log "no NVIDIA GPU on this node: nothing to do"
  exit 0
fi

plugin_dir=""
for candidate in /opt/amazon/ofi-nccl/lib /opt/amazon/ofi-nccl/lib64 /opt/aws-ofi-nccl/lib; do
  if [[ -d "$ROOT$candidate" ]]; then
    plugin_dir="$candidate"
    break
  fi
done
if [[ -z "$plugin_dir" ]]; then
  log "no aws-ofi-nccl plugin found under /opt/amazon or /opt/aws-ofi-nccl: is the EFA installer on this AMI?" >&2
  exit 1
fi

desired="$(cat <<PROFILE_EOF
# Written by configure_nccl.sh (ParallelCluster OnNodeConfigured): NCCL over EFA.
export FI_PROVIDER=efa
export NCCL_DEBUG=${DEBUG_LEVEL}
case ":\${LD_LIBRARY_PATH:-}:" in
  *":${plugin_dir}:"*) ;;
  *) export LD_LIBRARY_PATH="${plugin_dir}\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" ;;
esac
PROFILE_EOF
)"

if [[ -f "$PROFILE" ]] && [[ "$(cat "$PROFILE")" == "$desired" ]]; then
  log "unchanged $PROFILE"
  exit 0
fi
mkdir -p "$(dirname "$PROFILE")"
printf '%s\n' "$desired" > "$PROFILE"
chmod 0644 "$PROFILE"
log "wrote $PROFILE (plugin $plugin_dir)"
