#!/usr/bin/env bash
# The throughput bench (issue 14): one command, one table, ratios measured side by side in one run.
#
#   scripts/bench.sh                 # release build, then every measurement (~2-3 minutes)
#   BENCH_SECONDS=5 scripts/bench.sh # shorter wrk runs
#
# It builds release binaries (gitspy, gitspy-chaos and the bare reference server
# gitspy-app/examples/bench_bare.rs), starts its own redis-server processes on free ports (AOF
# everysec, then AOF always), GitSpy, and wrk when it is installed (else the harness's own sender
# is the load generator everywhere), and prints:
#   - the bare server's req/s (reads the body, answers 202: the machine's ceiling for this body)
#   - `gitspy serve` req/s and p99 with Redis AOF everysec and always, as ratios of the bare server
#   - `gitspy-chaos send` against the bare server: req/s as a ratio of wrk, and its peak RSS
#   - the drain rate of a backlog (default 100k deliveries over the generator's 12 cards) by 2 workers
#   - the same ingest and drain with the store in PostgreSQL (its own server; BENCH_POSTGRES=0 skips)
# Everything is bounded in count and time; every process it starts is stopped on exit.
#
# Settings (environment): BENCH_SECONDS (10), BENCH_CONNECTIONS (64), BENCH_WRK_THREADS (4),
# BENCH_SENDER_COUNT (100000), BENCH_BACKLOG (100000), BENCH_WORKERS (2), BENCH_WORKER_BATCH (64:
# each worker's GITSPY_WORKER_CONCURRENCY, deliveries per batch), BENCH_SKIP_BUILD=1,
# BENCH_BIN_DIR (binaries to measure instead of $CARGO_TARGET_DIR/release, e.g. an older build),
# BENCH_PARTS ("sender ingest drain": which measurements besides the bare reference to run, e.g.
# BENCH_PARTS=sender for the sender's ratio and RSS only). Each table row carries the 1-minute
# load average taken right after it was measured.
#
# Why a script and not a harness subcommand: the bench drives external programs (wrk,
# redis-server) and several processes, and its result is a printed table, not a verdict;
# the harness's commands stay about chaos runs. The pieces it measures are the real binaries.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

SECONDS_PER_RUN="${BENCH_SECONDS:-10}"
CONNS="${BENCH_CONNECTIONS:-64}"
WRK_THREADS="${BENCH_WRK_THREADS:-4}"
SENDER_COUNT="${BENCH_SENDER_COUNT:-100000}"
BACKLOG="${BENCH_BACKLOG:-100000}"
WORKERS="${BENCH_WORKERS:-2}"
WORKER_BATCH="${BENCH_WORKER_BATCH:-64}"
SECRET="bench-secret"
PARTS=" ${BENCH_PARTS:-sender ingest drain} "
part() { [[ "$PARTS" == *" $1 "* ]]; }

die() { echo "bench: $*" >&2; exit 2; }
command -v redis-server >/dev/null || die "redis-server is not installed (apt-get install redis-server)"
command -v redis-cli >/dev/null || die "redis-cli is not installed (apt-get install redis-tools)"
command -v jq >/dev/null || die "jq is not installed"
command -v openssl >/dev/null || die "openssl is not installed"
HAVE_WRK=0
command -v wrk >/dev/null && HAVE_WRK=1

TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  echo "bench: building release binaries" >&2
  cargo build --release --bin gitspy --bin gitspy-chaos --example bench_bare -p gitspy -p gitspy-chaos >&2 \
    || die "release build failed"
fi
BIN="${BENCH_BIN_DIR:-$TARGET/release}"
GITSPY="$BIN/gitspy"
CHAOS="$BIN/gitspy-chaos"
BARE="$BIN/bench_bare"
[ -x "$BARE" ] || BARE="$BIN/examples/bench_bare"
for b in "$GITSPY" "$CHAOS" "$BARE"; do [ -x "$b" ] || die "missing $b (build it or unset BENCH_SKIP_BUILD)"; done
# "As fast as the concurrency allows": `--rate max` (older harness builds took `--rate 0`).
UNPACED=max
"$CHAOS" send --help 2>/dev/null | grep -q '`max`' || UNPACED=0

WORK="$(mktemp -d "${TMPDIR:-/tmp}/gitspy-bench.XXXXXX")"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 2' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Starts a command in the background whose first stdout line is "listening on http://ADDR";
# sets ADDR and LAST_PID.
start_listening() {
  local log="$1"; shift
  "$@" >"$log.out" 2>"$log.err" &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
  for _ in $(seq 1 100); do
    if ADDR="$(sed -n 's#^listening on http://##p' "$log.out" | head -1)" && [ -n "$ADDR" ]; then
      return 0
    fi
    kill -0 "$LAST_PID" 2>/dev/null || { cat "$log.err" >&2; die "$1 exited at start"; }
    sleep 0.1
  done
  die "$1 did not print its address in 10 s"
}

