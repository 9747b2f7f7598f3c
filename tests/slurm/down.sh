#!/usr/bin/env bash
# Stop exactly the daemons tests/slurm/up.sh started (slurmd, slurmctld, munged),
# by the PIDs it recorded -- never by name, so a developer's other Slurm or
# munge processes are left alone.  Safe to run twice or after a crash.
set -euo pipefail

BASE=${INRROUTE_SLURM_DIR:-/var/tmp/inrroute-slurm}
PIDS=$BASE/daemons.pids

log() { printf '[slurm-down] %s\n' "$*" >&2; }

# Alive = exists, runs the command we started (guards against PID reuse), and
# is not a zombie (PID 1 in some sandboxes never reaps; a zombie is harmless).
alive() {
    local pid=$1 comm=$2
    [[ -r /proc/$pid/stat ]] || return 1
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$comm" ]] || return 1
    [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]]
}

if [[ ! -s $PIDS ]]; then
    log "nothing recorded in $PIDS; nothing to stop"; exit 0
fi

# Stop in reverse start order: slurmd, slurmctld, then munged (they need it).
mapfile -t lines < <(tac "$PIDS")
for line in "${lines[@]}"; do
    read -r name pid <<<"$line"
    [[ -n ${pid:-} ]] || continue
    if ! alive "$pid" "$name"; then
        log "$name ($pid) already gone"; continue
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do alive "$pid" "$name" || break; sleep 0.1; done
    if alive "$pid" "$name"; then
        log "$name ($pid) ignored SIGTERM for 10 s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    if alive "$pid" "$name"; then log "$name ($pid) still running!"; exit 1; fi
    log "stopped $name ($pid)"
done

: > "$PIDS"
