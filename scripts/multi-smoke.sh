#!/usr/bin/env bash
# The multi-host-shaped deployment, end to end: builds the offline images (gitspy, Redis,
# HAProxy), brings docker/compose.multi.yaml up (two servers behind HAProxy, three workers, Redis,
# one shared store) on free loopback ports, checks that the load balancer passes only
# POST /webhooks while its admin side serves the read APIs, then runs
# scenarios/attach/multi-kill.yaml in attach mode (one server SIGKILLed with requests in flight,
# one worker while it holds deliveries; both kills must hit work: faults_effective) and tears
# everything down.
#
# Always tears the deployment down (`docker-compose down -v`, volumes included), on success, on
# failure and on Ctrl-C, and removes leftovers of an interrupted earlier run first. Exit: 0 passed,
# 1 a check failed, 2 could not run.
#
# Needs: root or docker access, Debian's docker.io and docker-compose (v1), redis-server (for the
# Redis image, built only when missing), haproxy (`apt-get install -y haproxy`), curl, bc, cargo.
# Env: REPORT_DIR (default reports), GITHUB_WEBHOOK_SECRET (default: a random one for this run),
# CARGO_TARGET_DIR (where the binaries are built, default target), GITSPY_IMAGE_BIN (the gitspy
# binary put in the image, default the debug build), MULTI_STORE: `postgres` (the
# store is PostgreSQL, docker/compose.multi.postgres.yaml, offline image from
# docker/build-postgres-image.sh, built once per version of that script), `sqlite` (one SQLite
# file on a volume shared by every container) or `auto` (default: postgres when the gitspy binary
# has the PostgreSQL store, else sqlite).
set -euo pipefail
cd "$(dirname "$0")/.."

COMPOSE_FILE=docker/compose.multi.yaml
COMPOSE_ARGS=(-f "$COMPOSE_FILE")
PROJECT="gitspy-multi-smoke-$$"
export GITSPY_MULTI_REDIS_CONTAINER="$PROJECT-redis"
export GITSPY_MULTI_MARKER="$PROJECT"
export GITSPY_IMAGE="gitspy:multi-smoke-$$"
export GITSPY_HAPROXY_IMAGE="gitspy-haproxy:multi-smoke-$$"
export GITSPY_MULTI_POSTGRES_CONTAINER="$PROJECT-postgres"
# 50 ms of work per delivery, so the worker the scenario kills holds deliveries when it dies.
export GITSPY_MULTI_PROCESSING_DELAY="${GITSPY_MULTI_PROCESSING_DELAY:-50ms}"
MULTI_STORE="${MULTI_STORE:-auto}"
case "$MULTI_STORE" in auto|sqlite|postgres) ;; *) echo "error: MULTI_STORE must be auto, sqlite or postgres, not $MULTI_STORE" >&2; exit 2 ;; esac
SCENARIO=scenarios/attach/multi-kill.yaml
REPORT_DIR="${REPORT_DIR:-reports}"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
HEALTHY_WITHIN=90

SMOKE_NAME=multi-smoke
SMOKE_IMAGES=("$GITSPY_IMAGE" "$GITSPY_HAPROXY_IMAGE")
SMOKE_LOG_TAIL=30
# Messages, ports, `dc`, the teardown, leftovers, the Redis image, the health wait.
source scripts/compose-common.sh

# --- prerequisites -------------------------------------------------------------------------------
for tool in cargo docker docker-compose bc curl; do
    command -v "$tool" >/dev/null 2>&1 || cannot "$tool is missing" "apt-get install -y docker.io docker-compose bc curl (and a Rust toolchain)"
done
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || cannot "haproxy is missing" "apt-get install -y haproxy"
bash scripts/setup-docker.sh >/dev/null || cannot "no Docker daemon" "scripts/setup-docker.sh (as root)"
export GITHUB_WEBHOOK_SECRET="${GITHUB_WEBHOOK_SECRET:-multi-smoke-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')}"

# --- host ports ----------------------------------------------------------------------------------
PORT_VARS=(GITSPY_MULTI_PUBLIC_PORT GITSPY_MULTI_ADMIN_PORT GITSPY_MULTI_SERVER1_ADMIN_PORT
    GITSPY_MULTI_SERVER2_ADMIN_PORT GITSPY_MULTI_WORKER1_PORT GITSPY_MULTI_WORKER2_PORT
    GITSPY_MULTI_WORKER3_PORT GITSPY_MULTI_REDIS_PORT GITSPY_MULTI_POSTGRES_PORT)
GIVEN=()
for var in "${PORT_VARS[@]}"; do if [ -n "${!var:-}" ]; then GIVEN+=("$var"); fi; done
# A free port for every variable not given in the environment.
pick_ports() {
    local var
    for var in "${PORT_VARS[@]}"; do
        [[ " ${GIVEN[*]} " == *" $var "* ]] || unset "$var"
    done
    smoke_pick_ports "${PORT_VARS[@]}"
}
pick_ports

