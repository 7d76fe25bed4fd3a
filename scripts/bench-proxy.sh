#!/usr/bin/env bash
# The network proxy's overhead on ingest: wrk floods `gitspy serve` with signed webhooks
# (a real GitHub `issues` payload, a fresh delivery id per request) once straight
# (wrk -> serve -> redis-server) and once through two `gitspy-chaos proxy` links, as a managed
# run wires them (wrk -> proxy -> serve -> proxy -> redis-server). Release builds; each side
# runs ROUNDS times, alternating, DURATION each; prints requests/s and latency per round and the
# overhead of the medians. Needs: wrk, redis-server, openssl.
#
#   scripts/bench-proxy.sh                 # 3 rounds of 10 s, 2 threads, 16 connections
#   ROUNDS=5 DURATION=20s CONNS=32 scripts/bench-proxy.sh
#   CARGO_TARGET_DIR=/elsewhere BENCH_NO_BUILD=1 scripts/bench-proxy.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-16}
THREADS=${THREADS:-2}
target=${CARGO_TARGET_DIR:-target}

# BENCH_NO_BUILD=1 reuses the release binaries already in the target dir.
[ "${BENCH_NO_BUILD:-}" = 1 ] || cargo build --quiet --release --bins
chaos="$target/release/gitspy-chaos"
gitspy="$target/release/gitspy"
for tool in wrk redis-server openssl; do
  command -v "$tool" >/dev/null || { echo "error: $tool is not installed" >&2; exit 2; }
done

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Waits for "<prefix><addr>" as the first line of $1 and prints the address.
first_addr() {
  local file=$1 prefix=$2
  for _ in $(seq 1 200); do
    if [ -s "$file" ]; then
      local line
      line=$(head -n 1 "$file")
      case "$line" in "$prefix"*) echo "${line#"$prefix"}" | cut -d' ' -f1; return 0 ;; esac
    fi
    sleep 0.05
  done
  echo "error: no address line in $file" >&2
  cat "$file" >&2
  exit 2
}

rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >/dev/null &
pids+=($!)
for _ in $(seq 1 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.05; done

secret=bench-secret
serve() { # $1: name, $2: redis port
  REDIS_URL="redis://127.0.0.1:$2" GITSPY_DB="$work/$1.db" GITHUB_WEBHOOK_SECRET=$secret \
    GITSPY_LISTEN=127.0.0.1:0 GITSPY_SPOOL_DIR="$work/$1-spool" NO_COLOR=1 \
    "$gitspy" serve >"$work/$1.out" 2>"$work/$1.err" &
  pids+=($!)
  first_addr "$work/$1.out" "listening on http://"
}
proxy() { # $1: name, $2: upstream
  "$chaos" proxy "$2" >"$work/$1.out" 2>&1 &
  pids+=($!)
  first_addr "$work/$1.out" "proxy listening on "
}

direct=$(serve direct "$rport")
redis_link=$(proxy server-redis "127.0.0.1:$rport")
proxied_server=$(serve proxied "${redis_link##*:}")
sender_link=$(proxy sender-server "$proxied_server")

body=payloads/issues/opened.json
sig=$(openssl dgst -sha256 -hmac "$secret" -hex <"$body" | awk '{print $NF}')
cat >"$work/post.lua" <<EOF
local f = io.open("$body", "rb")
local body = f:read("*a")
f:close()
local counter = 0

local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function request()
  counter = counter + 1
  return wrk.format("POST", "/webhooks", {
    ["Content-Type"] = "application/json",
    ["X-GitHub-Event"] = "issues",
    ["X-GitHub-Delivery"] = string.format("bench-%s-%s-%d", "$(date +%s%N)", tostring(tid), counter),
    ["X-Hub-Signature-256"] = "sha256=$sig",
  }, body)
end
function done(summary, latency, requests)
  io.write(string.format("RESULT %.1f %.2f %.2f %d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
EOF

run_wrk() { # $1: label, $2: addr
  local out
  out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" -s "$work/post.lua" "http://$2/webhooks" | grep '^RESULT')
  read -r _ rps p50 p99 errors <<<"$out"
  printf '%-8s %10s req/s  p50 %7s ms  p99 %7s ms  errors %s\n' "$1" "$rps" "$p50" "$p99" "$errors"
  echo "$rps" >>"$work/$1.rps"
}

echo "wrk -t$THREADS -c$CONNS -d$DURATION, $ROUNDS rounds each, alternating; payload $body"
for _ in $(seq 1 "$ROUNDS"); do
  run_wrk direct "$direct"
  run_wrk proxied "${sender_link}"
done
median() { sort -n "$1" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
d=$(median "$work/direct.rps")
p=$(median "$work/proxied.rps")
awk -v d="$d" -v p="$p" 'BEGIN { printf "median: direct %.1f req/s, proxied %.1f req/s, overhead %.1f %%\n", d, p, (d - p) / d * 100 }'
