#!/usr/bin/env bash
# Every shipped scenario, on the Docker backend and on the process backend, against real GitSpy
# processes. The combined scenario runs its full 5 minutes on Docker and time-scaled (0.2) on the
# process backend. Needs: a running dockerd and the offline image (scripts/test.sh prepares both).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --bins
chaos=target/debug/gitspy-chaos
out=${REPORT_DIR:-reports}

"$chaos" cleanup
failed=0
for backend in docker process; do
  for s in scenarios/[0-9]*.yaml; do
    scale=1
    case "$s" in
      *06-combined*) [ "$backend" = process ] && scale=0.2 ;;
    esac
    echo "=== $s on $backend (time scale $scale)" >&2
    start=$(date +%s)
    if ! "$chaos" run "$s" --backend "$backend" --time-scale "$scale" --report-dir "$out" >/tmp/gitspy-chaos-scenario.out; then
      failed=$((failed + 1))
      echo "FAILED: $s on $backend" >&2
    fi
    head -n 1 /tmp/gitspy-chaos-scenario.out
    echo "    ($(( $(date +%s) - start )) s)" >&2
  done
done
"$chaos" cleanup >/dev/null
if [ "$failed" -gt 0 ]; then
  echo "error: $failed scenario run(s) failed" >&2
  exit 1
fi
echo "all scenarios passed on both backends" >&2