stop_pid() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# redis-server with AOF; sets REDIS_URL and REDIS_PID. Automatic AOF rewrites are off: with no
# worker draining, the ingest runs grow the stream to gigabytes, and a rewrite of that (a forked
# child compressing it) would be measured instead of the ingest; with workers running the stream
# stays short and a rewrite is cheap.
start_redis() {
  local fsync="$1" port dir
  port="$(free_port)"; dir="$WORK/redis-$fsync-$port"; mkdir -p "$dir"
  redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save "" --appendonly yes \
    --appendfsync "$fsync" --auto-aof-rewrite-percentage 0 --daemonize no --logfile "$dir/log" &
  REDIS_PID=$!
  PIDS+=("$REDIS_PID")
  for _ in $(seq 1 100); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && { REDIS_PORT="$port"; REDIS_URL="redis://127.0.0.1:$port"; return 0; }
    sleep 0.1
  done
  die "redis-server did not start"
}

# The request body: a real `issues.opened` payload, compacted, signed once (ids vary per request).
BODY="$WORK/body.json"
jq -c . payloads/issues/opened.json >"$BODY"
SIG="sha256=$(openssl dgst -sha256 -hmac "$SECRET" -r <"$BODY" | cut -d' ' -f1)"
BODY_BYTES="$(wc -c <"$BODY")"
cat >"$WORK/post.lua" <<EOF
local f = assert(io.open("$BODY", "rb"))
local body = f:read("*a")
f:close()
local counter = 0
local prefix = "bench"
function setup(thread)
  thread:set("tid", tostring(math.random(1, 1e9)))
end
function init(args)
  prefix = "bench-" .. tostring(tid) .. "-" .. tostring(os.time())
end
request = function()
  counter = counter + 1
  return wrk.format("POST", "/webhooks", {
    ["Content-Type"] = "application/json",
    ["X-GitHub-Event"] = "issues",
    ["X-GitHub-Delivery"] = prefix .. "-" .. counter,
    ["X-Hub-Signature-256"] = "$SIG",
  }, body)
end
EOF

# wrk against URL; sets RPS, P99 (ms) and BAD (non-2xx + socket errors).
run_wrk() {
  local url="$1" out="$WORK/wrk.out"
  timeout $((SECONDS_PER_RUN + 30)) wrk -t"$WRK_THREADS" -c"$CONNS" -d"${SECONDS_PER_RUN}s" --latency \
    -s "$WORK/post.lua" "$url" >"$out" 2>&1 || die "wrk failed: $(cat "$out")"
  RPS="$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$out")"
  P99="$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us$/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v=v*1000}; printf "%.1f", v}' "$out")"
  BAD="$(awk '/Non-2xx/ {n+=$NF} /Socket errors/ {gsub(/,/,""); n+=$4+$6+$8+$10} END {print n+0}' "$out")"
}

# The harness's sender against URL for COUNT requests at full speed; sets S_RPS, S_RSS_MB, S_P99.
run_sender() {
  local url="$1" count="$2" out="$WORK/send.out" t0 t1
  t0="$(date +%s.%N)"
  /usr/bin/time -f "%M" -o "$WORK/send.rss" timeout 600 "$CHAOS" send --url "$url" --secret "$SECRET" \
    --count "$count" --rate "$UNPACED" --concurrency "$CONNS" --seed 1 --event issues \
    --ledger "$WORK/ledger.json" >"$out" 2>"$WORK/send.err" || die "sender failed: $(tail -5 "$WORK/send.err")"
  t1="$(date +%s.%N)"
  S_RPS="$(awk -v c="$count" -v a="$t0" -v b="$t1" 'BEGIN {printf "%.0f", c/(b-a)}')"
  S_RSS_MB="$(awk '{printf "%.0f", $1/1024}' "$WORK/send.rss")"
  S_P95="$(sed -n 's/.*p95 \([0-9.]*\).*/\1/p' "$out")"
}

# The 1-minute load average right now (other work on the machine skews every number).
loadavg() { cut -d' ' -f1 /proc/loadavg; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a ~ /^[0-9.]+$/ && b > 0) printf "%.2f", a/b; else print "-" }'; }

row() { printf '| %-58s | %12s | %9s | %6s | %s\n' "$1" "$2" "$3" "$4" "$5"; }

