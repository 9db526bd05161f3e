#!/usr/bin/env bash
# On-premises job submission through S3 (after the S3 + EventBridge on-premises job-submission guide), head-node side.
#
# An on-prem user uploads a job folder to s3://BUCKET/PREFIX<submitter>/<name>/ (with job-aws-run.sh, the
# Slurm batch script), then the state file job-aws-stat.txt containing FILE_UPLOAD. <submitter> is the
# name of the user's IAM role, the only role the bucket lets write there, and the job runs as that
# submitter's own Linux user (job_users.sh). The upload fires an EventBridge rule that runs
# `job_bridge.sh submit --key <key>` here through SSM Run Command; a timer runs `job_bridge.sh sweep`
# every minute for events that were missed. When a job ends, slurmctld runs `job_bridge.sh epilog`
# (EpilogSlurmctld), which copies the results back; the final state comes from Slurm's own record.
#
# States in job-aws-stat.txt (the guide's names, plus JOB_FAILED), and their order; a state is never
# overwritten by an earlier one:
#   FILE_UPLOAD   the user's request            JOB_SUBMIT    submitted; job-aws-jobid.txt has the id
#   JOB_ERROR     not submitted; job-aws-sbatch.out says why
#   JOB_COMPLETE  Slurm says COMPLETED, results in S3
#   JOB_FAILED    any other end (FAILED, CANCELLED, TIMEOUT, ...); job-aws-reason.txt says which
#
# Threat model (docs/job-bridge.md): a submitter can run jobs as its own user, never as root and never
# as another submitter's user. Root only reads S3 and local state it owns: job folders are downloaded into a
# root-owned staging directory and handed over by JOB_USER itself; results are read by JOB_USER and
# streamed to root into a root-only staging directory, uploaded without following symlinks (regular files). A job is matched by the Slurm
# job id recorded at submission and by its uid, never by its name; each submission is tied to one
# upload of the state file (its ETag and time, in the job's comment), so a retry never adopts an
# older job. The state file is written only over the bridge's own last write (If-Match on its ETag): a
# new upload is never overwritten by the end of an older run, and waits until that run has ended.
#
# Usage:
#   job_bridge.sh install BUCKET PREFIX SUBMITTERS  SSM association on the head node (idempotent);
#                                              SUBMITTERS: "NAME:USER:UID ..." (users made by job_users.sh)
#   job_bridge.sh submit --key KEY             SSM Run Command, on each state-file upload
#   job_bridge.sh sweep                        the timer: every state file, and every job in flight
#   job_bridge.sh epilog JOB_NAME JOB_ID UID   EpilogSlurmctld, through /opt/job-bridge/epilog
#   job_bridge.sh finalize JOB_ID              started by the epilog: waits for Slurm's final state
#   job_bridge.sh uninstall                    the head node's OnNodeUpdated while the bridge is off (idempotent)
# JOB_BRIDGE_CONF (default /etc/job-bridge.conf) and ROOT (install only) exist for tests; the conf may
# set AWS, SBATCH, SQUEUE, SCONTROL, HOME_ROOT, SPOOL, LOCK, JOB_PATH, FINALIZE_WAIT, COLLECT_TIMEOUT and
# SWEEP_BATCH (uploads one sweep takes on, submitters in turn; the rest wait for the next sweep).
#
# Slurm's answers are trusted only when Slurm answered: a controller that cannot be reached is "ask again
# later" (exit status 2 of slurm_state), never the end of a job; an upload whose earlier submission cannot
# be checked is left for the next sweep (status 75 of submit_upload).
set -euo pipefail
umask 077

STATE_FILE=job-aws-stat.txt
JOB_SCRIPT=job-aws-run.sh
JOBID_FILE=job-aws-jobid.txt
ERROR_FILE=job-aws-sbatch.out
REASON_FILE=job-aws-reason.txt
NAME_PATTERN='^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$'
# The bridge's own files: never copied between the work folder and S3 (a stale copy would overwrite them).
BRIDGE_FILES=("$STATE_FILE" "$JOBID_FILE" "$ERROR_FILE" "$REASON_FILE")
FINAL_SLURM_STATES=" COMPLETED FAILED CANCELLED TIMEOUT OUT_OF_MEMORY NODE_FAIL PREEMPTED BOOT_FAIL DEADLINE "
CONF="${JOB_BRIDGE_CONF:-/etc/job-bridge.conf}"

log() { echo "job_bridge: $*" >&2; }

