#!/usr/bin/env bash
# shellcheck disable=SC2317  # the check_* functions are called by name, from the list at the end
# Checks that a deployed cluster works, run on the head node by `hpc-ops verify` through SSM Run
# Command (as root; Slurm commands and file writes as the cluster's user). The plan comes on stdin, one
# item per line (ops.py derives it from the deployed cluster config):
#
#   user NAME                              the cluster's login user
#   timeout SECONDS                        per check (covers a cold start of dynamic nodes)
#   queue NAME STATIC MAX EFA GPUS PYXIS   a Slurm queue: static and maximum nodes, EFA 0/1, GPUs per
#                                          node (0: none), Pyxis enabled 0/1
#   mount DIR FSTYPE                       shared storage: mounted with that type, writable by the user
#   export FILE                            create FILE, a new name (ops.py looks for it in S3)
#   await FILE                             wait until FILE exists (ops.py put it in S3 first)
#   remove FILE                            delete FILE when the checks are done (no result line)
#   image REF                              container image for the Pyxis check
#   nccl MIN_BUSBW_GBPS                    the all_reduce bus bandwidth a GPU queue must reach
#   only CHECK[,CHECK...]                  run only these checks
#
# Each check prints one line: RESULT<TAB>check<TAB>PASS|FAIL|SKIP<TAB>seconds<TAB>evidence
# The exit status is 0: the results are the answer. SINFO, SRUN, SBATCH, SALLOC, SQUEUE, FI_INFO and
# ALL_REDUCE_PERF may name other programs (tests); DYNAMIC_NODES caps the dynamic nodes started per queue.
set -uo pipefail

SINFO="${SINFO:-sinfo}" SRUN="${SRUN:-srun}" SBATCH="${SBATCH:-sbatch}" SALLOC="${SALLOC:-salloc}"
SQUEUE="${SQUEUE:-squeue}" FI_INFO="${FI_INFO:-fi_info}"
DYNAMIC_NODES="${DYNAMIC_NODES:-2}"
USER_NAME="" TIMEOUT=600 IMAGE="docker://public.ecr.aws/docker/library/alpine:latest" NCCL_MIN=0 ONLY=""
QUEUES=() MOUNTS=() EXPORTS=() AWAITS=() REMOVES=()

while read -r kind a b c d e f; do
  case "$kind" in
    user) USER_NAME="$a" ;;
    timeout) TIMEOUT="$a" ;;
    queue) QUEUES+=("$a $b $c $d $e $f") ;;
    mount) MOUNTS+=("$a $b") ;;
    export) EXPORTS+=("$a") ;;
    await) AWAITS+=("$a") ;;
    remove) REMOVES+=("$a") ;;
    image) IMAGE="$a" ;;
    nccl) NCCL_MIN="$a" ;;
    only) ONLY=",$a," ;;
    "" | "#"*) ;;
    *) echo "verify_cluster: unknown plan line: $kind" >&2 ;;
  esac
done

wanted() { [[ -z "$ONLY" || "$ONLY" == *",$1,"* ]]; }

report() {  # report CHECK STATUS STARTED EVIDENCE
  local evidence="${4//$'\t'/ }"
  printf 'RESULT\t%s\t%s\t%s\t%s\n' "$1" "$2" "$(( $(date +%s) - $3 ))" "${evidence//$'\n'/ | }"
}

as_user() {  # as_user COMMAND...: as the cluster's user, from its home, within the check timeout
  if [[ -z "$USER_NAME" || "$(id -un)" == "$USER_NAME" ]]; then
    (cd ~ && timeout "$TIMEOUT" "$@")
  else
    # shellcheck disable=SC2016  # expanded by the user's shell
    runuser -u "$USER_NAME" -- bash -c 'cd ~ && exec timeout "$0" "$@"' "$TIMEOUT" "$@"
  fi
}

nodes_for() {  # nodes_for STATIC MAX: every static node, else a few dynamic ones (each a cold start)
  if (( $1 > 0 )); then echo "$1"; else echo $(( $2 < DYNAMIC_NODES ? $2 : DYNAMIC_NODES )); fi
}