declare -a ROWS

load_tool="wrk -t$WRK_THREADS -c$CONNS -d${SECONDS_PER_RUN}s"
[ "$HAVE_WRK" = 1 ] || load_tool="gitspy-chaos send (wrk not installed)"

# 1. The bare server.
start_listening "$WORK/bare" env GITSPY_LISTEN=127.0.0.1:0 "$BARE"
BARE_URL="http://$ADDR/webhooks"; BARE_PID=$LAST_PID
echo "bench: bare server ($load_tool)" >&2
if [ "$HAVE_WRK" = 1 ]; then
  run_wrk "$BARE_URL"; BARE_RPS=$RPS; BARE_P99=$P99; BARE_LOAD=$(loadavg)
  [ "$BAD" = 0 ] || echo "bench: warning: $BAD bad answers from the bare server" >&2
  # 2. The harness's sender against the same server.
  SEND_RPS=skipped; SEND_RSS="-"; SEND_LOAD="-"
  if part sender; then
    echo "bench: gitspy-chaos send against the bare server ($SENDER_COUNT requests)" >&2
    run_sender "$BARE_URL" "$SENDER_COUNT"
    SEND_RPS=$S_RPS; SEND_RSS=$S_RSS_MB; SEND_LOAD=$(loadavg)
  fi
else
  run_sender "$BARE_URL" "$SENDER_COUNT"; BARE_RPS=$S_RPS; BARE_P99="-"; SEND_RPS=$S_RPS; SEND_RSS=$S_RSS_MB
  BARE_LOAD=$(loadavg); SEND_LOAD=$BARE_LOAD
fi
stop_pid "$BARE_PID"

# 3. gitspy serve with AOF everysec and always.
for fsync in everysec always; do
  eval "SERVE_${fsync}_RPS=skipped; SERVE_${fsync}_P99=-; SERVE_${fsync}_LOAD=-"
  part ingest || continue
  start_redis "$fsync"
  start_listening "$WORK/serve-$fsync" env GITSPY_LISTEN=127.0.0.1:0 REDIS_URL="$REDIS_URL" \
    GITHUB_WEBHOOK_SECRET="$SECRET" GITSPY_DB="$WORK/serve-$fsync.db" RUST_LOG=warn "$GITSPY" serve
  SERVE_PID=$LAST_PID
  echo "bench: gitspy serve, AOF $fsync" >&2
  if [ "$HAVE_WRK" = 1 ]; then
    run_wrk "http://$ADDR/webhooks"
  else
    run_sender "http://$ADDR/webhooks" "$SENDER_COUNT"; RPS=$S_RPS; P99="p95 $S_P95"; BAD=0
  fi
  queued="$(redis-cli -p "$REDIS_PORT" XLEN gitspy:events)"
  [ "$BAD" = 0 ] || echo "bench: warning: $BAD bad answers from gitspy serve (AOF $fsync)" >&2
  eval "SERVE_${fsync}_RPS=$RPS; SERVE_${fsync}_P99=$P99; SERVE_${fsync}_QUEUED=$queued; SERVE_${fsync}_LOAD=$(loadavg)"
  stop_pid "$SERVE_PID"; stop_pid "$REDIS_PID"
done

# 4. Drain: a backlog filled through gitspy serve with no worker running, then WORKERS workers.
DRAIN_RPS=skipped; DRAIN_S="-"; DRAIN_LOAD="-"; backlog="$BACKLOG"
if part drain; then
start_redis everysec
start_listening "$WORK/serve-drain" env GITSPY_LISTEN=127.0.0.1:0 REDIS_URL="$REDIS_URL" \
  GITHUB_WEBHOOK_SECRET="$SECRET" GITSPY_DB="$WORK/drain.db" RUST_LOG=warn "$GITSPY" serve
SERVE_PID=$LAST_PID
echo "bench: filling a backlog of $BACKLOG deliveries (12 cards) through gitspy serve" >&2
timeout 600 "$CHAOS" send --url "http://$ADDR/webhooks" --secret "$SECRET" --count "$BACKLOG" \
  --rate "$UNPACED" --concurrency "$CONNS" --seed 7 --event issues,pull_request,issue_comment \
  >"$WORK/fill.out" 2>"$WORK/fill.err" || die "filling the backlog failed: $(tail -5 "$WORK/fill.err")"
