#!/usr/bin/env bash
# On-premises job submission through S3 (seed 004), head-node side.
#
# An on-prem user uploads a job folder to s3://BUCKET/PREFIX<name>/ (with job-aws-run.sh, the Slurm
# batch script) and then the state file job-aws-stat.txt containing FILE_UPLOAD. The upload fires an
# EventBridge rule that runs `job_bridge.sh submit` here through SSM Run Command. When the job ends,
# slurmctld runs `job_bridge.sh epilog` (EpilogSlurmctld), which copies the folder back to S3.
#
# States in job-aws-stat.txt (seed 004's names, plus JOB_FAILED):
#   FILE_UPLOAD   the user's request            JOB_SUBMIT    submitted; job-aws-jobid.txt has the id
#   JOB_ERROR     not submitted; job-aws-sbatch.out says why
#   JOB_COMPLETE  exit status 0, results in S3  JOB_FAILED    non-zero exit or signal, results in S3
#
# Where the seed was fragile: one submitter at a time (flock); each upload (S3 object version) is
# submitted at most once, recorded in a local journal before sbatch, so duplicate or concurrent
# events and a crash between sbatch and the state write never submit twice; folder names other than
# [A-Za-z0-9._-] are rejected with JOB_ERROR; results are uploaded before the final state is written;
# jobs run as the cluster's user, not root; slurm.conf is not edited (the epilog is set through
# the cluster config's CustomSlurmSettings).
#
# Usage:
#   job_bridge.sh install BUCKET PREFIX USER   OnNodeConfigured on the head node (idempotent)
#   job_bridge.sh submit                       SSM Run Command, on every state-file upload
#   job_bridge.sh epilog                       EpilogSlurmctld, through /opt/job-bridge/epilog
# JOB_BRIDGE_CONF (default /etc/job-bridge.conf) and ROOT (install only) exist for tests.
set -euo pipefail

STATE_FILE=job-aws-stat.txt
JOB_SCRIPT=job-aws-run.sh
JOBID_FILE=job-aws-jobid.txt
ERROR_FILE=job-aws-sbatch.out
NAME_PATTERN='^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$'
CONF="${JOB_BRIDGE_CONF:-/etc/job-bridge.conf}"

log() { echo "job_bridge: $*" >&2; }

load_conf() {
  # shellcheck disable=SC1090  # written by `install`
  . "$CONF"
  : "${BUCKET:?missing in $CONF}" "${PREFIX:?missing in $CONF}" "${JOB_USER:?missing in $CONF}"
  PREFIX="${PREFIX%/}/"
  WORK_ROOT="${WORK_ROOT:-/home/$JOB_USER/job-aws}"
  SPOOL="${SPOOL:-/var/spool/job-bridge}"
  LOCK="${LOCK:-/var/lock/job-bridge.lock}"
  SBATCH="${SBATCH:-/opt/slurm/bin/sbatch}"
  SQUEUE="${SQUEUE:-/opt/slurm/bin/squeue}"
}

s3_url() { printf 's3://%s/%s%s' "$BUCKET" "$PREFIX" "$1"; }

put_text() {  # put_text NAME FILE TEXT
  printf '%s\n' "$3" | aws s3 cp - "$(s3_url "$1/$2")" --only-show-errors
}

as_job_user() {
  if [[ "$(id -un)" == "$JOB_USER" ]]; then
    "$@"
  else
    runuser -u "$JOB_USER" -- "$@"
  fi
}

record_submitted() {  # record_submitted NAME JOBID
  put_text "$1" "$JOBID_FILE" "$2"
  put_text "$1" "$STATE_FILE" JOB_SUBMIT
  log "$1: submitted as job $2"
}

record_error() {  # record_error NAME MESSAGE
  printf '%s\n' "$2" > "$SPOOL/$1/error"
  put_text "$1" "$ERROR_FILE" "$2"
  put_text "$1" "$STATE_FILE" JOB_ERROR
  log "$1: JOB_ERROR: $2"
}

