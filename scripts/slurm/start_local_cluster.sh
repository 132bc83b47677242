#!/usr/bin/env bash
# Start a real single-node SLURM cluster on this machine (controller and node on one host), so
# that tests and hand runs can submit jobs with sbatch. Idempotent: a second run finds what the
# first did and only starts what is not running. Must run as root.
#
#   scripts/slurm/start_local_cluster.sh        # exit 0 once `sinfo` shows this node idle
#   scripts/slurm/stop_local_cluster.sh         # stop the daemons again
#
# What it does, each step only when needed:
#   1. apt-get installs Debian's slurm-wlm (slurmctld, slurmd, slurm-client) and munge
#      (--no-install-recommends: the recommended plugins, HDF5/InfluxDB/IPMI/ROCm..., are ~35
#      packages that this cluster never loads), retrying after `apt-get update` as .ci/run does;
#   2. makes the munge key if the package did not, and starts munged (as user munge);
#   3. writes /etc/slurm/slurm.conf for THIS host (rewritten when its content would change, and
#      the daemons restarted then) - no cgroups, no accounting, see the comments in the file;
#   4. starts slurmctld and slurmd directly as daemons (there is no systemd in our containers,
#      and Debian's policy-rc.d stops the packages from starting them);
#   5. waits (up to SLURM_START_TIMEOUT seconds, 60 by default) for the node to read `idle`
#      (or mixed/allocated/completing: up, and busy with jobs), resuming it if it came up down
#      or drained.
# Restarting the daemons (a changed slurm.conf) does not kill jobs: their slurmstepd goes on and
# the controller recovers them from its state in /var/spool/slurmctld.
# Logs: /var/log/slurm/slurmctld.log and slurmd.log; munged's under /var/log/munge.
set -euo pipefail

TIMEOUT="${SLURM_START_TIMEOUT:-60}"
CONF_DIR=/etc/slurm
CONF="$CONF_DIR/slurm.conf"
PARTITION=debug

say() { echo "slurm-local: $*"; }
die() { echo "slurm-local: ERROR: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (it installs packages and starts system daemons)"

# --- 1. packages -------------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sinfo >/dev/null \
        || ! command -v munged >/dev/null; then
    command -v apt-get >/dev/null || die "slurm/munge missing and no apt-get to install them"
    say "installing slurm-wlm and munge with apt-get"
    pkgs=(slurm-wlm munge)
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends "${pkgs[@]}" >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends "${pkgs[@]}" >/dev/null 2>&1; } ||
        die "apt-get could not install ${pkgs[*]}"
else
    say "slurm and munge already installed (slurmctld $(dpkg-query -W -f='${Version}' slurmctld 2>/dev/null || echo "?"))"
fi
getent passwd slurm >/dev/null || die "no 'slurm' user (Debian's slurm packages create it)"
getent passwd munge >/dev/null || die "no 'munge' user (Debian's munge package creates it)"

# --- 2. munge ----------------------------------------------------------------------------------
if [ ! -s /etc/munge/munge.key ]; then
    say "creating /etc/munge/munge.key"
    install -d -o munge -g munge -m 0700 /etc/munge
    if command -v mungekey >/dev/null; then
        mungekey --create --keyfile=/etc/munge/munge.key
    else
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
fi
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    say "munged already running"
else
    say "starting munged"
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
    runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 || die "munged did not answer (see /var/log/munge/munged.log)"
fi

# --- 3. slurm.conf -----------------------------------------------------------------------------
host="$(hostname -s)"
# slurmd -C prints this node as slurmd sees it: "NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1
# CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24105". Writing exactly that keeps the controller
# from draining the node for "Low socket*core*thread count" or "Low RealMemory".
node_hw="$(slurmd -C 2>/dev/null | sed -n 's/^NodeName=[^ ]* //p' | head -n1)" || true
if [ -z "$node_hw" ]; then
    node_hw="CPUs=$(nproc) RealMemory=$(free -m | awk '/^Mem:/ {print $2}')"
