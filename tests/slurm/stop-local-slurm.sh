#!/usr/bin/env bash
# Stop the daemons that start-local-slurm.sh started -- and only those.
#
# Reads the pids recorded in $STATE_DIR, newest first; for each one checks
# that /proc/PID/comm still names the expected daemon (pid reuse), sends
# SIGTERM, waits up to 15 s and then sends SIGKILL to that pid alone. No
# pkill/killall. Daemons that were running before start-local-slurm.sh (and
# so were not recorded) are left alone. Before stopping a slurmctld it
# started, it cancels the jobs still queued or running on the test cluster.
#
# When it stops a slurmctld it started, it also moves the slurm.conf that
# start-local-slurm.sh wrote to slurm.conf.stopped: with a slurm.conf but no
# controller, `scontrol show config` blocks ~9 s, and the Snakemake SLURM
# plugin runs it on import, i.e. on every `snakemake` start. The next start
# writes the file again.
#
# Quiet on success (VERBOSE=1 to narrate).
#
# Environment:
#   STATE_DIR=/run/local-slurm   the same as for start-local-slurm.sh
#   PURGE_STATE=0                1: also wipe the slurmctld/slurmd spool dirs
#   KEEP_CONF=0                  1: leave /etc/slurm/slurm.conf in place
#   VERBOSE=0
set -uo pipefail

STATE_DIR=${STATE_DIR:-/run/local-slurm}
PURGE_STATE=${PURGE_STATE:-0}
KEEP_CONF=${KEEP_CONF:-0}
VERBOSE=${VERBOSE:-0}
log() { [ "$VERBOSE" = 1 ] && printf '[local-slurm] %s\n' "$*" >&2 || true; }
warn() { printf 'stop-local-slurm.sh: %s\n' "$*" >&2; }

[ -s "$STATE_DIR/pids" ] || {
  log "nothing recorded in $STATE_DIR/pids"
  exit 0
}

comm_of() { cat /proc/"$1"/comm 2>/dev/null || true; }
recorded_pid() { [ -s "$STATE_DIR/$1.pid" ] && cat "$STATE_DIR/$1.pid"; }

# slurmstepd of running jobs would outlive slurmd: cancel the jobs first
if pid=$(recorded_pid slurmctld) && [ "$(comm_of "$pid")" = slurmctld ]; then
  jobs=$(timeout 10 squeue -h -o %i -t PENDING,RUNNING,CONFIGURING,COMPLETING 2>/dev/null || true)
  if [ -n "$jobs" ]; then
    log "cancelling jobs $(echo $jobs)"
    # shellcheck disable=SC2086  # one argument per job id
    timeout 10 scancel $jobs 2>/dev/null || true
    for _ in $(seq 40); do
      [ -z "$(timeout 5 squeue -h -o %i -t RUNNING,COMPLETING 2>/dev/null)" ] && break
      sleep 0.25
    done
  fi
fi

status=0
stop_one() { # stop_one NAME
  local pid
  pid=$(recorded_pid "$1") || return 0
  if [ "$(comm_of "$pid")" != "$1" ]; then
    log "$1 (pid $pid) is not running any more"
  else
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 60); do
      [ "$(comm_of "$pid")" = "$1" ] || break
      sleep 0.25
    done
    if [ "$(comm_of "$pid")" = "$1" ]; then
      # e.g. slurmd sits ~2 min in a registration retry once slurmctld is gone
      log "$1 (pid $pid) ignored SIGTERM for 15 s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null
      sleep 0.5
    fi
    if [ "$(comm_of "$pid")" = "$1" ]; then
      warn "could not stop $1 (pid $pid)"
      status=1
      return 0
    fi
    log "stopped $1 (pid $pid)"
  fi
  rm -f "$STATE_DIR/$1.pid"
}

ours_ctld=0
grep -qx slurmctld "$STATE_DIR/pids" && ours_ctld=1

# reverse start order: slurmd, slurmctld, slurmdbd, mariadbd, munged
for name in $(tac "$STATE_DIR/pids"); do stop_one "$name"; done
[ "$status" = 0 ] && : >"$STATE_DIR/pids"

conf=/etc/slurm/slurm.conf
if [ "$status" = 0 ] && [ "$ours_ctld" = 1 ] && [ "$KEEP_CONF" != 1 ] &&
  head -1 "$conf" 2>/dev/null | grep -q '^# written by tests/slurm/start-local-slurm.sh'; then
  mv "$conf" "$conf.stopped"
  log "moved $conf to $conf.stopped"
fi

if [ "$PURGE_STATE" = 1 ]; then
  rm -rf /var/spool/slurmctld/* /var/spool/slurmd/*
  log "purged the slurm spool dirs"
fi
exit "$status"
