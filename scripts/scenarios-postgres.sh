#!/usr/bin/env bash
# Scenarios against GitSpy on a PostgreSQL store (`run --store postgres`: the harness starts a
# PostgreSQL server of its own for each run), on the process Redis backend: the smoke test, the
# worker crashes, the store lock (LOCK TABLE on PostgreSQL) and the PostgreSQL-only scenarios in
# scenarios/postgres/ (connections terminated mid-flood). Needs the `postgresql` package
# (scripts/test.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --bins
chaos=target/debug/gitspy-chaos
out=${REPORT_DIR:-reports}
"$chaos" cleanup >/dev/null
failed=0
for s in scenarios/01-smoke.yaml scenarios/03-worker-crash.yaml scenarios/08-store-faults.yaml scenarios/postgres/*.yaml; do
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