submit_one() {  # submit_one NAME
  local name="$1" key state request journal workdir jobid found
  key="${PREFIX}${name}/${STATE_FILE}"
  state="$(aws s3 cp "s3://$BUCKET/$key" - 2>/dev/null | head -n 1 | tr -d '\r' || true)"
  [[ "$state" == FILE_UPLOAD ]] || return 0
  if [[ ! "$name" =~ $NAME_PATTERN ]]; then
    # No local journal for names we cannot use as paths: answer in S3 only.
    put_text "$name" "$ERROR_FILE" "job folder name '$name' is not allowed: use letters, digits, '.', '_', '-'"
    put_text "$name" "$STATE_FILE" JOB_ERROR
    log "rejected folder name '$name'"
    return 0
  fi
  # One upload = one S3 object version (ETag and time for unversioned buckets).
  request="$(aws s3api head-object --bucket "$BUCKET" --key "$key" \
    --query '[VersionId,ETag,LastModified]' --output text)"
  journal="$SPOOL/$name"
  mkdir -p "$journal"
  if [[ -f "$journal/request" && "$(cat "$journal/request")" == "$request" ]]; then
    # This upload was handled before and its state write did not happen (crash or lost write).
    if [[ -s "$journal/jobid" ]]; then
      record_submitted "$name" "$(cat "$journal/jobid")"
    elif [[ -s "$journal/error" ]]; then
      record_error "$name" "$(cat "$journal/error")"
    else
      found="$("$SQUEUE" -h --states=all --name="jb-$name" -o %i 2>/dev/null | head -n 1 || true)"
      if [[ -n "$found" ]]; then
        printf '%s\n' "$found" > "$journal/jobid"
        record_submitted "$name" "$found"
      else
        record_error "$name" "an earlier submission of this upload was interrupted and no job jb-$name is known; \
upload $STATE_FILE again (FILE_UPLOAD) to retry"
      fi
    fi
    return 0
  fi
  # Journal first: from here on, this upload is never submitted a second time.
  printf '%s\n' "$request" > "$journal/request.new"
  rm -f "$journal/jobid" "$journal/error"
  mv "$journal/request.new" "$journal/request"

  workdir="$WORK_ROOT/$name"
  mkdir -p "$workdir"
  aws s3 sync "$(s3_url "$name/")" "$workdir" --exclude "$STATE_FILE" --only-show-errors
  if [[ "$(id -u)" == 0 ]]; then
    chown -R "$JOB_USER:" "$workdir"
  fi
  if [[ ! -f "$workdir/$JOB_SCRIPT" ]]; then
    record_error "$name" "no $JOB_SCRIPT in the job folder: upload your Slurm batch script under that name"
    return 0
  fi
  if jobid="$(cd "$workdir" && as_job_user "$SBATCH" --parsable --job-name="jb-$name" --chdir="$workdir" \
      "$JOB_SCRIPT" 2> "$journal/sbatch.err")"; then
    jobid="${jobid%%;*}"
    printf '%s\n' "$jobid" > "$journal/jobid"
    record_submitted "$name" "$jobid"
  else
    record_error "$name" "sbatch failed: $(cat "$journal/sbatch.err")"
  fi
}

