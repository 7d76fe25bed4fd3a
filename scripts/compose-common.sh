# shellcheck shell=bash
# What scripts/compose-smoke.sh and scripts/multi-smoke.sh share, sourced by both: messages and
# exit codes (0 passed, 1 a check failed, 2 could not run), free loopback ports, `dc` (docker-compose
# on this run's project), the teardown that always runs (`docker-compose down -v` and this run's
# images, on success, failure and Ctrl-C), the removal of what runs killed by SIGKILL left, the
# shared offline Redis image, and the wait until every service is healthy.
#
# Sourcing only defines functions. Before sourcing, the caller sets: SMOKE_NAME (message prefix), PROJECT (the compose project,
# ending in the script's pid), COMPOSE_ARGS (an array: `-f file`…), SMOKE_IMAGES (an array: the
# images this run builds, removed at teardown), SMOKE_LOG_TAIL (log lines shown when it fails).

smoke_t0=$(date +%s.%N)
elapsed() { printf '%.1f' "$(echo "$(date +%s.%N) - $1" | bc)"; }
say() { echo "$SMOKE_NAME [$(elapsed "$smoke_t0") s]: $*"; }
cannot() { echo "error: $1" >&2; [ -n "${2:-}" ] && echo "hint: $2" >&2; exit 2; }
failed() { echo "FAILED: $1" >&2; exit 1; }

# --- host ports: nothing listens on a port we can connect to, so it is free (checked again right
# before `up`); `picked` keeps one run from picking the same port twice.
port_taken() { (exec 5<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
picked=" "
# Below the kernel's ephemeral range: a port there may be the local end of some outgoing
# connection (not listening, so it looks free) and Docker's bind then fails.
smoke_port_lo=20000
smoke_port_hi=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
[ "$smoke_port_hi" -gt $((smoke_port_lo + 1000)) ] || { smoke_port_lo=10000; smoke_port_hi=60000; }
free_port() {
    local p tries=0
    while :; do
        p=$(( smoke_port_lo + RANDOM % (smoke_port_hi - smoke_port_lo) ))
        if ! port_taken "$p" && [[ "$picked" != *" $p "* ]]; then echo "$p"; return; fi
        tries=$((tries + 1))
        [ "$tries" -lt 200 ] || cannot "found no free port on 127.0.0.1" "free some ports"
    done
}
# smoke_pick_ports VAR…: a free port for every VAR not set in the environment (those win); a
# port that is taken makes it exit 2.
smoke_pick_ports() {
    local var p
    picked=" "
    for var in "$@"; do
        if [ -z "${!var:-}" ]; then
            p=$(free_port) || exit 2
            export "$var=$p"
        fi
        picked+="${!var} "
        if port_taken "${!var}"; then cannot "host port ${!var} ($var) is taken" "free it, or set $var to a free port"; fi
    done
    return 0
}
# smoke_check_ports VAR…: exit 2 if one of them was taken in the meantime.
smoke_check_ports() {
    local var
    for var in "$@"; do
        port_taken "${!var}" && cannot "host port ${!var} ($var) is taken" "free it, or set $var to a free port"
    done
    return 0
}

dc() { docker-compose "${COMPOSE_ARGS[@]}" -p "$PROJECT" "$@"; }

# --- teardown, always -----------------------------------------------------------------------------
# smoke_arm_teardown: from here on, every exit (success, failure, Ctrl-C) takes the deployment
# down; also makes WORK, a temp dir removed then.
smoke_arm_teardown() {
    WORK="$(mktemp -d)"
    # The script's own stdout and stderr: a signal trap runs inside whatever redirection the
    # command it interrupted had (e.g. `dc up >up.log`), and the teardown must still be heard.
    exec 3>&1 4>&2
    trap smoke_teardown EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}
smoke_teardown() {
    local rc=$?
    trap - EXIT INT TERM
    exec 1>&3 2>&4
    if [ "$rc" != 0 ] && dc ps -q 2>/dev/null | grep -q .; then
        echo "--- docker-compose ps and the last log lines (exit $rc)" >&2
        dc ps >&2 || true
        dc logs --no-color --tail "${SMOKE_LOG_TAIL:-30}" >&2 || true
    fi
    local td
    td=$(date +%s.%N)
    dc down -v --remove-orphans >/dev/null 2>&1 || echo "warning: docker-compose down -v failed" >&2
    docker image rm "${SMOKE_IMAGES[@]}" >/dev/null 2>&1 || true
    say "torn down in $(elapsed "$td") s"
    rm -rf "$WORK"
    exit "$rc"
}

# smoke_remove_leftovers IMAGE_REGEX [COMPOSE ARG…]: a run killed by SIGKILL leaves its
# containers, volumes and images; take down every project of this script (PROJECT less its pid,
# with the compose args given, default COMPOSE_ARGS) and remove every image matching IMAGE_REGEX
# whose script (the pid ending its name) is gone. Live ones are left alone.
smoke_remove_leftovers() {
    local other image prefix=${PROJECT%-*}- regex=$1
    shift
    local args=("$@")
    [ "${#args[@]}" -gt 0 ] || args=("${COMPOSE_ARGS[@]}")
    for other in $(docker ps -a --filter label=com.docker.compose.project --format '{{.Label "com.docker.compose.project"}}' | sort -u); do
        case "$other" in "$prefix"*) ;; *) continue ;; esac
        kill -0 "${other##*-}" 2>/dev/null && continue
        docker-compose "${args[@]}" -p "$other" down -v --remove-orphans >/dev/null 2>&1 || true
    done
    for image in $(docker image ls --format '{{.Repository}}:{{.Tag}}' | grep -E "$regex" || true); do
        kill -0 "${image##*-}" 2>/dev/null || docker image rm "$image" >/dev/null 2>&1 || true
    done
}

# smoke_redis_image: gitspy-redis:7 is shared (the Docker backend's default image, other runs may
# be using it): built only when it is missing, or when REBUILD_REDIS_IMAGE=1.
smoke_redis_image() {
    if [ "${REBUILD_REDIS_IMAGE:-0}" = 1 ] || ! docker image inspect gitspy-redis:7 >/dev/null 2>&1; then
        docker/build-redis-image.sh gitspy-redis:7 >/dev/null 2>"$WORK/redis-build.log" \
            || { cat "$WORK/redis-build.log" >&2; cannot "building gitspy-redis:7 failed" "see the error above"; }
    fi
}

# smoke_wait_healthy WITHIN SERVICE…: until every service's healthcheck says healthy, and the
# caller's `smoke_extra_ready` (if defined) prints nothing (else what is not ready, `name=state`);
# exit 1 after WITHIN seconds.
smoke_wait_healthy() {
    local within=$1 deadline s id h extra
    shift
    deadline=$(( $(date +%s) + within ))
    while :; do
        local unhealthy=()
        for s in "$@"; do
            id=$(dc ps -q "$s")
            h=$([ -n "$id" ] && docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$id" 2>/dev/null || echo missing)
            [ "$h" = healthy ] || unhealthy+=("$s=$h")
        done
        if declare -F smoke_extra_ready >/dev/null; then
            extra=$(smoke_extra_ready)
            [ -z "$extra" ] || unhealthy+=("$extra")
        fi
        [ "${#unhealthy[@]}" = 0 ] && return 0
        [ "$(date +%s)" -lt "$deadline" ] || failed "not healthy within ${within}s: ${unhealthy[*]}"
        sleep 0.5
    done
}