load_conf() {
  # shellcheck disable=SC1090  # written by `install`
  . "$CONF"
  : "${BUCKET:?missing in $CONF}" "${PREFIX:?missing in $CONF}" "${SUBMITTERS:?missing in $CONF}"
  PREFIX="${PREFIX%/}/"
  HOME_ROOT="${HOME_ROOT:-/home}"
  SPOOL="${SPOOL:-/var/spool/job-bridge}"
  # In the root-owned spool, not /run/lock: any local user may create (and hold) a file there first.
  LOCK="${LOCK:-$SPOOL/lock}"
  JOB_PATH="${JOB_PATH:-/usr/local/bin:/usr/bin:/bin:/opt/slurm/bin}"
  AWS="${AWS:-aws}"
  SBATCH="${SBATCH:-/opt/slurm/bin/sbatch}"
  SQUEUE="${SQUEUE:-/opt/slurm/bin/squeue}"
  SCONTROL="${SCONTROL:-/opt/slurm/bin/scontrol}"
  FINALIZE_WAIT="${FINALIZE_WAIT:-300}"
  COLLECT_TIMEOUT="${COLLECT_TIMEOUT:-1800}"  # seconds for the job user to hand its results over
  SWEEP_BATCH="${SWEEP_BATCH:-20}"
  mkdir -p "$SPOOL/jobs" "$SPOOL/staging" "$(dirname "$LOCK")"
  chmod 0711 "$SPOOL" "$SPOOL/staging"  # JOB_USER may reach its staging directories, list nothing
  chmod 0700 "$SPOOL/jobs"
}

use_submitter() {  # use_submitter NAME: JOB_USER, JOB_UID and WORK_ROOT of that submitter; status 1: not one
  local spec name user uid actual
  for spec in $SUBMITTERS; do
    IFS=: read -r name user uid <<< "$spec"
    [[ "$name" == "$1" ]] || continue
    if ! actual="$(id -u "$user" 2> /dev/null)" || [[ "$actual" != "$uid" || "$uid" == 0 ]]; then
      log "submitter $name: user $user should have uid $uid here (has: ${actual:-none}); refusing its jobs"
      return 1
    fi
    JOB_USER="$user" JOB_UID="$uid" WORK_ROOT="$HOME_ROOT/$user/job-aws"
    return 0
  done
  return 1
}

rank() {  # rank STATE: the order states may follow
  case "$1" in
    FILE_UPLOAD) echo 0 ;;
    JOB_SUBMIT) echo 1 ;;
    JOB_ERROR | JOB_COMPLETE | JOB_FAILED) echo 2 ;;
    *) echo -1 ;;
  esac
}

as_job_user() {
  if [[ "$(id -u)" == "$JOB_UID" ]]; then
    "$@"
  else
    runuser -u "$JOB_USER" -- "$@"
  fi
}

job_environment() {  # the explicit environment a job starts with (sbatch passes it on): none of the submitter's
  local home
  home="$(getent passwd "$JOB_USER" | cut -d: -f6)"
  printf '%s\n' "PATH=$JOB_PATH" "HOME=${home:-/}" "USER=$JOB_USER" "LOGNAME=$JOB_USER" "SHELL=/bin/bash" "LANG=C.UTF-8"
  if [[ -n "${SLURM_CONF:-}" ]]; then
    printf 'SLURM_CONF=%s\n' "$SLURM_CONF"
  fi
}

journal_of() {  # journal_of NAME: root-owned local record of that job folder
  printf '%s/jobs/%s' "$SPOOL" "$(printf '%s' "$1" | sha256sum | cut -c1-32)"
}

lock_job() {  # lock_job JOURNAL: one writer of a job's state at a time (submitter, epilog, finalize, sweep)
  mkdir -p "$1"
  exec 8> "$1/lock"
  flock 8
}

s3_url() { printf 's3://%s/%s%s' "$BUCKET" "$PREFIX" "$1"; }

put_text() {  # put_text NAME FILE TEXT
  printf '%s\n' "$3" | "$AWS" s3 cp - "$(s3_url "$1/$2")" --only-show-errors
}

set_state() {  # set_state JOURNAL NAME STATE: writes the state unless it would go back in the order
  local journal="$1" name="$2" state="$3" current
  current="$(cat "$journal/state" 2> /dev/null || echo FILE_UPLOAD)"
  if (( $(rank "$state") <= $(rank "$current") )); then
    log "$name: keeping $current (not going back to $state)"
    return 0
  fi
  local etag expected
  expected="$(cat "$journal/etag" 2> /dev/null || true)"
  printf '%s\n' "$state" > "$journal/body"
  # Only over the state file this run last saw or wrote: a newer upload (the user's next request) is never
  # overwritten. S3 answers 412 PreconditionFailed when the ETag no longer matches.
  if etag="$("$AWS" s3api put-object --bucket "$BUCKET" --key "$PREFIX$name/$STATE_FILE" --body "$journal/body" \
      ${expected:+--if-match "$expected"} --query ETag --output text 2> "$journal/put.err")"; then
    printf '%s\n' "$etag" > "$journal/etag"
  elif grep -q 'PreconditionFailed' "$journal/put.err"; then
    log "$name: a newer upload of $STATE_FILE is there: $state is not written over it"
  else
    log "$name: could not write $state: $(head -c 300 "$journal/put.err")"
    return 1
  fi
  printf '%s\n' "$state" > "$journal/state"
  log "$name: $state"
}

