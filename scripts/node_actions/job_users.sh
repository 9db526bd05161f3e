#!/usr/bin/env bash
# The job bridge's users on a cluster node (head node: its installer; compute nodes: first in every
# queue's OnNodeStart, before the scheduler is configured; /home may not be mounted yet there): one unprivileged Linux user per submitter, with the same uid on every node, no
# password, no sudo, home folder 0700 on the shared /home. Idempotent.
#
#   job_users.sh NAME:USER:UID ...    (job_bridge/submitters.py makes these; the uid comes from the name)
#
# It fails, and so fails the node's bootstrap, rather than let jobs run as a user other than the one the
# bridge expects: a name or uid held by someone else, or a user that may use sudo.
# HOME_ROOT (default /home) exists for tests.
set -euo pipefail
umask 022
HOME_ROOT="${HOME_ROOT:-/home}"
ADMIN_GROUPS=" sudo wheel admin "

fail() {
  echo "job_users: $*" >&2
  exit 1
}

ensure_user() {  # ensure_user NAME USER UID
  local name="$1" user="$2" uid="$3" existing holder group
  if existing="$(id -u "$user" 2> /dev/null)"; then
    [[ "$existing" == "$uid" ]] || fail "user $user exists with uid $existing; the job bridge needs uid $uid on every node"
  else
    holder="$(getent passwd "$uid" | cut -d: -f1)" || true
    [[ -z "$holder" ]] || fail "uid $uid, which the job bridge derives for $user, belongs to $holder on this node"
    if group="$(getent group "$user")"; then
      [[ "$(cut -d: -f3 <<< "$group")" == "$uid" ]] || fail "group $user exists with another gid than $uid"
    else
      holder="$(getent group "$uid" | cut -d: -f1)" || true
      [[ -z "$holder" ]] || fail "gid $uid, which the job bridge derives for $user, belongs to group $holder on this node"
      groupadd --gid "$uid" "$user"
    fi
    # No password (locked), no SSH key, no supplementary group: reachable only through the bridge's sbatch.
    useradd --uid "$uid" --gid "$uid" --no-create-home --home-dir "$HOME_ROOT/$user" --shell /bin/bash \
      --comment "job bridge submitter $name" "$user"
  fi
  if [[ "$(getent passwd "$user" | cut -d: -f6)" != "$HOME_ROOT/$user" ]]; then
    usermod --home "$HOME_ROOT/$user" "$user"  # jobs start in the home the bridge gives them (HOME)
  fi
  local each
  for each in $(id -nG "$user"); do
    [[ "$ADMIN_GROUPS" != *" $each "* ]] || fail "$user is in group $each, whose members may use sudo: refusing to run jobs as it"
  done
  if command -v sudo > /dev/null && sudo -n -l -U "$user" 2> /dev/null | grep -q 'may run the following'; then
    fail "$user may run commands with sudo (sudo -l -U $user): refusing to run jobs as it"
  fi
  local home="$HOME_ROOT/$user"
  [[ ! -L "$home" ]] || fail "$home is a symbolic link"
  if [[ ! -d "$home" ]]; then
    install -d -m 0700 -o "$user" -g "$user" "$home"
  fi
  chown "$user:$user" "$home"
  chmod 0700 "$home"  # other submitters' jobs and local users read nothing of it
}

for spec in "$@"; do
  IFS=: read -r name user uid rest <<< "$spec"
  if [[ "$user" == root || "$uid" == 0 ]]; then
    fail "refusing job user $user (uid $uid): jobs must not run as root"
  fi
  [[ -z "$rest" && "$name" =~ ^[A-Za-z0-9+=,.@_-]{1,64}$ && "$user" =~ ^jb-[a-z0-9_-]{1,29}$ && "$uid" =~ ^[0-9]{4,9}$ ]] \
    || fail "not a submitter NAME:jb-USER:UID: '$spec'"
  ensure_user "$name" "$user" "$uid"
done
