#!/usr/bin/env bash
# Start a real single-node SLURM cluster on this machine for tests and CI.
#
# Debian 12, run as root, no systemd needed. Idempotent: installs missing
# packages, (re)writes the config, starts only the daemons that are not
# running, restarts slurmctld/slurmd when the config changed, and waits until
# the node is idle. Every pid it starts is recorded in $STATE_DIR, so that
# stop-local-slurm.sh stops exactly those processes and nothing else.
#
# Daemons: munged, mariadbd (unix socket only), slurmdbd (so that `sacct`
# works -- the Snakemake SLURM plugin polls it), slurmctld, slurmd.
# One node, in two partitions ($PARTITION, default; $GPU_PARTITION), with
# $FAKE_GPUS fake GPUs (gres File= symlinks to /dev/null), so `--gpus=1` and
# `--gres=gpu:1` are scheduled and jobs get CUDA_VISIBLE_DEVICES.
#
# Quiet on success (VERBOSE=1 to narrate); on failure it names the step and
# prints the tail of the relevant log. Exit status 0 = cluster ready.
#
# Environment:
#   STATE_DIR=/run/local-slurm   pid records and logs of this script
#   PARTITION=debug              default partition
#   GPU_PARTITION=gpu            second partition on the same node
#   ACCOUNT=unet                 SLURM account created for root (with `root`)
#   FAKE_GPUS=1                  number of fake GPUs (>= 1)
#   SKIP_APT=0                   1: never call apt-get, fail if binaries are missing
#   SMOKE=1                      0: skip the srun/sacct smoke test
#   WAIT_IDLE_S=60               how long to wait for the node to become idle
#   VERBOSE=0
set -euo pipefail

STATE_DIR=${STATE_DIR:-/run/local-slurm}
PARTITION=${PARTITION:-debug}
GPU_PARTITION=${GPU_PARTITION:-gpu}
ACCOUNT=${ACCOUNT:-unet}
FAKE_GPUS=${FAKE_GPUS:-1}
SKIP_APT=${SKIP_APT:-0}
SMOKE=${SMOKE:-1}
WAIT_IDLE_S=${WAIT_IDLE_S:-60}
VERBOSE=${VERBOSE:-0}
CLUSTER=localcluster
DB_PASS=slurmlocalpw # MariaDB user reachable only through the local socket
LOGS=/var/log/slurm

t0=$(date +%s)
log() { [ "$VERBOSE" = 1 ] && printf '[local-slurm] %s\n' "$*" >&2 || true; }
die() { # die MESSAGE [LOGFILE]: print the error and the last lines of LOGFILE
  printf 'start-local-slurm.sh: ERROR: %s\n' "$1" >&2
  if [ -n "${2:-}" ] && [ -s "$2" ]; then
    printf -- '--- last lines of %s ---\n' "$2" >&2
    tail -n 15 "$2" >&2
  fi
  exit 1
}

[ "$(id -u)" = 0 ] || die "must run as root (it installs packages and starts daemons)"
[ "$FAKE_GPUS" -ge 1 ] 2>/dev/null || die "FAKE_GPUS must be >= 1, got '$FAKE_GPUS'"
mkdir -p "$STATE_DIR"
touch "$STATE_DIR/pids"
# one start at a time (the daemons must not inherit fd 9, see 9>&- below)
exec 9>"$STATE_DIR/lock"
flock -w 300 9 || die "another start-local-slurm.sh holds $STATE_DIR/lock"

