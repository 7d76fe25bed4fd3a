#!/usr/bin/env bash
# The compose deployment, end to end: builds the two offline images, brings docker/compose.yaml up
# (Redis with AOF, gitspy serve, two workers), waits until every service is healthy, checks Redis
# runs with AOF (appendfsync always), SIGKILLs worker1 and waits for its restart policy to bring it
# back, then runs scenarios/attach/compose-smoke.yaml in attach mode (with this run's ports).
#
# Always tears the deployment down (`docker-compose down -v`, volumes included), on success, on
# failure and on Ctrl-C; it also removes leftovers of an interrupted earlier run first, so it can
# be run again and again. Exit: 0 passed, 1 a check failed, 2 could not run.
#
# Needs: root or docker access, Debian's docker.io and docker-compose (v1), redis-server (for the
# offline Redis image, built only when it is missing), cargo. Starts dockerd once through
# scripts/setup-docker.sh if needed.
# Host ports (loopback): four free ones picked per run (GITSPY_COMPOSE_{SERVER,WORKER1,WORKER2,
# REDIS}_PORT set in the environment win; a port that is taken makes it exit 2).
# Env: REPORT_DIR (default reports), GITHUB_WEBHOOK_SECRET (default: a random one for this run),
# CARGO_TARGET_DIR (where the binaries are built, default target), REBUILD_REDIS_IMAGE=1 to rebuild the shared gitspy-redis:7 image even when it exists.
set -euo pipefail
cd "$(dirname "$0")/.."

COMPOSE_FILE=docker/compose.yaml
COMPOSE_ARGS=(-f "$COMPOSE_FILE")
# Per run (the pid), so two runs on one host share nothing: project, Redis container, markers.
PROJECT="gitspy-compose-smoke-$$"
export GITSPY_COMPOSE_REDIS_CONTAINER="$PROJECT-redis"
export GITSPY_COMPOSE_MARKER="$PROJECT"
export GITSPY_IMAGE="gitspy:smoke-$$"
SCENARIO=scenarios/attach/compose-smoke.yaml
REPORT_DIR="${REPORT_DIR:-reports}"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
HEALTHY_WITHIN=90   # seconds, for every service to report healthy
SMOKE_NAME=compose-smoke
SMOKE_IMAGES=("$GITSPY_IMAGE")
SMOKE_LOG_TAIL=40
# Messages, ports, `dc`, the teardown, leftovers, the Redis image, the health wait.
source scripts/compose-common.sh

# --- prerequisites -------------------------------------------------------------------------------
command -v cargo >/dev/null 2>&1 || cannot "cargo is missing" "install a Rust toolchain (https://rustup.rs)"
command -v docker >/dev/null 2>&1 || cannot "the docker client is missing" "apt-get install -y docker.io"
command -v bc >/dev/null 2>&1 || cannot "bc is missing" "apt-get install -y bc"
if ! command -v docker-compose >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing docker-compose (apt)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose >/dev/null \
            || cannot "apt-get install docker-compose failed" "apt-get update, then apt-get install -y docker-compose"
    else
        cannot "docker-compose (v1) is missing" "sudo apt-get install -y docker-compose"
    fi
fi
bash scripts/setup-docker.sh >/dev/null || cannot "no Docker daemon" "scripts/setup-docker.sh (as root)"

export GITHUB_WEBHOOK_SECRET="${GITHUB_WEBHOOK_SECRET:-compose-smoke-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')}"

# --- host ports ----------------------------------------------------------------------------------
PORT_VARS=(GITSPY_COMPOSE_SERVER_PORT GITSPY_COMPOSE_WORKER1_PORT GITSPY_COMPOSE_WORKER2_PORT GITSPY_COMPOSE_REDIS_PORT)
smoke_pick_ports "${PORT_VARS[@]}"

smoke_arm_teardown
smoke_remove_leftovers '^gitspy:smoke-'