fi
mkdir -p "$CONF_DIR"
new_conf="$(cat <<EOF
# Written by ebjdat's scripts/slurm/start_local_cluster.sh for host '$host' (and rewritten by
# it when its content would change). A single-node test cluster: controller and node on one host.
ClusterName=ebjdat-local
SlurmctldHost=$host
SlurmUser=slurm
AuthType=auth/munge
MpiDefault=none
# No mail on this box (the default, /bin/mail, is absent and slurmctld logs an error for it).
MailProg=/bin/true
# No cgroups (containers rarely let us have them): processes are tracked through /proc, and
# tasks are neither bound nor confined. Hence no cgroup.conf.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
# No accounting: no slurmdbd, no job completion log, no resource sampling. sacct does not work
# here; squeue/scontrol show a finished job for MinJobAge seconds (300 by default).
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
# A node that was down comes back by itself when its slurmd registers again.
ReturnToService=2
# scontrol requeue, and requeueing after a node failure.
JobRequeue=1
SchedulerType=sched/backfill
# Jobs share the node by CPU: two single-CPU jobs run at once on a 2-CPU machine. CR_CPU, not
# CR_Core: on a VM whose 2 vCPUs are 1 core x 2 threads, CR_Core gives a 1-CPU job the whole core.
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
NodeName=$host $node_hw State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
)"
conf_changed=0
if [ ! -f "$CONF" ] || [ "$(cat "$CONF")" != "$new_conf" ]; then
    say "writing $CONF (NodeName=$host $node_hw, partition $PARTITION)"
    printf '%s\n' "$new_conf" > "$CONF"
    chmod 0644 "$CONF"
    conf_changed=1
else
    say "$CONF already up to date"
fi
install -d -o slurm -g slurm -m 0755 /var/spool/slurmctld /var/log/slurm
install -d -o root -g root -m 0755 /var/spool/slurmd

# --- 4. daemons --------------------------------------------------------------------------------
# pid of a running daemon from its pid file, empty when the file is absent or the process gone
running_pid() {
    local pidfile="$1" name="$2" pid
    [ -f "$pidfile" ] || return 0
    pid="$(cat "$pidfile" 2>/dev/null || true)"
    if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" = "$name" ]; then echo "$pid"; fi
}
stop_daemon() {  # stop_daemon PIDFILE NAME: SIGTERM, then wait up to 10 s
    local pid
    pid="$(running_pid "$1" "$2")"
    [ -n "$pid" ] || return 0
    say "stopping $2 (pid $pid) to restart it with the new slurm.conf"
    kill "$pid"
    for _ in $(seq 100); do
        if [ ! -d "/proc/$pid" ]; then rm -f "$1"; return 0; fi  # slurmctld leaves its pid file
        sleep 0.1
    done
    die "$2 (pid $pid) did not stop"
}
if [ "$conf_changed" = 1 ]; then  # a running daemon read the old file: restart both
    stop_daemon /run/slurmd.pid slurmd
    stop_daemon /run/slurmctld.pid slurmctld
fi
if [ -n "$(running_pid /run/slurmctld.pid slurmctld)" ]; then
    say "slurmctld already running"
else
    say "starting slurmctld"
    /usr/sbin/slurmctld || die "slurmctld did not start (see /var/log/slurm/slurmctld.log)"
fi
if [ -n "$(running_pid /run/slurmd.pid slurmd)" ]; then
    say "slurmd already running"
else
    say "starting slurmd"
    /usr/sbin/slurmd || die "slurmd did not start (see /var/log/slurm/slurmd.log)"
fi

# --- 5. wait for the node ----------------------------------------------------------------------
say "waiting up to ${TIMEOUT}s for node $host to be idle"
deadline=$((SECONDS + TIMEOUT))
state=""
while [ "$SECONDS" -lt "$deadline" ]; do
    state="$(sinfo -h -n "$host" -o %T 2>/dev/null | head -n1 || true)"
    case "$state" in
        idle|mixed|allocated|completing)
            say "cluster up: node $host is $state, partition $PARTITION (in ${SECONDS}s)"
            exit 0 ;;
        down*|drain*|drained*)
            say "node $host is $state; resuming it"
            scontrol update nodename="$host" state=resume 2>/dev/null || true ;;
    esac
    sleep 1
done
echo "slurm-local: ERROR: node $host not idle after ${TIMEOUT}s (last state: '${state:-no answer}')" >&2
scontrol show node "$host" 2>&1 | sed 's/^/    /' >&2 || true
tail -n 5 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log 2>&1 | sed 's/^/    /' >&2 || true
exit 1