# ---------------------------------------------------------------- install ---
need=()
command -v slurmctld >/dev/null || need+=(slurmctld)
command -v slurmd >/dev/null || need+=(slurmd)
command -v sbatch >/dev/null || need+=(slurm-client)
command -v munged >/dev/null || need+=(munge)
command -v slurmdbd >/dev/null || need+=(slurmdbd)
command -v mariadbd >/dev/null || need+=(mariadb-server)
if [ ${#need[@]} -gt 0 ]; then
  [ "$SKIP_APT" = 1 ] && die "missing packages (SKIP_APT=1): ${need[*]}"
  command -v apt-get >/dev/null || die "missing packages and no apt-get: ${need[*]}"
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # there is no service manager: keep the packages' postinst scripts from
  # starting daemons (we start them ourselves below)
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt_log=$STATE_DIR/apt.log
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}"; } \
    >"$apt_log" 2>&1 || die "apt-get install ${need[*]} failed" "$apt_log"
fi
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd "$LOGS" /run/slurm

# --------------------------------------------------------- pid bookkeeping ---
# The daemons delete their own pid files on exit and may have been started by
# someone else, so we keep our own record and always check /proc/PID/comm.
alive() { # alive NAME [PIDFILE]: print the pid of a running NAME, if any
  local f pid
  for f in "$STATE_DIR/$1.pid" "${2:-/nonexistent}"; do
    [ -s "$f" ] || continue
    pid=$(cat "$f")
    if [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = "$1" ]; then
      echo "$pid"
      return 0
    fi
  done
  return 1
}
record() { # record NAME PID
  echo "$2" >"$STATE_DIR/$1.pid"
  grep -qx "$1" "$STATE_DIR/pids" || echo "$1" >>"$STATE_DIR/pids"
  log "started $1 (pid $2)"
}
stop_pid() { # stop_pid NAME PID: SIGTERM, 15 s, then SIGKILL that pid only
  [ "$(cat /proc/"$2"/comm 2>/dev/null)" = "$1" ] || return 0
  kill -TERM "$2" 2>/dev/null || return 0
  for _ in $(seq 60); do kill -0 "$2" 2>/dev/null || return 0; sleep 0.25; done
  kill -KILL "$2" 2>/dev/null || true
}
wait_pidfile() { # wait_pidfile FILE: print its pid once it exists (10 s)
  for _ in $(seq 100); do
    [ -s "$1" ] && { cat "$1"; return 0; }
    sleep 0.1
  done
  return 1
}
install_if_changed() { # install_if_changed MODE NEWFILE DEST: 0 if changed
  if cmp -s "$2" "$3"; then rm -f "$2"; return 1; fi
  install -m "$1" "$2" "$3"
  rm -f "$2"
}

# ------------------------------------------------------------------ munge ---
if [ ! -s /etc/munge/munge.key ]; then
  mkdir -p /etc/munge
  mungekey --create --keyfile=/etc/munge/munge.key --force
  chown munge:munge /etc/munge/munge.key
  chmod 0400 /etc/munge/munge.key
fi
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
if ! alive munged /run/munge/munged.pid >/dev/null; then
  runuser -u munge -- /usr/sbin/munged 9>&- || die "munged did not start" /var/log/munge/munged.log
  pid=$(wait_pidfile /run/munge/munged.pid) || die "munged wrote no pid file" /var/log/munge/munged.log
  record munged "$pid"
fi
munge -n | unmunge >/dev/null 2>&1 || die "munge round trip failed" /var/log/munge/munged.log

# ----------------------------------------------------------------- config ---
NODE=$(hostname -s)
# CPU topology as slurmd sees it; memory is set below (90 % of MemTotal)
HW=$(slurmd -C | head -1 | sed -e 's/^NodeName=[^ ]* //' -e 's/ RealMemory=[0-9]*//')
MEM_MB=$(awk '/MemTotal/{printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
if [ "$FAKE_GPUS" = 1 ]; then GPU_FILES=/var/lib/local-slurm/fakegpu0
else GPU_FILES="/var/lib/local-slurm/fakegpu[0-$((FAKE_GPUS - 1))]"; fi
conf_changed=0

tmp=$(mktemp)
cat >"$tmp" <<EOF
# written by tests/slurm/start-local-slurm.sh -- single-node test cluster
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
MailProg=/bin/true
# no cgroups: nothing is confined, memory requests only steer scheduling
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# without a default a job that passes no --mem gets the whole node
DefMemPerCPU=512
SchedulerType=sched/backfill
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=10
Waittime=0
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
# gres/gpu as a TRES: sacct then shows gres/gpu=N in AllocTRES; job_comment:
# sacct shows the Comment, where the Snakemake plugin writes rule_<rule>
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
GresTypes=gpu
NodeName=$NODE NodeAddr=127.0.0.1 $HW RealMemory=$MEM_MB Gres=gpu:$FAKE_GPUS State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=$GPU_PARTITION Nodes=$NODE Default=NO MaxTime=INFINITE State=UP
EOF
install_if_changed 0644 "$tmp" /etc/slurm/slurm.conf && conf_changed=1

# slurmd rejects a gres File= that is a plain file (and then sets no
# CUDA_VISIBLE_DEVICES); a symlink to /dev/null passes as a character device
mkdir -p /var/lib/local-slurm
for i in $(seq 0 $((FAKE_GPUS - 1))); do ln -sfn /dev/null /var/lib/local-slurm/fakegpu"$i"; done
tmp=$(mktemp)
echo "NodeName=$NODE Name=gpu File=$GPU_FILES" >"$tmp"
install_if_changed 0644 "$tmp" /etc/slurm/gres.conf && conf_changed=1

# ------------------------------------------------------ MariaDB, slurmdbd ---
install -d -o mysql -g root -m 0755 /run/mysqld
if [ ! -d /var/lib/mysql/mysql ]; then
  mariadb-install-db --user=mysql --datadir=/var/lib/mysql >"$STATE_DIR/mariadb-install.log" 2>&1 ||
    die "mariadb-install-db failed" "$STATE_DIR/mariadb-install.log"
fi
if ! alive mariadbd /run/mysqld/mysqld.pid >/dev/null; then
  # unix socket only, no TCP listener
  nohup /usr/sbin/mariadbd --user=mysql --pid-file=/run/mysqld/mysqld.pid \
    --socket=/run/mysqld/mysqld.sock --skip-networking \
    --log-error="$LOGS/mariadb.err" >/dev/null 2>&1 9>&- &
  record mariadbd $!
  for _ in $(seq 120); do mariadb -e 'select 1' >/dev/null 2>&1 && break; sleep 0.25; done
fi
mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
  CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
  GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;" 2>/dev/null ||
  die "mariadb is not answering on /run/mysqld/mysqld.sock" "$LOGS/mariadb.err"

tmp=$(mktemp)
cat >"$tmp" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
PidFile=/run/slurm/slurmdbd.pid
LogFile=$LOGS/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
dbd_changed=0
install_if_changed 0600 "$tmp" /etc/slurm/slurmdbd.conf && dbd_changed=1
if pid=$(alive slurmdbd /run/slurm/slurmdbd.pid) && [ "$dbd_changed" = 1 ]; then
  log "slurmdbd.conf changed: restarting slurmdbd"
  stop_pid slurmdbd "$pid"
fi
if ! alive slurmdbd /run/slurm/slurmdbd.pid >/dev/null; then
  rm -f /run/slurm/slurmdbd.pid
  slurmdbd 9>&- || die "slurmdbd did not start" "$LOGS/slurmdbd.log"
  pid=$(wait_pidfile /run/slurm/slurmdbd.pid) || die "slurmdbd wrote no pid file" "$LOGS/slurmdbd.log"
  record slurmdbd "$pid"
fi
# cluster, account and user must exist in the database before slurmctld
# registers; client calls are bounded since they retry for minutes otherwise
for _ in $(seq 60); do timeout 5 sacctmgr -n list cluster >/dev/null 2>&1 && break; sleep 0.5; done
have() { [ -n "$(timeout 10 sacctmgr -n -P list "$@" 2>/dev/null || true)" ]; }
add() {
  timeout 30 sacctmgr -i add "$@" >"$STATE_DIR/sacctmgr.log" 2>&1 ||
    die "sacctmgr add $* failed" "$STATE_DIR/sacctmgr.log"
}
have cluster name="$CLUSTER" format=cluster || add cluster "$CLUSTER"
have account name="$ACCOUNT" format=account || add account "$ACCOUNT" cluster="$CLUSTER"
have assoc user=root account="$ACCOUNT" format=user ||
  add user root account="$ACCOUNT" cluster="$CLUSTER"

# --------------------------------------------------- slurmctld and slurmd ---
for d in slurmctld slurmd; do
  if pid=$(alive $d /run/slurm/$d.pid); then
    [ "$conf_changed" = 1 ] || continue
    log "config changed: restarting $d"
    stop_pid $d "$pid"
  fi
  rm -f /run/slurm/$d.pid
  $d 9>&- || die "$d did not start" "$LOGS/$d.log" # both daemonise
  pid=$(wait_pidfile /run/slurm/$d.pid) || die "$d wrote no pid file" "$LOGS/$d.log"
  record $d "$pid"
done

# --------------------------------------------------------- wait for idle ---
# A daemon with a fatal config error daemonises, writes its pid file and only
# then exits: keep checking both are alive while waiting.
state=""
deadline=$(($(date +%s) + WAIT_IDLE_S))
while [ "$(date +%s)" -lt "$deadline" ]; do
  for d in slurmctld slurmd; do
    alive $d /run/slurm/$d.pid >/dev/null || die "$d exited" "$LOGS/$d.log"
  done
  state=$(timeout 5 sinfo -h -n "$NODE" -p "$PARTITION" -o %T 2>/dev/null | head -1 || true)
  case "$state" in
    idle | mixed | allocated) break ;;
    down* | drain*) timeout 5 scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true ;;
  esac
  sleep 0.5