smoke_arm_teardown
# Leftovers of runs killed with SIGKILL (their pid is gone): projects (with PostgreSQL or not)
# and images.
smoke_remove_leftovers '^gitspy(-haproxy)?:multi-smoke-' -f "$COMPOSE_FILE" -f docker/compose.multi.postgres.yaml

# --- images --------------------------------------------------------------------------------------
ts=$(date +%s.%N)
cargo build --quiet -p gitspy --bin gitspy -p gitspy-chaos --bin gitspy-chaos
say "binaries built in $(elapsed "$ts") s"
ts=$(date +%s.%N)
smoke_redis_image
GITSPY_IMAGE_BIN="${GITSPY_IMAGE_BIN:-$TARGET_DIR/debug/gitspy}"
docker/build-gitspy-image.sh "$GITSPY_IMAGE_BIN" "$GITSPY_IMAGE" >/dev/null || cannot "building $GITSPY_IMAGE failed" "see the error above"
docker/build-haproxy-image.sh "$GITSPY_HAPROXY_IMAGE" >/dev/null || cannot "building $GITSPY_HAPROXY_IMAGE failed" "see the error above"
if [ "$MULTI_STORE" = auto ]; then
    if "$GITSPY_IMAGE_BIN" serve --help 2>/dev/null | grep -qi 'postgres'; then MULTI_STORE=postgres; else MULTI_STORE=sqlite; fi
fi
services=(redis server1 server2 worker1 worker2 worker3)
if [ "$MULTI_STORE" = postgres ]; then
    COMPOSE_ARGS+=(-f docker/compose.multi.postgres.yaml)
    services+=(postgres)
    # Built once per version of its recipe (the tag is a digest of the script and Dockerfile), and
    # shared by later runs: it takes half a minute.
    recipe=$(cat docker/build-postgres-image.sh docker/postgres.Dockerfile | sha256sum | cut -c1-12)
    export GITSPY_POSTGRES_IMAGE="gitspy-multi-postgres:$recipe"
    if ! docker image inspect "$GITSPY_POSTGRES_IMAGE" >/dev/null 2>&1; then
        docker/build-postgres-image.sh "$GITSPY_POSTGRES_IMAGE" >/dev/null || cannot "building $GITSPY_POSTGRES_IMAGE failed" "see the error above"
    fi
fi
say "images built in $(elapsed "$ts") s (store: $MULTI_STORE)"

# --- up, healthy ---------------------------------------------------------------------------------
ts=$(date +%s.%N)
smoke_check_ports "${PORT_VARS[@]}"
# Other runs on this host pick ports too: a port taken between the check and `up` fails the
# creation of one container. Once, with fresh ports, that is retried.
if ! dc up -d --no-build >"$WORK/up.log" 2>&1; then
    grep -iE 'error|allocated|in use' "$WORK/up.log" | head -n 5 >&2 || true
    if [ "${#GIVEN[@]}" -lt "${#PORT_VARS[@]}" ]; then
        say "docker-compose up failed (above); retrying once on fresh ports"
        dc down -v --remove-orphans >/dev/null 2>&1 || true
        pick_ports
        dc up -d --no-build >"$WORK/up.log" 2>&1 \
            || { cat "$WORK/up.log" >&2; cannot "docker-compose up -d failed twice" "see the error above (a port already allocated?)"; }
    else
        cat "$WORK/up.log" >&2
        cannot "docker-compose up -d failed" "see the error above (a port already allocated?)"
    fi
fi
# The load balancer has no healthcheck of its own (no shell, no client in its image): it is ready
# once its admin side answers /readyz through a server.
smoke_extra_ready() {
    local lb
    lb=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$GITSPY_MULTI_ADMIN_PORT/readyz" || true)
    [ "$lb" = 200 ] || echo "lb=$lb"
}
smoke_wait_healthy "$HEALTHY_WITHIN" "${services[@]}"
say "up and healthy (lb ${services[*]}) in $(elapsed "$ts") s"

# --- only POST /webhooks faces the internet ------------------------------------------------------
code() { curl -s -o /dev/null -w '%{http_code}' "$@" || true; }
public="http://127.0.0.1:$GITSPY_MULTI_PUBLIC_PORT"
admin="http://127.0.0.1:$GITSPY_MULTI_ADMIN_PORT"
for path in /healthz /readyz /metrics/prom /deliveries /boards/octo/board /debug/failpoints; do
    c=$(code "$public$path")
    [ "$c" = 404 ] || failed "the load balancer's public side answered $c to GET $path (must be 404)"
