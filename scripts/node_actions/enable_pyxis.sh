#!/usr/bin/env bash
# Enables Pyxis + Enroot (container jobs: srun --container-image=...) on a ParallelCluster node.
#
# ParallelCluster >= 3.11 AMIs ship both installed but disabled, with sample configs under
# /opt/parallelcluster/examples. This is the supported way to turn them on: copy the samples into
# place, point Enroot at node-local directories, and on the head node reconfigure slurmctld.
#
# Usage (OnNodeConfigured, head node and compute queues):
#   enable_pyxis.sh [PERSISTENT_DIR] [VOLATILE_DIR]
#     PERSISTENT_DIR  Enroot cache/config, node-local disk (default /var/enroot; /scratch/enroot on NVMe)
#     VOLATILE_DIR    Enroot runtime/data, tmpfs         (default /run/enroot)
# Never on shared storage (/fsx, /home): a synth-time rule rejects that.
#
# Idempotent: a second run changes nothing and does not reconfigure Slurm again.
# ParallelCluster installs the samples only on NVIDIA-enabled AMIs: on an image without them (a custom
# CPU AMI, say) this logs that containers are unavailable there and exits 0, so the node still boots.
# ROOT (default empty) prefixes every path so tests can run it against a fake root.
set -euo pipefail

ROOT="${ROOT:-}"
PERSISTENT_DIR="${1:-/var/enroot}"
VOLATILE_DIR="${2:-/run/enroot}"
EXAMPLES="$ROOT/opt/parallelcluster/examples"
SLURM_ETC="$ROOT/opt/slurm/etc"
SCONTROL="${SCONTROL:-/opt/slurm/bin/scontrol}"
CHANGED=0

log() { echo "enable_pyxis: $*"; }

node_type() {
  local cfnconfig="$ROOT/etc/parallelcluster/cfnconfig"
  if [[ -r "$cfnconfig" ]]; then
    # shellcheck disable=SC1090  # written by ParallelCluster at boot
    (. "$cfnconfig" && echo "${cfn_node_type:-}")
  fi
}

# install_file SRC DEST MODE: copy only when the content differs.
install_file() {
  local src="$1" dest="$2" mode="$3"
  if [[ -f "$dest" ]] && cmp -s "$src" "$dest"; then
    return 0
  fi
  install -D -m "$mode" "$src" "$dest"
  log "installed $dest"
  CHANGED=1
}

# ensure_dir DIR: world-writable with sticky bit, as Enroot and Pyxis expect for per-user subdirs.
ensure_dir() {
  local dir="$ROOT$1"
  if [[ -d "$dir" && "$(stat -c %a "$dir")" == "1777" ]]; then
    return 0
  fi
  mkdir -p "$dir"
  chmod 1777 "$dir"
  log "prepared $dir"
}

missing=()
for sample in enroot/enroot.conf spank/plugstack.conf pyxis/pyxis.conf; do
  [[ -f "$EXAMPLES/$sample" ]] || missing+=("$EXAMPLES/$sample")
done
if (( ${#missing[@]} )); then
  log "WARNING: ${missing[*]} not found: this AMI has no Pyxis/Enroot samples (ParallelCluster >= 3.11 ships them" \
    "on NVIDIA-enabled AMIs), so container jobs (srun --container-image) will not run on this node; nothing changed" >&2
  exit 0
fi

ensure_dir "$PERSISTENT_DIR"
ensure_dir "$VOLATILE_DIR"
ensure_dir /run/pyxis

# The sample enroot.conf uses /var/enroot (persistent) and /run/enroot (volatile); use ours.
rendered="$(mktemp)"
trap 'rm -f "$rendered"' EXIT
sed -e "s#/var/enroot#${PERSISTENT_DIR}#g" -e "s#/run/enroot#${VOLATILE_DIR}#g" \
  "$EXAMPLES/enroot/enroot.conf" > "$rendered"
install_file "$rendered" "$ROOT/etc/enroot/enroot.conf" 0644
install_file "$EXAMPLES/spank/plugstack.conf" "$SLURM_ETC/plugstack.conf" 0644
install_file "$EXAMPLES/pyxis/pyxis.conf" "$SLURM_ETC/plugstack.conf.d/pyxis.conf" 0644

if [[ "$(node_type)" == "HeadNode" && "$CHANGED" == 1 ]]; then
  log "reconfiguring slurmctld to load the Pyxis SPANK plugin"
  "$SCONTROL" reconfigure
fi
log "done (changed=$CHANGED)"