done
case "$state" in
  idle | mixed | allocated) log "node $NODE is $state" ;;
  *) die "node $NODE is '${state:-unknown}' after ${WAIT_IDLE_S}s" "$LOGS/slurmctld.log" ;;
esac

if [ "$SMOKE" = 1 ]; then
  cvd=$(timeout 60 srun -p "$GPU_PARTITION" -A "$ACCOUNT" -n1 -t 1 --gpus=1 \
    printenv CUDA_VISIBLE_DEVICES 2>"$STATE_DIR/smoke.log") ||
    die "srun --gpus=1 smoke test failed" "$STATE_DIR/smoke.log"
  [ "$cvd" = 0 ] || die "srun --gpus=1 got CUDA_VISIBLE_DEVICES='$cvd', expected 0" "$LOGS/slurmd.log"
  seen=""
  for _ in $(seq 20); do
    seen=$(timeout 10 sacct -X -n -P -o JobID -S now-1hour 2>/dev/null || true)
    [ -n "$seen" ] && break
    sleep 0.5
  done
  [ -n "$seen" ] || die "sacct shows no jobs: accounting is broken" "$LOGS/slurmdbd.log"
fi
log "ready in $(($(date +%s) - t0))s (partitions $PARTITION,$GPU_PARTITION; account $ACCOUNT; $FAKE_GPUS fake GPU)"
