#!/usr/bin/env bash
# Measures `gitspy-chaos explore` + shrinking against every sabotage variant, and against the
# same binary with no variant chosen (the correct build), over one budget. Per variant: the run
# at which the first failure came, the time to it, the checks that failed, the steps before and
# after shrinking, the shrink time, and the reproduction rate of minimal.yaml (run again
# REPRO times with `gitspy-chaos run`; a run that exits 1 reproduced it).
#
# Usage: scripts/explore-sabotage.sh [VARIANT...]
#   SEED=N            exploration seed (default 11)
#   BUDGET=D          explore budget per variant (default 5m); the correct build gets the same
#   SHRINK_BUDGET=D   shrink budget per variant (default 6m)
#   CONFIRM=K/M       a shrink candidate must fail K of M tries (default 1/1)
#   REPRO=N           reruns of minimal.yaml for the reproduction rate (default 3)
#   TIME_SCALE=F      --time-scale (default 0.5)
#   BACKEND=process   --backend (default process)
#   EXTRA="…"         more explore flags, e.g. "--max-episodes 2"
#   OUT=DIR           where everything goes (default /tmp/gitspy-explore-sabotage)
#   GITSPY_SABOTAGE_BIN=PATH  a `gitspy --features failpoints,sabotage` binary; else it is
#                     built into SABOTAGE_TARGET_DIR (default target/sabotage)
#   NO_CORRECT=1      skip the correct-build run
# Prints a Markdown table (also written to $OUT/table.md). Exit 0 when every variant was found
# and shrunk to at most 4 steps and the correct build found nothing; 1 otherwise; 2 when it
# could not run.
set -euo pipefail
cd "$(dirname "$0")/.."

all_variants="ack-before-commit never-reclaim lock-without-ttl apply-twice retry-forever
stop-after-redis-error fold-arrival-order enqueue-duplicates drop-one-in-twenty
undercount-processed spool-skip-last accept-on-enqueue-failure tombstone-by-arrival"
case "${1:-}" in -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
variants=${*:-$all_variants}
seed=${SEED:-11}
budget=${BUDGET:-5m}
shrink_budget=${SHRINK_BUDGET:-6m}
confirm=${CONFIRM:-1/1}
repro=${REPRO:-3}
scale=${TIME_SCALE:-0.5}
backend=${BACKEND:-process}
out=${OUT:-/tmp/gitspy-explore-sabotage}
command -v jq >/dev/null 2>&1 || { echo "error: jq is missing (apt-get install jq)" >&2; exit 2; }

if [ -n "${GITSPY_SABOTAGE_BIN:-}" ]; then
  gitspy=$GITSPY_SABOTAGE_BIN
else
  sabotage_target=${SABOTAGE_TARGET_DIR:-target/sabotage}
  echo "building gitspy --features failpoints,sabotage into $sabotage_target" >&2
  CARGO_TARGET_DIR="$sabotage_target" cargo build --quiet -p gitspy --features failpoints,sabotage || exit 2
  gitspy="$(cd "$sabotage_target/debug" && pwd)/gitspy"
fi
"$gitspy" --version | grep -q 'failpoints, sabotage' || {
  echo "error: $gitspy is not a failpoints+sabotage build" >&2; exit 2; }
echo "building gitspy-chaos" >&2
cargo build --quiet --bin gitspy-chaos || exit 2
chaos="${CARGO_TARGET_DIR:-target}/debug/gitspy-chaos"
mkdir -p "$out"

table="$out/table.md"
{
  echo "| variant | found at run | time to find | failed checks | steps before → after shrink | shrink time (candidates) | minimal reproduced |"
  echo "|---|---|---|---|---|---|---|"
} >"$table"
bad=0

explore() { # name, then extra args
  local name=$1; shift
  local dir="$out/$name"
  rm -rf "$dir"; mkdir -p "$dir"
  local t0 t1 code=0
  t0=$(date +%s)
  # shellcheck disable=SC2086
  "$chaos" explore --seed "$seed" --budget "$budget" --shrink-budget "$shrink_budget" \
    --confirm "$confirm" --backend "$backend" --time-scale "$scale" --gitspy-bin "$gitspy" \
    --report-dir "$dir" ${EXTRA:-} "$@" >"$dir/explore.log" 2>&1 || code=$?
  t1=$(date +%s)
  echo "$code $((t1 - t0))"
}

for v in $variants; do
  echo "== $v" >&2
  read -r code total < <(explore "$v" --target-env "GITSPY_SABOTAGE=$v")
  json="$out/$v/explore-$seed/explore.json"
  if [ "$code" != 1 ] || [ ! -f "$json" ]; then
    runs=$(jq '.runs | length' "$json" 2>/dev/null || echo "?")
    echo "| \`$v\` | not found ($runs runs, exit $code) | > $budget | — | — | — | — |" >>"$table"
    bad=1
    continue
  fi
  found=$(jq '.found' "$json")
  find_s=$(jq "[.runs[] | select(.index <= $found) | .duration_ms] | add / 1000 | floor" "$json")
  checks=$(jq -r ".runs[$found].failed_checks | join(\", \")" "$json")
  before=$(jq '.shrink.original_steps // "?"' "$json")
  after=$(jq '.shrink.steps // "?"' "$json")
  cands=$(jq '.shrink.attempts | length' "$json")
  complete=$(jq -r 'if .shrink.complete then "" else ", budget spent" end' "$json")
  shrink_s=$((total - find_s))
  [ "$after" != "?" ] && [ "$after" -le 4 ] || bad=1
  minimal="$out/$v/explore-$seed/minimal.yaml"
  hits=0
  for i in $(seq 1 "$repro"); do
    c=0
    "$chaos" run "$minimal" --backend "$backend" --time-scale "$scale" --gitspy-bin "$gitspy" \
      --target-env "GITSPY_SABOTAGE=$v" --report-dir "$out/$v/repro" >"$out/$v/repro-$i.log" 2>&1 || c=$?
    [ "$c" = 1 ] && hits=$((hits + 1))
  done
  echo "| \`$v\` | $found | ${find_s} s | $checks | $before → $after | ${shrink_s} s ($cands$complete) | $hits/$repro |" >>"$table"
  tail -1 "$table" >&2
done

if [ -z "${NO_CORRECT:-}" ]; then
  echo "== correct build (no variant)" >&2
  read -r code total < <(explore correct)
  json="$out/correct/explore-$seed/explore.json"
  runs=$(jq '.runs | length' "$json" 2>/dev/null || echo "?")
  if [ "$code" = 0 ]; then
    echo "| none (correct build) | nothing found: $runs runs in $budget | — | — | — | — | — |" >>"$table"
  else
    echo "| none (correct build) | FOUND (exit $code) in $runs runs: see $json | — | — | — | — | — |" >>"$table"
    bad=1
  fi
fi
cat "$table"
exit "$bad"
