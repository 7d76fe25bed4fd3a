#!/usr/bin/env bash
# Scenarios against GitSpy on a PostgreSQL store (`run --store postgres`: the harness starts a
# PostgreSQL server of its own for each run, and puts its TCP proxy on every GitSpy → PostgreSQL
# link), on the process Redis backend. A set chosen to fit ~5 minutes (3.5 measured): the smoke test, Redis down,
# worker crashes, duplicates, replay (`gitspy replay --db postgres://…`), the store lock (LOCK
# TABLE on PostgreSQL), a worker cut off from Redis, cut links, and the PostgreSQL-only scenarios
# in scenarios/postgres/ (connections terminated mid-flood; partitions and resets of the
# worker → PostgreSQL links). Every other shipped scenario passes on PostgreSQL too (README,
# "PostgreSQL store"); scripts/scenarios.sh runs them on SQLite. Needs the `postgresql` package
# (scripts/test.sh installs it). Env: CARGO_TARGET_DIR (where the binaries are built, default
# target), REPORT_DIR (default reports).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --bins
chaos=${CARGO_TARGET_DIR:-target}/debug/gitspy-chaos
out=${REPORT_DIR:-reports}
"$chaos" cleanup >/dev/null
failed=0
for s in scenarios/01-smoke.yaml scenarios/02-redis-down.yaml scenarios/03-worker-crash.yaml \
    scenarios/04-duplicates.yaml scenarios/05-replay.yaml scenarios/08-store-faults.yaml \
    scenarios/09c-worker-partition.yaml scenarios/09d-cut-links.yaml scenarios/postgres/*.yaml; do
  echo "=== $s on postgres (process backend)" >&2
  start=$(date +%s)
  code=0
  for try in 1 2; do
    code=0
    "$chaos" run "$s" --backend process --store postgres --report-dir "$out" \
      >/tmp/gitspy-chaos-scenario-pg.out || code=$?
    # Exit 3 (inconclusive) is retried once; a failed check (exit 1) never is.
    [ "$code" = 3 ] && [ "$try" = 1 ] && { echo "inconclusive, once more: $s" >&2; continue; }
    break
  done
  if [ "$code" != 0 ]; then
    failed=$((failed + 1))
    echo "FAILED (exit $code): $s on postgres" >&2
  fi
  head -n 1 /tmp/gitspy-chaos-scenario-pg.out
  echo "    ($(( $(date +%s) - start )) s)" >&2
done
"$chaos" cleanup >/dev/null
if [ "$failed" -gt 0 ]; then
  echo "error: $failed scenario run(s) on postgres failed" >&2
  exit 1
fi
echo "all postgres scenarios passed" >&2