# --- images --------------------------------------------------------------------------------------
ts=$(date +%s.%N)
cargo build --quiet -p gitspy --bin gitspy -p gitspy-chaos --bin gitspy-chaos
say "binaries built in $(elapsed "$ts") s"
ts=$(date +%s.%N)
smoke_redis_image
say "gitspy-redis:7 ready in $(elapsed "$ts") s"
ts=$(date +%s.%N)
docker/build-gitspy-image.sh "$TARGET_DIR/debug/gitspy" "$GITSPY_IMAGE" >/dev/null || cannot "building $GITSPY_IMAGE failed" "see the error above"
say "$GITSPY_IMAGE built in $(elapsed "$ts") s"

# --- up, healthy ---------------------------------------------------------------------------------
ts=$(date +%s.%N)
smoke_check_ports "${PORT_VARS[@]}"
# Not coming up is "could not run" (2), e.g. a port taken in the meantime, never "a check failed".
dc up -d --no-build >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log" >&2; cannot "docker-compose up -d failed" "see the error above (a port already allocated?)"; }
smoke_wait_healthy "$HEALTHY_WITHIN" redis server worker1 worker2
say "up and healthy (redis, server, worker1, worker2) in $(elapsed "$ts") s"

# --- Redis persistence as configured -------------------------------------------------------------
redis_conf() { docker exec "$GITSPY_COMPOSE_REDIS_CONTAINER" redis-cli config get "$1" | tail -n 1; }
[ "$(redis_conf appendonly)" = yes ] || failed "Redis runs without AOF (appendonly=$(redis_conf appendonly))"
[ "$(redis_conf appendfsync)" = always ] || failed "Redis appendfsync is $(redis_conf appendfsync), not always"
say "redis: appendonly yes, appendfsync always"

# --- a killed worker comes back ------------------------------------------------------------------
ts=$(date +%s.%N)
w1=$(dc ps -q worker1)
before=$(docker inspect -f '{{.RestartCount}}' "$w1")
pid=$(docker inspect -f '{{.State.Pid}}' "$w1")
# Only this deployment's worker process: the pid Docker reports for the container we just started,
# and it must carry compose.yaml's marker.
tr '\0' '\n' <"/proc/$pid/environ" | grep -qx "GITSPY_CHAOS_TARGET=$GITSPY_COMPOSE_MARKER-worker" \
    || failed "pid $pid of worker1 does not carry GITSPY_CHAOS_TARGET=$GITSPY_COMPOSE_MARKER-worker"
kill -KILL "$pid"
deadline=$(( $(date +%s) + HEALTHY_WITHIN ))
until [ "$(docker inspect -f '{{.RestartCount}} {{.State.Health.Status}}' "$w1")" = "$((before + 1)) healthy" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || failed "worker1 not restarted and healthy within ${HEALTHY_WITHIN}s after SIGKILL"
    sleep 0.5
done
say "worker1 SIGKILLed, restarted by its restart policy and healthy again in $(elapsed "$ts") s"

# --- the scenario in attach mode, on this run's ports ---------------------------------------------
ts=$(date +%s.%N)
sed -e "s#127.0.0.1:3000#127.0.0.1:$GITSPY_COMPOSE_SERVER_PORT#g" \
    -e "s#127.0.0.1:9091#127.0.0.1:$GITSPY_COMPOSE_WORKER1_PORT#g" \
    -e "s#127.0.0.1:9092#127.0.0.1:$GITSPY_COMPOSE_WORKER2_PORT#g" \
    -e "s#127.0.0.1:16379#127.0.0.1:$GITSPY_COMPOSE_REDIS_PORT#g" \
    -e "s#container: gitspy-compose-redis#container: $GITSPY_COMPOSE_REDIS_CONTAINER#" \
    -e "s#GITSPY_CHAOS_TARGET=compose-#GITSPY_CHAOS_TARGET=$GITSPY_COMPOSE_MARKER-#g" \
    "$SCENARIO" >"$WORK/compose-smoke.yaml"
set +e
"$TARGET_DIR/debug/gitspy-chaos" run "$WORK/compose-smoke.yaml" --report-dir "$REPORT_DIR"
rc=$?
set -e
case "$rc" in
    0) say "PASSED: $SCENARIO in attach mode in $(elapsed "$ts") s (report under $REPORT_DIR/)" ;;
    1) failed "$SCENARIO: a check failed (report under $REPORT_DIR/)" ;;
    *) cannot "$SCENARIO could not run (exit $rc)" "see the error above" ;;
esac