stop_pid "$SERVE_PID"
backlog="$(redis-cli -p "$REDIS_PORT" XLEN gitspy:events)"
echo "bench: draining $backlog entries with $WORKERS workers" >&2
t0="$(date +%s.%N)"
WPIDS=()
for i in $(seq 1 "$WORKERS"); do
  start_listening "$WORK/worker-$i" env WORKER_METRICS_PORT=0 REDIS_URL="$REDIS_URL" \
    GITSPY_DB="$WORK/drain.db" RUST_LOG=warn GITSPY_WORKER_CONCURRENCY="$WORKER_BATCH" "$GITSPY" worker
  WPIDS+=("$LAST_PID")
done
deadline=$(( $(date +%s) + 600 ))
while :; do
  left="$(redis-cli -p "$REDIS_PORT" XLEN gitspy:events)"
  [ "$left" = 0 ] && break
  [ "$(date +%s)" -lt "$deadline" ] || die "drain did not finish in 600 s ($left left)"
  sleep 0.05
done
t1="$(date +%s.%N)"
DRAIN_RPS="$(awk -v c="$backlog" -v a="$t0" -v b="$t1" 'BEGIN {printf "%.0f", c/(b-a)}')"
DRAIN_S="$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b-a}')"
DRAIN_LOAD=$(loadavg)
for p in "${WPIDS[@]}"; do stop_pid "$p"; done
stop_pid "$REDIS_PID"
fi

# 5. The same ingest and drain with GitSpy's store in PostgreSQL (GITSPY_DB=postgres://…), beside
# the SQLite numbers above: a PostgreSQL server of its own on a free port (skipped, and said so,
# when the postgresql package is missing; BENCH_POSTGRES=0 skips it too).
PG_BIN="${GITSPY_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}"
PG_DONE=0
if [ "${BENCH_POSTGRES:-1}" = 1 ] && [ -n "$PG_BIN" ] && [ -x "$PG_BIN/initdb" ]; then
  pgdir="$WORK/pg"; mkdir -p "$pgdir"; as_pg=()
  if [ "$(id -u)" = 0 ]; then
    # PostgreSQL refuses to run as root: its binaries run as the postgres user.
    chmod 711 "$WORK"; chown postgres:postgres "$pgdir"
    as_pg=(setpriv --reuid=postgres --regid=postgres --clear-groups --)
  fi
  "${as_pg[@]}" "$PG_BIN/initdb" --auth=trust --username=postgres --no-sync --encoding=UTF8 \
    --locale=C.UTF-8 -D "$pgdir/data" >"$pgdir/initdb.log" 2>&1 || die "initdb failed: $(tail -3 "$pgdir/initdb.log")"
  PG_PORT="$(free_port)"
  "${as_pg[@]}" "$PG_BIN/postgres" -D "$pgdir/data" -p "$PG_PORT" -c listen_addresses=127.0.0.1 \
    -c unix_socket_directories="$pgdir" -c max_connections=100 >"$pgdir/log" 2>&1 &
  PG_PID=$!
  PIDS+=("$PG_PID")
  for _ in $(seq 1 100); do
    "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" && break
    sleep 0.1
  done
  "$PG_BIN/psql" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -c "CREATE DATABASE ingest" -c "CREATE DATABASE drain" \
    >/dev/null || die "PostgreSQL did not start: $(tail -3 "$pgdir/log")"
  PG_URL="postgres://postgres@127.0.0.1:$PG_PORT"
  start_redis everysec
  start_listening "$WORK/serve-pg" env GITSPY_LISTEN=127.0.0.1:0 REDIS_URL="$REDIS_URL" \
    GITHUB_WEBHOOK_SECRET="$SECRET" GITSPY_DB="$PG_URL/ingest" RUST_LOG=warn "$GITSPY" serve
  SERVE_PID=$LAST_PID
  echo "bench: gitspy serve on PostgreSQL, AOF everysec" >&2
  if [ "$HAVE_WRK" = 1 ]; then
    run_wrk "http://$ADDR/webhooks"
  else
    run_sender "http://$ADDR/webhooks" "$SENDER_COUNT"; RPS=$S_RPS; P99="p95 $S_P95"; BAD=0
  fi
  PG_SERVE_RPS=$RPS; PG_SERVE_P99=$P99; PG_SERVE_LOAD=$(loadavg)
  stop_pid "$SERVE_PID"; stop_pid "$REDIS_PID"
  start_redis everysec
  start_listening "$WORK/serve-pg-drain" env GITSPY_LISTEN=127.0.0.1:0 REDIS_URL="$REDIS_URL" \
    GITHUB_WEBHOOK_SECRET="$SECRET" GITSPY_DB="$PG_URL/drain" RUST_LOG=warn "$GITSPY" serve
  SERVE_PID=$LAST_PID
  echo "bench: filling a backlog of $BACKLOG deliveries for PostgreSQL" >&2
  timeout 600 "$CHAOS" send --url "http://$ADDR/webhooks" --secret "$SECRET" --count "$BACKLOG" \
    --rate "$UNPACED" --concurrency "$CONNS" --seed 7 --event issues,pull_request,issue_comment \
    >"$WORK/fill-pg.out" 2>"$WORK/fill-pg.err" || die "filling the backlog failed: $(tail -5 "$WORK/fill-pg.err")"
  stop_pid "$SERVE_PID"
  pg_backlog="$(redis-cli -p "$REDIS_PORT" XLEN gitspy:events)"
  echo "bench: draining $pg_backlog entries into PostgreSQL with $WORKERS workers" >&2
  t0="$(date +%s.%N)"
  WPIDS=()
  for i in $(seq 1 "$WORKERS"); do
    start_listening "$WORK/worker-pg-$i" env WORKER_METRICS_PORT=0 REDIS_URL="$REDIS_URL" \
      GITSPY_DB="$PG_URL/drain" RUST_LOG=warn "$GITSPY" worker
    WPIDS+=("$LAST_PID")
  done
  deadline=$(( $(date +%s) + 600 ))
  while :; do
    left="$(redis-cli -p "$REDIS_PORT" XLEN gitspy:events)"
    [ "$left" = 0 ] && break
    [ "$(date +%s)" -lt "$deadline" ] || die "drain into PostgreSQL did not finish in 600 s ($left left)"
    sleep 0.05
  done
  t1="$(date +%s.%N)"
  PG_DRAIN_RPS="$(awk -v c="$pg_backlog" -v a="$t0" -v b="$t1" 'BEGIN {printf "%.0f", c/(b-a)}')"
  PG_DRAIN_S="$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b-a}')"
  PG_DRAIN_LOAD=$(loadavg)
  for p in "${WPIDS[@]}"; do stop_pid "$p"; done
  stop_pid "$REDIS_PID"
  PG_DONE=1
