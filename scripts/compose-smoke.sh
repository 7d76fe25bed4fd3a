#!/usr/bin/env bash
# The compose deployment, end to end: builds the two offline images, brings docker/compose.yaml up
# (Redis with AOF, gitspy serve, two workers), waits until every service is healthy, checks Redis
# runs with AOF (appendfsync always), SIGKILLs worker1 and waits for its restart policy to bring it
# back, then runs scenarios/attach/compose-smoke.yaml in attach mode. When this build's run engine
# does not support attach mode yet (it says so and exits 2), it falls back to sending 5 signed
# webhooks with `gitspy-chaos send` and checking each with GET /deliveries/<id>: processed, logged
# exactly once, at most one effect.
#
# Always tears the deployment down (`docker-compose down -v`, volumes included), on success, on
# failure and on Ctrl-C; it also removes leftovers of an interrupted earlier run first, so it can
# be run again and again. Exit: 0 passed, 1 a check failed, 2 could not run.
#
# Needs: root or docker access, Debian's docker.io and docker-compose (v1), redis-server (for the
# offline Redis image), cargo. Starts dockerd once through scripts/setup-docker.sh if needed.
# Host ports used (loopback): 3000, 9091, 9092, 16379.
# Env: REPORT_DIR (default reports), GITHUB_WEBHOOK_SECRET (default: a random one for this run).
set -euo pipefail
cd "$(dirname "$0")/.."

COMPOSE_FILE=docker/compose.yaml
PROJECT=gitspy-compose
SCENARIO=scenarios/attach/compose-smoke.yaml
REPORT_DIR="${REPORT_DIR:-reports}"
SERVER=http://127.0.0.1:3000
HEALTHY_WITHIN=90   # seconds, for every service to report healthy
PROCESSED_WITHIN=30 # seconds, for the fallback's deliveries to be processed

t0=$(date +%s.%N)
elapsed() { printf '%.1f' "$(echo "$(date +%s.%N) - $1" | bc)"; }
say() { echo "compose-smoke [$(elapsed "$t0") s]: $*"; }
cannot() { echo "error: $1" >&2; [ -n "${2:-}" ] && echo "hint: $2" >&2; exit 2; }
failed() { echo "FAILED: $1" >&2; exit 1; }

# --- prerequisites -------------------------------------------------------------------------------
command -v cargo >/dev/null 2>&1 || cannot "cargo is missing" "install a Rust toolchain (https://rustup.rs)"
command -v docker >/dev/null 2>&1 || cannot "the docker client is missing" "apt-get install -y docker.io"
command -v jq >/dev/null 2>&1 || cannot "jq is missing" "apt-get install -y jq"
command -v curl >/dev/null 2>&1 || cannot "curl is missing" "apt-get install -y curl"
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
dc() { docker-compose -f "$COMPOSE_FILE" -p "$PROJECT" "$@"; }

