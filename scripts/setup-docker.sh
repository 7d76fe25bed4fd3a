#!/usr/bin/env bash
# Starts the Docker daemon once, for the Docker-backend tests and for local runs.
#
# Idempotent: when /var/run/docker.sock already answers, it does nothing. Otherwise it starts
# `dockerd` in the background (logs in $DOCKERD_LOG, default /var/log/gitspy-dockerd.log) and
# waits up to 60 s for the socket to answer. Tests never start daemons themselves; CI and
# developers run this script once before `cargo test`.
#
# Needs: Debian's docker.io (`apt-get install -y docker.io`), root. No registry is needed:
# the Redis image is built offline by docker/build-redis-image.sh.
set -euo pipefail

SOCK=/var/run/docker.sock
LOG="${DOCKERD_LOG:-/var/log/gitspy-dockerd.log}"
WAIT_SECS=60

answers() {
    # `docker version` talks to the daemon; curl is not assumed to be installed.
    [ -S "$SOCK" ] && timeout 5 docker version --format '{{.Server.APIVersion}}' >/dev/null 2>&1
}

if answers; then
    echo "docker: already answering on $SOCK (API $(docker version --format '{{.Server.APIVersion}}'))"
    exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
    echo "error: dockerd is not installed" >&2
    echo "hint: apt-get install -y docker.io" >&2
    exit 1
fi
if ! command -v docker >/dev/null 2>&1; then
    echo "error: the docker client is not installed" >&2
    echo "hint: apt-get install -y docker.io" >&2
    exit 1
fi

# A stale pid file from a daemon that died makes dockerd refuse to start.
if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
    rm -f /var/run/docker.pid
fi

echo "docker: starting dockerd (log: $LOG)"
nohup dockerd >>"$LOG" 2>&1 </dev/null &
DOCKERD_PID=$!

for _ in $(seq 1 "$WAIT_SECS"); do
    if answers; then
        echo "docker: dockerd (pid $DOCKERD_PID) answers on $SOCK (API $(docker version --format '{{.Server.APIVersion}}'))"
        exit 0
    fi
    if ! kill -0 "$DOCKERD_PID" 2>/dev/null; then
        echo "error: dockerd exited during start-up; last lines of $LOG:" >&2
        tail -n 30 "$LOG" >&2
        exit 1
    fi
    sleep 1
done

echo "error: dockerd did not answer on $SOCK within ${WAIT_SECS}s; last lines of $LOG:" >&2
tail -n 30 "$LOG" >&2
exit 1