cmd_submit() {
  load_conf
  mkdir -p "$SPOOL" "$WORK_ROOT" "$(dirname "$LOCK")"
  exec 9> "$LOCK"
  flock 9  # events can arrive together: one submitter at a time
  local keys key name
  keys="$(aws s3api list-objects-v2 --bucket "$BUCKET" --prefix "$PREFIX" \
    --query "Contents[?ends_with(Key, '/$STATE_FILE')].Key" --output text)"
  while IFS= read -r key; do
    [[ -n "$key" && "$key" != None ]] || continue
    name="${key#"$PREFIX"}"
    name="${name%"/$STATE_FILE"}"
    [[ "$name" == */* ]] && continue  # only direct children of the prefix are job folders
    submit_one "$name" || log "$name: submitter error (exit $?), continuing with the next folder"
  done < <(printf '%s\n' "$keys" | tr '\t' '\n')
}

cmd_epilog() {  # cmd_epilog JOB_NAME JOB_ID EXIT_CODE (passed by the epilog wrapper)
  load_conf
  local name="${1:-}" job_id="${2:-?}" code="${3:-1}" state attempt
  [[ "$name" == jb-* ]] || exit 0  # not a bridged job
  name="${name#jb-}"
  [[ "$name" =~ $NAME_PATTERN && -d "$WORK_ROOT/$name" ]] || exit 0
  # The exit code comes as "exit:signal" (SLURM_JOB_EXIT_CODE2); anything but 0:0 is a failure.
  if [[ "$code" == "0:0" || "$code" == 0 ]]; then state=JOB_COMPLETE; else state=JOB_FAILED; fi
  for attempt in 1 2 3; do
    # Results first, state last: JOB_COMPLETE is never visible before the results are.
    if aws s3 sync "$WORK_ROOT/$name" "$(s3_url "$name/")" --exclude "$STATE_FILE" --only-show-errors; then
      put_text "$name" "$STATE_FILE" "$state"
      log "$name: job $job_id ended ($code): $state"
      return 0
    fi
    sleep $((attempt * 5))
  done
  log "$name: could not upload the results; they stay in $WORK_ROOT/$name"
  return 1
}

cmd_install() {
  local bucket="$1" prefix="$2" user="$3" root="${ROOT:-}" dir conf
  dir="$root/opt/job-bridge"
  conf="$root/etc/job-bridge.conf"
  mkdir -p "$dir" "$root/etc"
  install -m 0755 "$0" "$dir/job_bridge.sh.new" && mv "$dir/job_bridge.sh.new" "$dir/job_bridge.sh"
  {
    printf 'BUCKET=%q\nPREFIX=%q\nJOB_USER=%q\n' "$bucket" "$prefix" "$user"
    # Run Command and slurmctld start us with a minimal PATH (expanded when the conf is read).
    # shellcheck disable=SC2016
    printf 'export PATH=/usr/local/bin:/usr/bin:/bin:/opt/slurm/bin:${PATH:-}\n'
  } > "$conf.new"
  mv "$conf.new" "$conf"
  # EpilogSlurmctld takes a program without arguments, run as SlurmUser (slurm). ParallelCluster's
  # secured IMDS gives AWS credentials to root only, so the wrapper hands the job over through sudo,
  # passing what it needs as arguments (sudo clears the environment).
  cat > "$dir/epilog.new" <<EPILOG
#!/bin/sh
set -- "\${SLURM_JOB_NAME:-}" "\${SLURM_JOB_ID:-}" "\${SLURM_JOB_EXIT_CODE2:-\${SLURM_JOB_EXIT_CODE:-1}}"
case "\$1" in jb-*) ;; *) exit 0 ;; esac
if [ "\$(id -u)" = 0 ]; then
  JOB_BRIDGE_CONF=$conf exec $dir/job_bridge.sh epilog "\$@"
fi
exec sudo -n $dir/job_bridge.sh epilog "\$@"
EPILOG
  chmod 0755 "$dir/epilog.new"
  mv "$dir/epilog.new" "$dir/epilog"
  mkdir -p "$root/etc/sudoers.d"
  printf 'slurm ALL=(root) NOPASSWD: /opt/job-bridge/job_bridge.sh epilog *\n' > "$root/etc/sudoers.d/job-bridge"
  chmod 0440 "$root/etc/sudoers.d/job-bridge"
  log "installed in $dir (bucket $bucket, prefix $prefix, jobs run as $user)"
}

case "${1:-}" in
  submit) cmd_submit ;;
  epilog) shift; cmd_epilog "$@" ;;
  install)
    [[ $# -eq 4 ]] || { log "usage: $0 install BUCKET PREFIX USER"; exit 2; }
    cmd_install "$2" "$3" "$4"
    ;;
  *) log "usage: $0 install BUCKET PREFIX USER | submit | epilog"; exit 2 ;;
esac