done
c=$(code -X POST -H 'content-type: application/json' -d '{"ids":["x"]}' "$public/deliveries/lookup")
[ "$c" = 404 ] || failed "the public side answered $c to POST /deliveries/lookup (must be 404)"
c=$(code -X POST -H 'content-type: application/json' -H 'x-github-event: ping' -H 'x-github-delivery: multi-smoke-unsigned' -d '{}' "$public/webhooks")
[ "$c" = 401 ] || failed "an unsigned POST /webhooks through the load balancer got $c (must reach a server: 401)"
for path in /healthz /readyz /metrics/prom /deliveries; do
    c=$(code "$admin$path")
    [ "$c" = 200 ] || failed "the load balancer's admin side answered $c to GET $path (must be 200)"
done
say "public side: only POST /webhooks (everything else 404); admin side serves reads, metrics, health"

# --- the scenario in attach mode, on this run's ports ---------------------------------------------
ts=$(date +%s.%N)
sed -e "s#127.0.0.1:8080#127.0.0.1:$GITSPY_MULTI_PUBLIC_PORT#g" \
    -e "s#127.0.0.1:8081#127.0.0.1:$GITSPY_MULTI_ADMIN_PORT#g" \
    -e "s#127.0.0.1:13001#127.0.0.1:$GITSPY_MULTI_SERVER1_ADMIN_PORT#g" \
    -e "s#127.0.0.1:13002#127.0.0.1:$GITSPY_MULTI_SERVER2_ADMIN_PORT#g" \
    -e "s#127.0.0.1:19091#127.0.0.1:$GITSPY_MULTI_WORKER1_PORT#g" \
    -e "s#127.0.0.1:19092#127.0.0.1:$GITSPY_MULTI_WORKER2_PORT#g" \
    -e "s#127.0.0.1:19093#127.0.0.1:$GITSPY_MULTI_WORKER3_PORT#g" \
    -e "s#127.0.0.1:16380#127.0.0.1:$GITSPY_MULTI_REDIS_PORT#g" \
    -e "s#container: gitspy-multi-redis#container: $GITSPY_MULTI_REDIS_CONTAINER#" \
    -e "s#GITSPY_CHAOS_TARGET=multi-#GITSPY_CHAOS_TARGET=$GITSPY_MULTI_MARKER-#g" \
    "$SCENARIO" >"$WORK/multi-kill.yaml"
restarts() { for s in server1 worker1 worker2 worker3; do docker inspect -f '{{.RestartCount}}' "$(dc ps -q "$s")"; done | paste -sd+ | bc; }
pg_url="postgres://gitspy:gitspy-multi-demo@127.0.0.1:$GITSPY_MULTI_POSTGRES_PORT/gitspy"
pg_count() { psql "$pg_url" -tAc "SELECT count(*) FROM applied_deliveries" 2>&1; }
count_pg=0
if [ "$MULTI_STORE" = postgres ] && command -v psql >/dev/null 2>&1 && command -v jq >/dev/null 2>&1; then count_pg=1; fi
# Exit 3 (inconclusive: a kill hit no work in flight, so the run proved nothing) is retried once,
# on the same deployment; a failed check (exit 1) never is.
for try in 1 2; do
    before=$(restarts)
    base=0
    if [ "$count_pg" = 1 ]; then base=$(pg_count) || failed "cannot count the applied deliveries in PostgreSQL: $base"; fi
    set +e
    "$TARGET_DIR/debug/gitspy-chaos" run "$WORK/multi-kill.yaml" --report-dir "$REPORT_DIR"
    rc=$?
    set -e
    if [ "$rc" = 3 ] && [ "$try" = 1 ]; then say "inconclusive (a kill hit no work in flight): once more"; continue; fi
    break
done
case "$rc" in
    0) ;;
    1) failed "$SCENARIO: a check failed (report under $REPORT_DIR/)" ;;
    3) cannot "$SCENARIO was inconclusive twice: a kill hit no work in flight" "see the fault lines above" ;;
    *) cannot "$SCENARIO could not run (exit $rc)" "see the error above" ;;
esac
# The kills were real: Docker restarted two containers (server1 and one worker).
after=$(restarts)
[ "$((after - before))" -ge 2 ] || failed "expected 2 container restarts (server1 and a worker), saw $((after - before))"
# With PostgreSQL, the deliveries really are in it: one applied row per processed delivery.
if [ "$count_pg" = 1 ]; then
    run_json=$(ls -td "$REPORT_DIR"/*-multi-kill/ | head -n 1)run.json
    want=$(jq '.ledger.processed' "$run_json")
    # The database is this deployment's own (a fresh volume): the rows added during the run are
    # the run's.
    got=$(pg_count) || failed "cannot count the applied deliveries in PostgreSQL: $got"
    got=$((got - base))
    [ "$got" = "$want" ] || failed "PostgreSQL holds $got applied deliveries of this run, the run processed $want"
    say "PostgreSQL holds the $got applied deliveries of this run"
fi
say "PASSED: $SCENARIO in attach mode, store $MULTI_STORE, in $(elapsed "$ts") s ($((after - before)) containers restarted; report under $REPORT_DIR/)"