else
  echo "bench: PostgreSQL rows skipped (BENCH_POSTGRES=0, or no initdb: apt-get install postgresql)" >&2
fi

cores="$(nproc)"
cpu="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
load="$(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "gitspy bench — $(date -u +%Y-%m-%dT%H:%MZ), $cores cores ($cpu), load before the table: $load"
echo "body: issues.opened, $BODY_BYTES bytes, signed; load: $load_tool; Redis AOF, auto-rewrite off"
echo "binaries: $BIN (tree at commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'))"
echo
printf '| %-58s | %12s | %9s | %6s | %s\n' "what" "req/s" "p99 ms" "load" "ratio"
printf '|%s|%s|%s|%s|%s\n' "$(printf -- '-%.0s' {1..60})" "$(printf -- '-%.0s' {1..14})" "$(printf -- '-%.0s' {1..11})" "$(printf -- '-%.0s' {1..8})" "------"
row "bare axum server (reads the body, answers 202)" "$BARE_RPS" "$BARE_P99" "$BARE_LOAD" "1.00 (reference)"
row "gitspy serve, Redis AOF everysec" "$SERVE_everysec_RPS" "$SERVE_everysec_P99" "$SERVE_everysec_LOAD" "$(ratio "$SERVE_everysec_RPS" "$BARE_RPS")× bare"
row "gitspy serve, Redis AOF always" "$SERVE_always_RPS" "$SERVE_always_P99" "$SERVE_always_LOAD" "$(ratio "$SERVE_always_RPS" "$BARE_RPS")× bare"
row "gitspy-chaos send to the bare server ($SENDER_COUNT req, ledger on)" "$SEND_RPS" "-" "$SEND_LOAD" "$(ratio "$SEND_RPS" "$BARE_RPS")× wrk, peak RSS ${SEND_RSS} MB"
row "drain: $backlog backlog, 12 cards, $WORKERS workers × $WORKER_BATCH/batch (per s)" "$DRAIN_RPS" "-" "$DRAIN_LOAD" "${DRAIN_S} s"
if [ "$PG_DONE" = 1 ]; then
  row "gitspy serve, AOF everysec, store in PostgreSQL" "$PG_SERVE_RPS" "$PG_SERVE_P99" "$PG_SERVE_LOAD" "$(ratio "$PG_SERVE_RPS" "$SERVE_everysec_RPS")× SQLite"
  row "drain into PostgreSQL: $pg_backlog backlog, $WORKERS workers (deliveries/s)" "$PG_DRAIN_RPS" "-" "$PG_DRAIN_LOAD" "${PG_DRAIN_S} s, $(ratio "$PG_DRAIN_RPS" "$DRAIN_RPS")× SQLite"
fi