state_is_ours() {  # state_is_ours JOURNAL NAME: false when the state file was uploaded again since the bridge's last
  local expected current  # write (a new request); true when S3 cannot be asked (the conditional write still guards)
  expected="$(cat "$1/etag" 2> /dev/null)" || return 0
  current="$("$AWS" s3api head-object --bucket "$BUCKET" --key "$PREFIX$2/$STATE_FILE" --query ETag --output text \
    2> /dev/null)" || return 0
  [[ "$current" == "$expected" ]]
}

record_error() {  # record_error JOURNAL NAME MESSAGE
  printf '%s\n' "$3" > "$1/error"
  put_text "$2" "$ERROR_FILE" "$3" || log "$2: could not write $ERROR_FILE"
  set_state "$1" "$2" JOB_ERROR
}

record_submitted() {  # record_submitted JOURNAL NAME JOBID
  printf '%s\n' "$3" > "$1/jobid"
  if put_text "$2" "$JOBID_FILE" "$3"; then
    set_state "$1" "$2" JOB_SUBMIT
  else
    log "$2: submitted as job $3, state not written yet (the sweep retries)"
  fi
}

job_with_comment() {  # job_with_comment TOKEN: the job the bridge submitted for this upload, if any: that comment,
  local listing     # run by the submitter's user (anyone may give a job any comment); status 2: Slurm cannot be asked
  listing="$("$SQUEUE" -h --states=all -o '%i|%U|%k' 2> /dev/null)" || return 2
  awk -F'|' -v c="jb:$1" -v uid="$JOB_UID" '$2 == uid && $3 == c {print $1; exit}' <<< "$listing"
}