WORK="$(mktemp -d)"
# The script's own stdout and stderr: a signal trap runs inside whatever redirection the command it
# interrupted had (e.g. `dc up >up.log`), and the teardown must still be heard.
exec 3>&1 4>&2
teardown() {
    local rc=$?
    trap - EXIT INT TERM
    exec 1>&3 2>&4
    if [ "$rc" != 0 ] && dc ps -q 2>/dev/null | grep -q .; then
        echo "--- docker-compose ps and the last log lines (exit $rc)" >&2
        dc ps >&2 || true
        dc logs --no-color --tail 40 >&2 || true
    fi
    local td
    td=$(date +%s.%N)
    dc down -v --remove-orphans >/dev/null 2>&1 || echo "warning: docker-compose down -v failed" >&2
    say "torn down in $(elapsed "$td") s"
    rm -rf "$WORK"
    exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A run interrupted by SIGKILL leaves its containers and volumes: start from nothing.
dc down -v --remove-orphans >/dev/null 2>&1 || true

# --- images --------------------------------------------------------------------------------------
ts=$(date +%s.%N)
cargo build --quiet -p gitspy --bin gitspy -p gitspy-chaos --bin gitspy-chaos
say "binaries built in $(elapsed "$ts") s"
ts=$(date +%s.%N)
# build-redis-image.sh makes a new image each time; the one it replaces is removed below (unless a
# container still uses it), so runs do not pile up untagged images.
old_redis="$(docker image inspect -f '{{.Id}}' gitspy-redis:7 2>/dev/null || true)"
docker/build-redis-image.sh gitspy-redis:7 >/dev/null 2>"$WORK/redis-build.log" \
    || { cat "$WORK/redis-build.log" >&2; cannot "building gitspy-redis:7 failed" "see the error above"; }
if [ -n "$old_redis" ] && [ "$old_redis" != "$(docker image inspect -f '{{.Id}}' gitspy-redis:7)" ]; then
    docker image rm "$old_redis" >/dev/null 2>&1 || true
fi
say "gitspy-redis:7 built in $(elapsed "$ts") s"
ts=$(date +%s.%N)
docker/build-gitspy-image.sh target/debug/gitspy gitspy:local >/dev/null || cannot "building gitspy:local failed" "see the error above"
say "gitspy:local built in $(elapsed "$ts") s"

# --- up, healthy ---------------------------------------------------------------------------------
ts=$(date +%s.%N)
dc up -d --no-build >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log" >&2; failed "docker-compose up -d"; }
services=(redis server worker1 worker2)
deadline=$(( $(date +%s) + HEALTHY_WITHIN ))
while :; do
    unhealthy=()
    for s in "${services[@]}"; do
        id=$(dc ps -q "$s")
        h=$([ -n "$id" ] && docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$id" 2>/dev/null || echo missing)
        [ "$h" = healthy ] || unhealthy+=("$s=$h")
    done
    [ "${#unhealthy[@]}" = 0 ] && break
    [ "$(date +%s)" -lt "$deadline" ] || failed "not healthy within ${HEALTHY_WITHIN}s: ${unhealthy[*]}"
    sleep 0.5
done
say "up and healthy (redis, server, worker1, worker2) in $(elapsed "$ts") s"

# --- Redis persistence as configured -------------------------------------------------------------
redis_conf() { docker exec gitspy-compose-redis redis-cli config get "$1" | tail -n 1; }
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
tr '\0' '\n' <"/proc/$pid/environ" | grep -qx 'GITSPY_CHAOS_TARGET=compose-worker' \
    || failed "pid $pid of worker1 does not carry GITSPY_CHAOS_TARGET=compose-worker"
kill -KILL "$pid"
deadline=$(( $(date +%s) + HEALTHY_WITHIN ))
until [ "$(docker inspect -f '{{.RestartCount}} {{.State.Health.Status}}' "$w1")" = "$((before + 1)) healthy" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || failed "worker1 not restarted and healthy within ${HEALTHY_WITHIN}s after SIGKILL"
    sleep 0.5
done
say "worker1 SIGKILLed, restarted by its restart policy and healthy again in $(elapsed "$ts") s"

# --- the scenario in attach mode, or the send + lookup fallback ----------------------------------
ts=$(date +%s.%N)
set +e
target/debug/gitspy-chaos run "$SCENARIO" --report-dir "$REPORT_DIR" 2> >(tee "$WORK/run.err" >&2)
rc=$?
set -e
wait # for tee
if [ "$rc" = 0 ]; then
    say "PASSED: $SCENARIO in attach mode in $(elapsed "$ts") s (report under $REPORT_DIR/)"
    exit 0
fi
if [ "$rc" != 2 ] || ! grep -q "attach mode is not supported" "$WORK/run.err"; then
    [ "$rc" = 1 ] && failed "$SCENARIO: a check failed (report under $REPORT_DIR/)"
    failed "$SCENARIO could not run (exit $rc)"
fi

say "this run engine has no attach mode yet: falling back to send + GET /deliveries/<id>"
ts=$(date +%s.%N)
target/debug/gitspy-chaos send --url "$SERVER/webhooks" --secret "$GITHUB_WEBHOOK_SECRET" \
    --count 5 --seed 1 --ledger "$WORK/ledger.json" >"$WORK/send.out" 2>&1 \
    || { cat "$WORK/send.out" >&2; failed "gitspy-chaos send"; }
cat "$WORK/send.out"
mapfile -t ids < <(jq -r '[.entries[].delivery] | unique | .[]' "$WORK/ledger.json")
[ "${#ids[@]}" = 5 ] || failed "expected 5 distinct delivery ids in the ledger, got ${#ids[@]}"
not_accepted=$(jq '[.entries[] | select(.outcome.status != 202)] | length' "$WORK/ledger.json")
[ "$not_accepted" = 0 ] || failed "$not_accepted of 5 webhooks were not answered 202"

deadline=$(( $(date +%s) + PROCESSED_WITHIN ))
while :; do
    pending=()
    for id in "${ids[@]}"; do
        v=$(curl -fsS --max-time 5 "$SERVER/deliveries/$id") || failed "GET /deliveries/$id"
        state=$(jq -r .state <<<"$v"); logged=$(jq -r .logged <<<"$v"); effects=$(jq -r .effects <<<"$v")
        if [ "$logged" -gt 1 ] || [ "$effects" -gt 1 ]; then
            failed "delivery $id processed more than once: $v"
        fi
        [ "$state" = failed ] && failed "delivery $id failed: $v"
        [ "$state" = processed ] && [ "$logged" = 1 ] || pending+=("$id=$state")
    done
    [ "${#pending[@]}" = 0 ] && break
    [ "$(date +%s)" -lt "$deadline" ] || failed "not processed within ${PROCESSED_WITHIN}s: ${pending[*]}"
    sleep 0.2
done
say "PASSED: 5 webhooks accepted and each processed exactly once (GET /deliveries/<id>) in $(elapsed "$ts") s"
