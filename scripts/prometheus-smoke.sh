#!/usr/bin/env bash
# The compose deployment with its optional Prometheus (profile `prometheus`): builds the offline
# images (gitspy from target/debug, Prometheus from Debian's package), brings everything up on free
# loopback ports under a project name of its own, and checks that Prometheus scrapes the server and
# both workers (`sum(up) == 3`, `gitspy_redis_up` of each is 1) and has loaded every alert of
# docker/prometheus/alerts.yml; then runs scenarios/attach/compose-promql.yaml (the plan's five
# PromQL examples as `promql` checks) against it in attach mode. Always tears down its
# deployment, volumes and images.
#
# Exit 0 passed, 1 a check failed, 2 could not run. Needs docker, docker-compose, prometheus,
# promtool, curl, jq and `cargo build -p gitspy -p gitspy-chaos` done.
set -euo pipefail
cd "$(dirname "$0")/.."

cannot() { echo "error: $1" >&2; [ -n "${2:-}" ] && echo "hint: $2" >&2; exit 2; }
for t in docker docker-compose curl jq promtool prometheus; do
    command -v "$t" >/dev/null || cannot "$t is not installed" "apt-get install -y docker.io docker-compose curl jq prometheus"
done
[ -x target/debug/gitspy ] || [ -x "${CARGO_TARGET_DIR:-target}/debug/gitspy" ] \
    || cannot "no gitspy binary" "cargo build -p gitspy"
BIN="${CARGO_TARGET_DIR:-target}/debug/gitspy"
CHAOS="${CARGO_TARGET_DIR:-target}/debug/gitspy-chaos"
[ -x "$CHAOS" ] || cannot "no gitspy-chaos binary" "cargo build -p gitspy-chaos"

PROJECT="gitspy-prom-$$"
export GITSPY_IMAGE="gitspy:prom-smoke-$$"
export GITSPY_PROMETHEUS_IMAGE="gitspy-prometheus:smoke-$$"
export GITSPY_COMPOSE_REDIS_CONTAINER="$PROJECT-redis"
export GITSPY_COMPOSE_MARKER="$PROJECT"
port_taken() { (exec 5<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
    local p
    for _ in $(seq 1 200); do
        p=$(( 20000 + RANDOM % 40000 ))
        port_taken "$p" || { echo "$p"; return; }
    done
    cannot "found no free port on 127.0.0.1" ""
}
for var in GITSPY_COMPOSE_SERVER_PORT GITSPY_COMPOSE_WORKER1_PORT GITSPY_COMPOSE_WORKER2_PORT GITSPY_COMPOSE_REDIS_PORT GITSPY_COMPOSE_PROMETHEUS_PORT; do
    export "$var=$(free_port)"
done
dc() { docker-compose -f docker/compose.yaml -p "$PROJECT" --profile prometheus "$@"; }
teardown() {
    trap - EXIT INT TERM
    dc down -v >/dev/null 2>&1 || true
    docker image rm "$GITSPY_IMAGE" "$GITSPY_PROMETHEUS_IMAGE" >/dev/null 2>&1 || true
}
trap teardown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

docker image inspect gitspy-redis:7 >/dev/null 2>&1 || bash docker/build-redis-image.sh >/dev/null \
    || cannot "building gitspy-redis:7 failed" ""
bash docker/build-gitspy-image.sh "$BIN" "$GITSPY_IMAGE" >/dev/null || cannot "building $GITSPY_IMAGE failed" ""
bash docker/build-prometheus-image.sh "$GITSPY_PROMETHEUS_IMAGE" >/dev/null || cannot "building $GITSPY_PROMETHEUS_IMAGE failed" ""
timeout 180 docker-compose -f docker/compose.yaml -p "$PROJECT" --profile prometheus up -d >/dev/null 2>&1 || cannot "the deployment did not come up" "docker-compose -f docker/compose.yaml --profile prometheus up"

PROM="http://127.0.0.1:$GITSPY_COMPOSE_PROMETHEUS_PORT"
q() { curl -sf --get "$PROM/api/v1/query" --data-urlencode "query=$1" | jq -r '.data.result[0].value[1] // empty'; }
up=""
for _ in $(seq 1 60); do
    up=$(q 'sum(up)' || true)
    [ "$up" = "3" ] && break
    sleep 1
done
[ "$up" = "3" ] || { echo "FAILED: Prometheus scrapes ${up:-no} targets, expected 3" >&2; exit 1; }
redis_up=$(q 'min(gitspy_redis_up)')
[ "$redis_up" = "1" ] || { echo "FAILED: min(gitspy_redis_up) = ${redis_up:-absent}" >&2; exit 1; }
loaded=$(curl -sf "$PROM/api/v1/rules" | jq -r '[.data.groups[].rules[] | select(.type == "alerting") | .name] | sort | join(" ")')
want=$(grep -o 'alert: [A-Za-z]*' docker/prometheus/alerts.yml | cut -d' ' -f2 | sort | tr '\n' ' ' | sed 's/ $//')
[ "$loaded" = "$want" ] || { echo "FAILED: alerts loaded [$loaded], expected [$want]" >&2; exit 1; }
echo "prometheus-smoke: 3 targets up, Redis up, alerts loaded: $loaded"

# The plan's five PromQL examples as `promql` checks of an attach-mode scenario, asked of this
# deployment's Prometheus (scenarios/attach/compose-promql.yaml, on this run's ports).
SCENARIO=scenarios/attach/compose-promql.yaml
WORK=$(mktemp -d)
REPORT_DIR=${REPORT_DIR:-/tmp/gitspy-chaos-prometheus-smoke}
sed -e "s#127.0.0.1:3000#127.0.0.1:$GITSPY_COMPOSE_SERVER_PORT#g" \
    -e "s#127.0.0.1:9091#127.0.0.1:$GITSPY_COMPOSE_WORKER1_PORT#g" \
    -e "s#127.0.0.1:9092#127.0.0.1:$GITSPY_COMPOSE_WORKER2_PORT#g" \
    -e "s#127.0.0.1:16379#127.0.0.1:$GITSPY_COMPOSE_REDIS_PORT#g" \
    -e "s#127.0.0.1:19090#127.0.0.1:$GITSPY_COMPOSE_PROMETHEUS_PORT#g" \
    -e "s#container: gitspy-compose-redis#container: $GITSPY_COMPOSE_REDIS_CONTAINER#" \
    "$SCENARIO" >"$WORK/compose-promql.yaml"
set +e
GITHUB_WEBHOOK_SECRET=gitspy-compose-demo-secret \
    "$CHAOS" run "$WORK/compose-promql.yaml" --report-dir "$REPORT_DIR"
rc=$?
set -e
rm -rf "$WORK"
case "$rc" in
    0) echo "PASSED prometheus-smoke: $SCENARIO (report under $REPORT_DIR/)" ;;
    1) echo "FAILED: $SCENARIO: a check failed (report under $REPORT_DIR/)" >&2; exit 1 ;;
    *) cannot "$SCENARIO could not run (exit $rc)" "see the error above" ;;
esac