check_slurm() {
  local started out partitions bad queue name
  started=$(date +%s)
  if ! out="$(as_user "$SINFO" -h -o '%P|%a|%D|%T|%E' 2>&1)"; then
    report slurm FAIL "$started" "sinfo failed: $out"
    return
  fi
  partitions="$(cut -d'|' -f1 <<< "$out" | tr -d '*' | sort -u | tr '\n' ' ')"
  partitions="${partitions% }"
  for queue in "${QUEUES[@]}"; do
    name="${queue%% *}"
    if ! grep -q "^${name}\*\?|up|" <<< "$out"; then
      report slurm FAIL "$started" "partition $name is missing or not up (partitions: $partitions)"
      return
    fi
  done
  # A node down, drained or failed with no reason is one nobody knows about.
  bad="$(awk -F'|' '$4 ~ /down|drain|fail/ && ($5 == "" || $5 == "none") {print $1": "$3" "$4}' <<< "$out")"
  if [[ -n "$bad" ]]; then
    report slurm FAIL "$started" "nodes in a bad state without a reason: $bad"
    return
  fi
  report slurm PASS "$started" "partitions up: $partitions; nodes: $(awk -F'|' '{n[$4] += $3}
    END {for (s in n) printf "%s%d %s", (sep++ ? ", " : ""), n[s], s}' <<< "$out")"
}

check_srun() {  # every queue: its static nodes, or a few dynamic ones
  local queue name static max n started out hosts
  for queue in "${QUEUES[@]}"; do
    read -r name static max _ <<< "$queue"
    started=$(date +%s)
    n="$(nodes_for "$static" "$max")"
    if (( n == 0 )); then
      report "srun:$name" SKIP "$started" "queue $name has no nodes (MaxCount 0)"
      continue
    fi
    if out="$(as_user "$SRUN" -p "$name" -N "$n" --ntasks-per-node=1 hostname 2>&1)"; then
      hosts="$(sort -u <<< "$out" | grep -c .)"
      if (( hosts == n )); then
        report "srun:$name" PASS "$started" "$n node(s): $(sort -u <<< "$out" | tr '\n' ' ')"
      else
        report "srun:$name" FAIL "$started" "asked for $n nodes, $hosts answered: $out"
      fi
    else
      report "srun:$name" FAIL "$started" "srun -p $name -N $n failed: ${out:0:300}"
    fi
  done
}

check_sbatch() {
  local started name out id state waited=0
  started=$(date +%s)
  name="${QUEUES[0]%% *}"
  # The output goes to the user's home, shared with the compute nodes (their /tmp is their own).
  if ! id="$(as_user "$SBATCH" --parsable -p "$name" -N 1 -o ".verify-sbatch-%j.out" --wrap 'hostname' 2>&1)"; then
    report sbatch FAIL "$started" "sbatch failed: $id"
    return
  fi
  id="${id%%;*}"
  while state="$(as_user "$SQUEUE" -h -j "$id" -o %T 2> /dev/null)" && [[ -n "$state" ]]; do
    (( waited++ < TIMEOUT )) || { report sbatch FAIL "$started" "job $id still $state after ${TIMEOUT}s"; return; }
    sleep 1
  done
  if out="$(as_user cat ".verify-sbatch-$id.out" 2> /dev/null)" && [[ -n "$out" ]]; then
    report sbatch PASS "$started" "job $id ran on $out"
    as_user rm -f ".verify-sbatch-$id.out"
  else
    report sbatch FAIL "$started" "job $id ended without output (~$USER_NAME/.verify-sbatch-$id.out)"
  fi
}

check_salloc() {
  local started name out
  started=$(date +%s)
  name="${QUEUES[0]%% *}"
  # shellcheck disable=SC2016  # expanded in the allocation
  if out="$(as_user "$SALLOC" --quiet -p "$name" -N 1 "$SRUN" bash -c 'echo "$(hostname) as $(id -un)"' 2>&1)"; then
    report salloc PASS "$started" "allocation on $(tail -n 1 <<< "$out")"
  else
    report salloc FAIL "$started" "salloc failed: ${out:0:300}"
  fi
}