secret() {  # the bridge's own key (root-only, made once): tokens nobody else can compute
  if [[ ! -s "$SPOOL/secret" ]]; then  # created once, atomically: a link never replaces a secret in use
    (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$SPOOL/secret.$$")
    ln "$SPOOL/secret.$$" "$SPOOL/secret" 2> /dev/null || true
    rm -f "$SPOOL/secret.$$"
  fi
  cat "$SPOOL/secret"
}

token_of() {  # token_of KEY ETAG LAST_MODIFIED: one upload of a state file (time format-independent), keyed with
  # the bridge's secret: key, ETag and time are readable by anyone who may list the prefix, the token is not
  printf '%s|%s|%s' "$1" "$2" "$(date -u -d "$3" +%s 2> /dev/null || printf '%s' "$3")" \
    | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$(secret)" -r | cut -c1-32
}

isolated() {  # isolated COMMAND...: runs it with errexit in force, and survives its failure
  local status
  set +e
  (set -e; "$@")
  status=$?
  set -e
  (( status == 0 )) || log "$1 failed (exit $status); continuing"
}

path_has_symlink() {  # path_has_symlink PATH: true when PATH or a parent below / is a symbolic link
  local path="$1"
  while [[ "$path" != / && -n "$path" ]]; do
    [[ -L "$path" ]] && return 0
    path="$(dirname "$path")"
  done
  return 1
}

excludes() {  # the --exclude options for the bridge's own files
  local file
  for file in "${BRIDGE_FILES[@]}"; do
    printf -- '--exclude\n%s\n' "$file"
  done
}

stage_download() {  # stage_download NAME STAGING: the job folder into a root-owned directory
  local options
  mapfile -t options < <(excludes)
  (umask 022 && "$AWS" s3 sync "$(s3_url "$1/")" "$2" "${options[@]}" --no-follow-symlinks --only-show-errors)
}

hand_over() {  # hand_over STAGING WORKDIR: JOB_USER copies the files into its own work folder
  as_job_user mkdir -p -- "$2" && as_job_user cp -R --no-preserve=ownership -- "$1/." "$2/"
}

submit_upload() {  # submit_upload FOLDER KEY TOKEN JOURNAL ETAG: one FILE_UPLOAD, under the job lock
  local folder="$1" token="$3" journal="$4" etag="$5" submitter name known=0 staging workdir jobid err
  submitter="${folder%%/*}"
  name="${folder#*/}"
  [[ "$folder" == */* ]] || name=""
  if [[ -n "$name" ]] && use_submitter "$submitter"; then
    known=1
  fi
  if [[ -f "$journal/token" && "$(cat "$journal/token")" == "$token" ]]; then
    [[ "$(cat "$journal/state" 2> /dev/null)" == FILE_UPLOAD ]] || return 0  # handled
    # An earlier run took this upload and stopped before recording its outcome.
    if (( known )); then
      if ! jobid="$(job_with_comment "$token")"; then
        log "$folder: Slurm cannot be asked whether an earlier run submitted this upload (the sweep retries)"
        return 75
      fi
      if [[ -n "$jobid" ]]; then
        record_submitted "$journal" "$folder" "$jobid"
        return
      fi
    fi
    log "$folder: an earlier run of this upload did not submit it: submitting now"
  elif (( known )) && [[ -f "$journal/jobid" && "$(cat "$journal/state" 2> /dev/null)" == JOB_SUBMIT ]]; then
    # A new upload of a folder whose previous job has not been settled: it runs after that job, never beside it
    # in the same work folder, and the previous job's end is never written over it.
    local previous info status=0
    previous="$(cat "$journal/jobid")"
    info="$(slurm_state "$previous")" || status=$?
    if (( status == 2 )) || { (( status == 0 )) && [[ "$FINAL_SLURM_STATES" != *" ${info%%|*} "* ]]; }; then
      log "$folder: job $previous of this folder has not ended: the new upload waits for it (the sweep retries)"
      return 75
    fi
    if (( status == 1 )); then
      info="UNKNOWN|Slurm no longer knows the job"
    fi
    finish "$journal" "$previous" "${info%%|*}" "reason: ${info#*|}"
  fi
  rm -f "$journal/jobid" "$journal/error" "$journal/results"
  printf 'FILE_UPLOAD\n' > "$journal/state"
  printf '%s\n' "$token" > "$journal/token"
  printf '%s\n' "$folder" > "$journal/name"
  printf '%s\n' "$etag" > "$journal/etag"

  if [[ -z "$name" ]]; then
    record_error "$journal" "$folder" "job folders go below your submitter's folder: upload to $PREFIX<your IAM role's name>/<job name>/"
    return
  fi
  if [[ ! "$name" =~ $NAME_PATTERN ]]; then
    record_error "$journal" "$folder" "job folder name '$name' is not allowed: use one level of letters, digits, '.', '_', '-'"
    return
  fi
  if (( ! known )); then
    record_error "$journal" "$folder" "'$submitter' is not a submitter of this cluster (context job_bridge_submitters): upload to $PREFIX<your IAM role's name>/<job name>/"
    return
  fi
  workdir="$WORK_ROOT/$name"
  if path_has_symlink "$workdir"; then
    record_error "$journal" "$folder" "the work folder $workdir (or a folder above it) is a symbolic link: refusing to use it"
    return
  fi
  # Root's, readable by the submitter's user (its group) only: other local users read no staged input.
  if ! staging="$(mktemp -d "$SPOOL/staging/in.XXXXXX")" || ! chown "0:$(id -g "$JOB_USER")" "$staging" \
      || ! chmod 0750 "$staging"; then
    record_error "$journal" "$folder" "could not create a staging folder on the head node (disk full?)"
    return
  fi
  if ! err="$(stage_download "$folder" "$staging" 2>&1)"; then
    rm -rf "$staging"
    record_error "$journal" "$folder" "could not download the job folder (nothing was submitted): ${err:0:500}"
    return
  fi
  if [[ ! -f "$staging/$JOB_SCRIPT" ]]; then
    rm -rf "$staging"
    record_error "$journal" "$folder" "no $JOB_SCRIPT in the job folder: upload your Slurm batch script under that name"
    return
  fi
  if ! err="$(hand_over "$staging" "$workdir" 2>&1)"; then
    rm -rf "$staging"
    record_error "$journal" "$folder" "could not copy the job folder into $workdir as $JOB_USER: ${err:0:500}"
    return
  fi
  rm -rf "$staging"
  local environment
  mapfile -t environment < <(job_environment)
  if jobid="$(cd "$workdir" && as_job_user env -i "${environment[@]}" "$SBATCH" --parsable --export=ALL \
      --job-name="jb-$folder" --comment="jb:$token" --chdir="$workdir" "$JOB_SCRIPT" 2> "$journal/sbatch.err")"; then
    record_submitted "$journal" "$folder" "${jobid%%;*}"
    # A job quicker than its submission: its epilog found no job id recorded yet, so settle it here.
    settle_if_ended "$journal"
  else
    record_error "$journal" "$folder" "sbatch failed: $(cat "$journal/sbatch.err")"
  fi
}

settle_if_ended() {  # settle_if_ended JOURNAL: its job, if Slurm says it ended (the caller holds the job lock)
  local jobid info status=0
  [[ -f "$1/jobid" && "$(cat "$1/state" 2> /dev/null)" == JOB_SUBMIT ]] || return 0
  jobid="$(cat "$1/jobid")"
  info="$(slurm_state "$jobid")" || status=$?
  if (( status == 0 )) && [[ "$FINAL_SLURM_STATES" == *" ${info%%|*} "* ]]; then
    finish "$1" "$jobid" "${info%%|*}" "reason: ${info#*|}"
  fi
}

is_new() {  # is_new KEY ETAG LAST_MODIFIED: true unless this upload of the state file was settled already
  local folder="${1#"$PREFIX"}" journal
  folder="${folder%"/$STATE_FILE"}"
  journal="$(journal_of "$folder")"
  [[ ! -f "$journal/seen" || "$(cat "$journal/seen")" != "$(token_of "$1" "$2" "$3")" ]]
}

handle_key() {  # handle_key KEY ETAG LAST_MODIFIED [BODY]: a state-file object as listed or as in an event (BODY:
  local key="$1" folder token journal state  # its first bytes, already read with that ETag)
  [[ "$key" == "$PREFIX"*"/$STATE_FILE" ]] || return 0
  folder="${key#"$PREFIX"}"
  folder="${folder%"/$STATE_FILE"}"
  token="$(token_of "$key" "$2" "$3")"
  journal="$(journal_of "$folder")"
  [[ -f "$journal/seen" && "$(cat "$journal/seen")" == "$token" ]] && return 0  # nothing new
  lock_job "$journal"
  if [[ -n "${4:-}" ]]; then
    state="$(head -n 1 "$4" | tr -d '\r')"
  elif ! state="$("$AWS" s3 cp "s3://$BUCKET/$key" - 2> /dev/null | head -n 1 | tr -d '\r')"; then
    log "$folder: could not read $STATE_FILE (retried by the next sweep)"
    return 0
  fi
  if [[ "$state" == FILE_UPLOAD ]]; then
    local status=0
    submit_upload "$folder" "$key" "$token" "$journal" "$2" || status=$?
    (( status != 75 )) || return 0  # not settled: not seen, so the next sweep takes it again
  fi
  printf '%s\n' "$token" > "$journal/seen"
}

collect_results() {  # collect_results JOURNAL FOLDER: regular files of the work folder, read by JOB_USER, to S3
  local journal="$1" name="$2" workdir="$WORK_ROOT/${2#*/}" out attempt options
  mapfile -t options < <(excludes)
  if path_has_symlink "$workdir" || [[ ! -d "$workdir" ]]; then
    printf 'no work folder to read\n' > "$journal/results"
    return 1
  fi
  # The job user reads its own regular files and streams them (tar) to root, which unpacks them into a
  # folder only root can reach and keeps regular files only: root never opens a path the job user can
  # change (no link swapped in during the upload, no FIFO to block on). A file the job user cannot read
  # is left out; a copy cut short by a full disk makes the results incomplete, never complete.
  out="$(mktemp -d "$SPOOL/staging/out.XXXXXX")"
  chmod 0700 "$out"
  local errors="$SPOOL/staging/errors.$$" statuses
  set +e
  (cd "$workdir" && as_job_user find . -type f -print0 \
    | as_job_user timeout "$COLLECT_TIMEOUT" tar --null -T - -cf -) 2> "$errors" \
    | timeout "$COLLECT_TIMEOUT" tar -C "$out" -xf - --no-same-owner --no-same-permissions 2>> "$errors"
  statuses=("${PIPESTATUS[@]}")
  set -e
  find "$out" -mindepth 1 ! -type f ! -type d -delete  # a crafted stream's links, devices and FIFOs
  local copy_errors
  copy_errors="$(head -c 600 "$errors")"
  rm -f "$errors"
  if (( statuses[1] != 0 )); then  # root could not write what the job user handed over: a full disk, mostly
    printf 'the results could not be staged completely on the head node (%s of %s used: %s); they stay in %s\n' \
      "$(df -P "$out" | awk 'NR == 2 {print $5}')" "$SPOOL/staging" "${copy_errors//$'\n'/ }" "$workdir" \
      > "$journal/results"
    rm -rf "$out"
    return 1
  fi
  [[ -z "$copy_errors" ]] || log "$name: some result files could not be read: ${copy_errors:0:300}"
  if ! state_is_ours "$journal" "$name"; then  # the user's new upload: its files are not overwritten with old ones
    rm -rf "$out"
    printf 'a new upload of the folder arrived before the job ended: its results were not uploaded; they stay in %s\n' \
      "$workdir" > "$journal/results"
    return 1
  fi
  for attempt in 1 2 3; do
    # Results first, state last: JOB_COMPLETE is never visible before the results are.
    if "$AWS" s3 sync "$out" "$(s3_url "$name/")" "${options[@]}" --no-follow-symlinks --only-show-errors; then
      rm -rf "$out"
      printf 'uploaded\n' > "$journal/results"
      return 0
    fi
    sleep $((attempt * 2))
  done
  rm -rf "$out"
  printf 'the results could not be uploaded; they stay in %s\n' "$workdir" > "$journal/results"
  return 1
}

finish() {  # finish JOURNAL JOBID SLURM_STATE REASON: final state, results first (under the job lock)
  local journal="$1" name slurm_state="$3" reason="$4"
  [[ "$(cat "$journal/jobid" 2> /dev/null)" == "$2" ]] || return 0  # a newer upload took the folder over
  [[ "$(rank "$(cat "$journal/state" 2> /dev/null || echo FILE_UPLOAD)")" == 2 ]] && return 0
  name="$(cat "$journal/name")"
  if [[ "$slurm_state" == COMPLETED && "$(cat "$journal/results" 2> /dev/null)" == uploaded ]]; then
    set_state "$journal" "$name" JOB_COMPLETE  # only over our own last write (If-Match): a new upload stays
    return
  fi
  if ! state_is_ours "$journal" "$name"; then  # a new request of the folder: this run ends without writing over it
    log "$name: job $2 ended ($slurm_state) after a new upload of the folder: not written over it"
    if [[ "$slurm_state" == COMPLETED ]]; then echo JOB_COMPLETE; else echo JOB_FAILED; fi > "$journal/state"
    return 0
  fi
  [[ -f "$journal/results" ]] || collect_results "$journal" "$name" || true  # no epilog ran (e.g. cancelled pending)
  if [[ "$slurm_state" == COMPLETED && "$(cat "$journal/results")" == uploaded ]]; then
    set_state "$journal" "$name" JOB_COMPLETE
    return
  fi
  if [[ "$(cat "$journal/results")" != uploaded ]]; then
    reason="$reason; $(cat "$journal/results")"
  fi
  put_text "$name" "$REASON_FILE" "Slurm job $2: $slurm_state ($reason)" || true
  set_state "$journal" "$name" JOB_FAILED
}

settle() {  # settle JOURNAL JOBID SLURM_STATE REASON: finish under the job lock, as the job's submitter
  lock_job "$1"
  local folder
  folder="$(cat "$1/name")"
  use_submitter "${folder%%/*}" || return 0
  finish "$@"
}

slurm_state() {  # slurm_state JOBID: "STATE|REASON" (status 0); status 1: Slurm answered that it does not know
  local out errors status=0  # the job; status 2: Slurm did not answer (a controller down is not a job's end)
  errors="$(mktemp "$SPOOL/squeue.XXXXXX")"
  out="$("$SQUEUE" -h --states=all -j "$1" -o '%T|%r' 2> "$errors")" || status=$?
  if (( status == 0 )) && [[ -n "$out" ]]; then
    rm -f "$errors"
    printf '%s\n' "${out%%$'\n'*}"
    return 0
  fi
  if (( status == 0 )) || grep -q 'Invalid job id' "$errors"; then
    rm -f "$errors"
    return 1
  fi
  log "job $1: Slurm did not answer: $(head -c 300 "$errors")"
  rm -f "$errors"
  return 2
}

retry_record() {  # retry_record JOURNAL: a submission whose job id could not be written to S3
  lock_job "$1"
  [[ -f "$1/jobid" && "$(cat "$1/state" 2> /dev/null)" == FILE_UPLOAD ]] || return 0
  record_submitted "$1" "$(cat "$1/name")" "$(cat "$1/jobid")"
}

reconcile() {  # every job in flight whose end no epilog reported: settle it from Slurm's record
  local journal jobid info status
  for journal in "$SPOOL"/jobs/*/; do
    journal="${journal%/}"
    if [[ -f "$journal/jobid" && "$(cat "$journal/state" 2> /dev/null)" == FILE_UPLOAD ]]; then
      isolated retry_record "$journal"
    fi
    [[ -f "$journal/jobid" && "$(cat "$journal/state" 2> /dev/null)" == JOB_SUBMIT ]] || continue
    jobid="$(cat "$journal/jobid")"
    status=0
    info="$(slurm_state "$jobid")" || status=$?
    if (( status == 1 )); then
      isolated settle "$journal" "$jobid" UNKNOWN "Slurm no longer knows the job and no epilog reported its end"
    elif (( status == 0 )) && [[ "$FINAL_SLURM_STATES" == *" ${info%%|*} "* ]]; then
      isolated settle "$journal" "$jobid" "${info%%|*}" "reason: ${info#*|}"
    fi  # status 2: Slurm did not answer; the next sweep asks again
  done
}

cmd_submit() {  # cmd_submit --key KEY
  [[ "${1:-}" == --key && -n "${2:-}" ]] || { log "usage: $0 submit --key KEY"; exit 2; }
  load_conf
  # Only this upload's folder is locked (lock_job): an event never waits for the sweep or for other folders,
  # and its work is bounded by its one upload. Everything else is the sweep's.
  # One read gives the state and the ETag and time of that same upload; only its first bytes: a state file is one
  # word, and a huge one must not fill the head node's disk.
  local meta body
  body="$(mktemp "$SPOOL/staging/in.XXXXXX")"
  if meta="$("$AWS" s3api get-object --bucket "$BUCKET" --key "$2" --range bytes=0-255 "$body" \
      --query '[ETag,LastModified]' --output text)"; then
    isolated handle_key "$2" "${meta%%$'\t'*}" "${meta#*$'\t'}" "$body"
  else
    log "could not read $2 (the sweep retries)"
  fi
  rm -f "$body"
}

cmd_sweep() {
  load_conf
  exec 9> "$LOCK"
  flock 9
  local listing line etag modified key
  # One row per object: ETag, LastModified, then the key (last, so a key may hold tabs).
  if ! listing="$("$AWS" s3api list-objects-v2 --bucket "$BUCKET" --prefix "$PREFIX" \
      --query "Contents[?ends_with(Key, '/$STATE_FILE')].[ETag,LastModified,Key]" --output text)"; then
    log "could not list s3://$BUCKET/$PREFIX"
    exit 1
  fi
  local -a new=()
  while IFS= read -r line; do
    [[ -n "$line" && "$line" != None ]] || continue
    etag="${line%%$'\t'*}"
    line="${line#*$'\t'}"
    modified="${line%%$'\t'*}"
    key="${line#*$'\t'}"
    if is_new "$key" "$etag" "$modified"; then
      new+=("$etag"$'\t'"$modified"$'\t'"$key")
    fi
  done <<< "$listing"
  # Submitters take turns: the first new upload of each, then the second of each, ...; at most SWEEP_BATCH per
  # sweep, so one submitter's backlog neither delays the others nor makes a sweep unbounded.
  local -a batch=()
  if (( ${#new[@]} )); then
    mapfile -t batch < <(printf '%s\n' "${new[@]}" | awk -F'\t' -v prefix="$PREFIX" '{
        who = substr($3, length(prefix) + 1); sub(/\/.*/, "", who); turn[who]++; printf "%d\t%s\n", turn[who], $0 }' \
      | sort -s -t$'\t' -k1,1n | cut -f2- | head -n "$SWEEP_BATCH")
  fi
  (( ${#new[@]} <= SWEEP_BATCH )) || log "$(( ${#new[@]} - SWEEP_BATCH )) more uploads wait for the next sweep"
  for line in "${batch[@]}"; do
    etag="${line%%$'\t'*}"
    line="${line#*$'\t'}"
    modified="${line%%$'\t'*}"
    key="${line#*$'\t'}"
    isolated handle_key "$key" "$etag" "$modified"
  done
  reconcile
  clean_staging
}

clean_staging() {  # staged copies older than an hour: what a killed submitter or epilog left behind
  find "$SPOOL/staging" -mindepth 1 -maxdepth 1 \( -name 'in.*' -o -name 'out.*' \) -mmin +60 \
    -exec rm -rf -- {} + 2> /dev/null || true
}

cmd_epilog() {  # cmd_epilog JOB_NAME JOB_ID JOB_UID (passed by the epilog wrapper)
  load_conf
  local name="${1:-}" job_id="${2:-}" uid="${3:-}" journal
  [[ "$name" == jb-*/* ]] || exit 0  # not a bridged job
  name="${name#jb-}"
  [[ "${name#*/}" =~ $NAME_PATTERN ]] && use_submitter "${name%%/*}" || exit 0
  journal="$(journal_of "$name")"
  # Only the job the bridge submitted for this folder, run by its submitter's user: a job of any user named
  # jb-<folder> is not it.
  if [[ "$(cat "$journal/jobid" 2> /dev/null)" != "$job_id" || "$uid" != "$JOB_UID" ]]; then
    log "job $job_id (uid $uid) is not the bridged job of $name: ignored"
    exit 0
  fi
  lock_job "$journal"
  collect_results "$journal" "$name" || log "$name: $(cat "$journal/results")"
  exec 8>&-
  # Slurm settles the job's final state after this epilog: wait for it apart from slurmctld.
  setsid "$0" finalize "$job_id" < /dev/null >> "$SPOOL/finalize.log" 2>&1 &
}

cmd_finalize() {  # cmd_finalize JOB_ID
  load_conf
  local job_id="$1" journal="" candidate info="" waited=0 status
  for candidate in "$SPOOL"/jobs/*/; do
    [[ "$(cat "$candidate/jobid" 2> /dev/null)" == "$job_id" ]] && journal="${candidate%/}"
  done
  [[ -n "$journal" ]] || exit 0
  while (( waited < FINALIZE_WAIT )); do
    status=0
    info="$(slurm_state "$job_id")" || status=$?
    if (( status == 1 )) || { (( status == 0 )) && [[ "$FINAL_SLURM_STATES" == *" ${info%%|*} "* ]]; }; then
      break
    fi
    sleep 1
    waited=$((waited + 1))
  done
  [[ -n "$info" && "$FINAL_SLURM_STATES" == *" ${info%%|*} "* ]] || exit 0  # the sweep settles it later
  settle "$journal" "$job_id" "${info%%|*}" "reason: ${info#*|}"
}

cmd_install() {
  local bucket="$1" prefix="$2" submitters="$3" root="${ROOT:-}" dir conf spec name user uid actual
  [[ -n "$submitters" ]] || { log "no submitters"; exit 2; }
  for spec in $submitters; do  # made by job_users.sh (run first by the installing SSM document)
    IFS=: read -r name user uid <<< "$spec"
    actual=""
    if [[ "$user" == root || "$uid" == 0 || "$spec" == root ]] \
        || { actual="$(id -u "$user" 2> /dev/null)" && [[ "$actual" == 0 ]]; }; then
      log "refusing job user ${user:-$spec}: jobs must not run as root"
      exit 2
    fi
    if [[ ! "$spec" =~ ^[A-Za-z0-9+=,.@_-]{1,64}:jb-[a-z0-9_-]{1,29}:[0-9]{4,9}$ ]]; then
      log "not a submitter NAME:jb-USER:UID: '$spec'"
      exit 2
    fi
    if [[ -z "$root" && "$actual" != "$uid" ]]; then
      log "job user $user of submitter $name does not exist with uid $uid on this node (job_users.sh makes it)"
      exit 2
    fi
  done
  dir="$root/opt/job-bridge"
  conf="$root/etc/job-bridge.conf"
  mkdir -p "$dir" "$root/etc"
  install -m 0755 "$0" "$dir/job_bridge.sh.new" && mv "$dir/job_bridge.sh.new" "$dir/job_bridge.sh"
  {
    printf 'BUCKET=%q\nPREFIX=%q\nSUBMITTERS=%q\n' "$bucket" "$prefix" "$submitters"
    # Run Command, slurmctld and systemd start us with a minimal PATH (expanded when the conf is read).
    # shellcheck disable=SC2016
    printf 'export PATH=/usr/local/bin:/usr/bin:/bin:/opt/slurm/bin:${PATH:-}\n'
  } > "$conf.new"
  chmod 0644 "$conf.new"
  mv "$conf.new" "$conf"
  # EpilogSlurmctld takes a program without arguments, run as SlurmUser (slurm). ParallelCluster's
  # secured IMDS gives AWS credentials to root only, so the wrapper hands the job over through sudo,
  # passing what it needs as arguments (sudo clears the environment).
  cat > "$dir/epilog.new" <<EPILOG
#!/bin/sh
set -- "\${SLURM_JOB_NAME:-}" "\${SLURM_JOB_ID:-}" "\${SLURM_JOB_UID:-}"
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
  # The sweep: missed events, and jobs that ended without an epilog (cancelled while pending).
  mkdir -p "$root/etc/systemd/system"
  printf '[Unit]\nDescription=Job bridge sweep\n\n[Service]\nType=oneshot\nExecStart=/opt/job-bridge/job_bridge.sh sweep\n' \
    > "$root/etc/systemd/system/job-bridge-sweep.service"
  printf '[Unit]\nDescription=Job bridge sweep every minute\n\n[Timer]\nOnBootSec=60\nOnUnitActiveSec=60\n\n[Install]\nWantedBy=timers.target\n' \
    > "$root/etc/systemd/system/job-bridge-sweep.timer"
  if [[ -z "$root" ]]; then
    systemctl daemon-reload
    systemctl enable --now job-bridge-sweep.timer
  fi
  log "installed in $dir (bucket $bucket, prefix $prefix, submitters $submitters)"
}

cmd_uninstall() {  # what cmd_install put in place; the spool (which uploads were settled) and the job users stay
  local root="${ROOT:-}" removed=()
  if [[ -z "$root" && -e /etc/systemd/system/job-bridge-sweep.timer ]]; then
    systemctl disable --now job-bridge-sweep.timer || true
  fi
  local path
  for path in /etc/systemd/system/job-bridge-sweep.timer /etc/systemd/system/job-bridge-sweep.service \
      /etc/sudoers.d/job-bridge /etc/job-bridge.conf /opt/job-bridge; do
    if [[ -e "$root$path" || -L "$root$path" ]]; then
      rm -rf -- "$root$path"
      removed+=("$path")
    fi
  done
  if [[ -z "$root" && ${#removed[@]} -gt 0 ]]; then
    systemctl daemon-reload || true
  fi
  if (( ${#removed[@]} )); then
    log "uninstalled: ${removed[*]}"
  else
    log "not installed: nothing to remove"
  fi
}

case "${1:-}" in
  submit) shift; cmd_submit "$@" ;;
  sweep) cmd_sweep ;;
  epilog) shift; cmd_epilog "$@" ;;
  finalize) shift; cmd_finalize "$@" ;;
  uninstall) cmd_uninstall ;;
  install)
    [[ $# -eq 4 ]] || { log "usage: $0 install BUCKET PREFIX 'NAME:USER:UID ...'"; exit 2; }
    cmd_install "$2" "$3" "$4"
    ;;
  *) log "usage: $0 install BUCKET PREFIX SUBMITTERS | uninstall | submit --key KEY | sweep | epilog NAME ID UID | finalize ID"; exit 2 ;;
esac
