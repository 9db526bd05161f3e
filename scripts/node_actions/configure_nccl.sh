#!/usr/bin/env bash
# Points NCCL at EFA through the aws-ofi-nccl plugin that the AMI already ships (GPU RDMA is
# detected by libfabric itself, so it is not forced here: g5 has EFA without RDMA).
#
# Nothing is built or downloaded: ParallelCluster AMIs install the EFA software (libfabric and the
# aws-ofi-nccl plugin); NCCL itself comes with the framework or container (PyTorch, NGC images).
# On a node without an NVIDIA GPU (a CPU head node, a CPU queue) this does nothing.
#
# The plugin is found, not assumed: its directory comes from the loader config the EFA installer
# writes (/etc/ld.so.conf.d/*ofinccl*.conf), else from the known install prefixes, and within them
# lib/, lib/<multiarch>/ or lib64/; the library is libnccl-net.so (older installers) or
# libnccl-net-ofi.so (newer ones, with or without a libnccl-net.so link). With only the -ofi name,
# NCCL_NET_PLUGIN=ofi makes NCCL load it. A GPU node without the plugin fails only when it has EFA
# devices (the plugin belongs there); otherwise NCCL uses TCP and this only warns.
#
# Usage (OnNodeConfigured, GPU queues): configure_nccl.sh [NCCL_DEBUG_LEVEL]   (default WARN)
# Idempotent: writes /etc/profile.d/nccl-efa.sh only when its content changes.
# ROOT (default empty) prefixes every path so tests can run it against a fake root.
set -euo pipefail

ROOT="${ROOT:-}"
DEBUG_LEVEL="${1:-WARN}"
NVIDIA_SMI="${NVIDIA_SMI:-nvidia-smi}"
PROFILE="$ROOT/etc/profile.d/nccl-efa.sh"
PREFIXES=(/opt/amazon/ofi-nccl /opt/aws-ofi-nccl)
SUBDIRS=(lib lib/x86_64-linux-gnu lib/aarch64-linux-gnu lib64)
NAMES=(libnccl-net.so libnccl-net-ofi.so)

log() { echo "configure_nccl: $*"; }

if ! command -v "$NVIDIA_SMI" > /dev/null 2>&1; then
  log "no NVIDIA GPU on this node: nothing to do"
  exit 0
fi

candidate_dirs() {
  local conf dir prefix sub
  for conf in "$ROOT"/etc/ld.so.conf.d/*ofinccl*.conf "$ROOT"/etc/ld.so.conf.d/*ofi-nccl*.conf; do
    [[ -r "$conf" ]] || continue
    while IFS= read -r dir; do
      [[ "$dir" == /* ]] && echo "$dir"
    done < "$conf"
  done
  for prefix in "${PREFIXES[@]}"; do
    for sub in "${SUBDIRS[@]}"; do
      echo "$prefix/$sub"
    done
  done
}

plugin_dir="" plugin_names=()
while IFS= read -r dir; do
  found=()
  for name in "${NAMES[@]}"; do
    [[ -e "$ROOT$dir/$name" ]] && found+=("$name")
  done
  if (( ${#found[@]} )); then
    plugin_dir="$dir" plugin_names=("${found[@]}")
    break
  fi
done < <(candidate_dirs)

if [[ -z "$plugin_dir" ]]; then
  if compgen -G "$ROOT/sys/class/infiniband/*" > /dev/null; then
    log "EFA devices but no aws-ofi-nccl plugin (${NAMES[*]}) under ${PREFIXES[*]}: is the EFA installer complete on this AMI?" >&2
    exit 1
  fi
  log "WARNING: no aws-ofi-nccl plugin and no EFA device: NCCL will use TCP sockets on this node; nothing changed" >&2
  exit 0
fi

plugin_setting=""
if [[ " ${plugin_names[*]} " != *" libnccl-net.so "* ]]; then
  plugin_setting="export NCCL_NET_PLUGIN=ofi  # only libnccl-net-ofi.so is installed"
fi

desired="$(cat <<PROFILE_EOF
# Written by configure_nccl.sh (ParallelCluster OnNodeConfigured): NCCL over EFA.
export FI_PROVIDER=efa
export NCCL_DEBUG=${DEBUG_LEVEL}
${plugin_setting}
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
log "wrote $PROFILE (plugin ${plugin_names[*]} in $plugin_dir)"