check_distributed() {  # the hands-on's distributed job: nodes x tasks, every rank reports once
  local started queue name static max efa n tasks out ranks expected
  started=$(date +%s)
  queue="${QUEUES[0]}"
  for candidate in "${QUEUES[@]}"; do  # an EFA queue if there is one
    read -r _ _ _ efa _ <<< "$candidate"
    if [[ "$efa" == 1 ]]; then queue="$candidate"; break; fi
  done
  read -r name static max _ <<< "$queue"
  n="$(nodes_for "$static" "$max")"
  tasks=$(( n * 2 ))
  # shellcheck disable=SC2016  # expanded by each task
  if ! out="$(as_user "$SRUN" -p "$name" -N "$n" --ntasks-per-node=2 bash -c 'echo "rank $SLURM_PROCID of $SLURM_NTASKS on $(hostname)"' 2>&1)"; then
    report distributed FAIL "$started" "srun -N $n --ntasks-per-node=2 failed: ${out:0:300}"
    return
  fi
  ranks="$(grep -o '^rank [0-9]*' <<< "$out" | sort -u | wc -l)"
  expected="$(seq 0 $((tasks - 1)) | sed 's/^/rank /' | sort)"
  if [[ "$(grep -o '^rank [0-9]*' <<< "$out" | sort)" == "$expected" ]]; then
    report distributed PASS "$started" "$tasks ranks on $n node(s) of $name, each once"
  else
    report distributed FAIL "$started" "expected ranks 0-$((tasks - 1)) once each, got $ranks distinct: ${out:0:300}"
  fi
}

mount_check() {  # mount_check DIR FSTYPE USER: prints a problem, or nothing (runs on compute nodes too)
  local dir="$1" fstype="$2" user="$3" found probe write
  found="$(findmnt -n -o FSTYPE --target "$dir" 2> /dev/null | head -n 1)"
  [[ "$found" == "$fstype"* ]] || { echo "$dir is ${found:-not mounted} (expected $fstype); "; return; }
  # shellcheck disable=SC2016  # expanded by the inner shell
  write='f="$1/.verify-$RANDOM$RANDOM" && : > "$f" && rm -f "$f"'
  for probe in "$dir/$user" "$dir"; do
    [[ -d "$probe" ]] || continue
    if [[ "$(id -un)" == "$user" ]]; then
      bash -c "$write" _ "$probe" 2> /dev/null && return
    else
      runuser -u "$user" -- bash -c "$write" _ "$probe" 2> /dev/null && return
    fi
  done
  echo "$dir is not writable by $user (neither $dir/$user nor $dir); "
}

