#!/usr/bin/env bash
# Stop the single-node SLURM cluster that start_local_cluster.sh started: slurmd, slurmctld, then
# munged (SIGTERM to the pid in each pid file, waiting up to 10 s for each). Jobs are NOT
# cancelled: a running job's slurmstepd goes on without the daemons, and the controller, which
# saves its state in /var/spool/slurmctld, recovers running and queued jobs when the cluster
# starts again (seen here: an array running across a stop/start completed with exit 0). Cancel
# them first (scancel) to really stop them. Configuration, key and packages stay.
# Idempotent: a daemon that is not running is skipped. Must run as root.
set -euo pipefail

say() { echo "slurm-local: $*"; }
[ "$(id -u)" = 0 ] || { echo "slurm-local: ERROR: must run as root" >&2; exit 1; }

stop_daemon() {  # stop_daemon PIDFILE NAME
    local pidfile="$1" name="$2" pid
    pid="$(cat "$pidfile" 2>/dev/null || true)"
    if [ -z "$pid" ] || [ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" != "$name" ]; then
        say "$name not running"
        return 0
    fi
    say "stopping $name (pid $pid)"
    kill "$pid"
    for _ in $(seq 100); do
        # slurmctld leaves its pid file behind, and slurmctld's Debian prerm (apt-get remove)
        # takes a pid file for a running controller and fails to scancel through it
        if [ ! -d "/proc/$pid" ]; then rm -f "$pidfile"; return 0; fi
        sleep 0.1
    done
    echo "slurm-local: ERROR: $name (pid $pid) did not stop within 10 s" >&2
    return 1
}

stop_daemon /run/slurmd.pid slurmd
stop_daemon /run/slurmctld.pid slurmctld
stop_daemon /run/munge/munged.pid munged