check_mounts() {
  local mount dir fstype started problems queue name out
  (( ${#MOUNTS[@]} )) || { report mounts SKIP "$(date +%s)" "no shared storage in the config"; return; }
  started=$(date +%s)
  problems=""
  for mount in "${MOUNTS[@]}"; do
    read -r dir fstype <<< "$mount"
    problems+="$(mount_check "$dir" "$fstype" "$USER_NAME")"
  done
  if [[ -n "$problems" ]]; then report "mounts:head" FAIL "$started" "$problems"; else
    report "mounts:head" PASS "$started" "$(printf '%s ' "${MOUNTS[@]}")"; fi
  for queue in "${QUEUES[@]}"; do
    read -r name _ <<< "$queue"
    started=$(date +%s)
    # The same checks on a node of the queue (this script's own function, run there through srun).
    if out="$(as_user "$SRUN" -p "$name" -N 1 bash -c "$(declare -f mount_check); for m in $(printf '"%s" ' "${MOUNTS[@]}"); do mount_check \$m \"\$(id -un)\"; done" 2>&1)" && [[ -z "$out" ]]; then
      report "mounts:$name" PASS "$started" "$(printf '%s ' "${MOUNTS[@]}")"
    else
      report "mounts:$name" FAIL "$started" "${out:-srun failed}"
    fi
  done
}

check_exports() {
  local file started
  for file in "${EXPORTS[@]}"; do
    started=$(date +%s)
    # Root writes here: only as a new file (noclobber creates with O_EXCL), never through a link a
    # cluster user may have planted under that name.
    if (set -o noclobber; date -u +%FT%TZ > "$file") 2> /dev/null; then
      report "export-write:${file%/*}" PASS "$started" "wrote $file"
    else
      report "export-write:${file%/*}" FAIL "$started" "cannot create $file (it exists, or the folder is not there)"
    fi
  done
}

check_removes() {  # cleanup: rm removes a link, never what it points to
  local file
  for file in "${REMOVES[@]}"; do
    rm -f -- "$file"
  done
}

check_awaits() {
  local file started waited
  for file in "${AWAITS[@]}"; do
    started=$(date +%s)
    waited=0
    until [[ -e "$file" ]]; do
      if (( waited++ >= TIMEOUT )); then
        report "import:$file" FAIL "$started" "not on the file system after ${TIMEOUT}s"
        continue 2
      fi
      sleep 1
    done
    report "import:$file" PASS "$started" "appeared after ${waited}s"
  done
}

check_pyxis() {
  local queue name pyxis started out
  for queue in "${QUEUES[@]}"; do
    read -r name _ _ _ _ pyxis <<< "$queue"
    started=$(date +%s)
    if [[ "$pyxis" != 1 ]]; then
      report "pyxis:$name" SKIP "$started" "queue $name does not enable Pyxis (enable_pyxis.sh)"
      continue
    fi
    if ! as_user "$SRUN" --help 2>&1 | grep -q -- --container-image; then
      report "pyxis:$name" FAIL "$started" "srun has no --container-image: the Pyxis SPANK plugin is not loaded"
      continue
    fi
    if out="$(as_user "$SRUN" -p "$name" -N 1 --container-image="$IMAGE" cat /etc/os-release 2>&1)"; then
      report "pyxis:$name" PASS "$started" "$IMAGE: $(grep -m1 '^PRETTY_NAME' <<< "$out")"
    else
      report "pyxis:$name" FAIL "$started" "srun --container-image=$IMAGE failed: ${out:0:300}"
    fi
  done
}

check_efa() {
  local queue name efa started out
  for queue in "${QUEUES[@]}"; do
    read -r name _ _ efa _ <<< "$queue"
    started=$(date +%s)
    if [[ "$efa" != 1 ]]; then
      report "efa:$name" SKIP "$started" "queue $name has no EFA"
      continue
    fi
    if out="$(as_user "$SRUN" -p "$name" -N 1 "$FI_INFO" -p efa -t FI_EP_RDM 2>&1)" && grep -q 'provider: efa' <<< "$out"; then
      report "efa:$name" PASS "$started" "$(grep -m1 'domain:' <<< "$out" | xargs)"
    else
      report "efa:$name" FAIL "$started" "fi_info -p efa found no EFA provider: ${out:0:300}"
    fi
  done
}

check_nccl() {  # a short all_reduce across 2 nodes, one rank per GPU (nccl-tests, built with MPI)
  local queue name static max gpus started out busbw threshold program="${ALL_REDUCE_PERF:-/opt/nccl-tests/build/all_reduce_perf}"
  for queue in "${QUEUES[@]}"; do
    read -r name static max _ gpus _ <<< "$queue"
    started=$(date +%s)
    if (( gpus == 0 )); then
      report "nccl:$name" SKIP "$started" "queue $name has no GPUs"
      continue
    fi
    if (( (static > 0 ? static : max) < 2 )); then
      report "nccl:$name" SKIP "$started" "queue $name has fewer than 2 nodes"
      continue
    fi
    if ! as_user "$SRUN" -p "$name" -N 1 test -x "$program" 2> /dev/null; then
      report "nccl:$name" SKIP "$started" "no $program on the nodes: nccl-tests come with the custom image (hpc-build-ami)"
      continue
    fi
    if ! out="$(as_user "$SRUN" -p "$name" -N 2 --ntasks-per-node="$gpus" --gpus-per-node="$gpus" --mpi=pmix \
        "$program" -b 1G -e 1G -f 2 -g 1 2>&1)"; then
      report "nccl:$name" FAIL "$started" "all_reduce_perf on 2 nodes failed: ${out:0:300}"
      continue
    fi
    busbw="$(awk '/Avg bus bandwidth/ {print $NF}' <<< "$out")"
    threshold="$( [[ "$NCCL_MIN" == 0 ]] && echo "no threshold set: pass --nccl-min-busbw from your baseline" ||
      echo ">= $NCCL_MIN GB/s")"
    if [[ -n "$busbw" ]] && awk -v b="$busbw" -v m="$NCCL_MIN" 'BEGIN {exit !(b >= m)}'; then
      report "nccl:$name" PASS "$started" "all_reduce 1 GiB, 2 nodes x $gpus GPUs: bus bandwidth $busbw GB/s ($threshold)"
    else
      report "nccl:$name" FAIL "$started" "all_reduce 1 GiB, 2 nodes x $gpus GPUs: bus bandwidth ${busbw:-unknown} GB/s ($threshold)"
    fi
  done
}

(( ${#QUEUES[@]} )) || { report plan FAIL "$(date +%s)" "the plan names no queue"; exit 0; }
for check in slurm srun sbatch salloc distributed mounts exports awaits pyxis efa nccl removes; do
  wanted "$check" && "check_$check"
done
exit 0
