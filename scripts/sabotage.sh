#!/usr/bin/env bash
# Runs the shipped scenarios against deliberately broken GitSpy builds and prints whether each
# broken variant was caught: a matrix variant × scenario → caught k/N (a run that exits 1 caught
# it), then the pass rate of the same binary with no variant chosen.
#
# The broken build is `gitspy --features failpoints,sabotage` in its own target dir (so the
# default target/debug/gitspy is never replaced); the variant reaches the managed gitspy
# processes through `gitspy-chaos run --target-env GITSPY_SABOTAGE=<variant>` when the harness
# has that flag, else through the environment they inherit.
#
# Usage: scripts/sabotage.sh [--quick] [VARIANT...]
#   SEEDS=N          seeds per variant and scenario (default 2; 10 for the full matrix)
#   SCENARIOS="a b"  scenario files (default: scenarios/0*.yaml)
#   VARIANTS="a b"   variants (default: all, or the arguments)
#   BACKEND=process  Redis backend (process|docker|auto; default process)
#   TIME_SCALE=F     passed to --time-scale (default 1)
#   RUN_TIMEOUT=S    seconds one run may take before it counts as an error (default 900)
#   REPORT_DIR=DIR   where every run's report goes (default /tmp/gitspy-sabotage-reports)
#   SABOTAGE_TARGET_DIR=DIR  cargo target dir of the broken build (default target/sabotage)
#   --quick          SEEDS=1, scenarios 01, 03 and 04, TIME_SCALE=0.2 (each overridable)
#   --ci             each variant against the one shipped scenario meant to catch it (PAIRS, below),
#                    SEEDS=1 by default; exit 0 only when every pair exits 1 (caught) in every seed.
#                    No correct-build runs: scripts/scenarios.sh runs every scenario on that build.
#   PAIRS="variant:scenario[@time-scale] …"  the --ci pairs (default: the list in this script)
#   MAX_WAIT=D       --ci runs use `run --fail-fast --max-wait D` (default 45s): a broken build that
#                    stops draining is judged as soon as a step fails, not after every timeout
#
# Exit: 0 when every variant was caught in every seed by at least one scenario and the
# unsabotaged runs all passed; 1 otherwise; 2 when it could not run.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
ci=0
args=()
for a in "$@"; do
  case "$a" in
    --quick) quick=1 ;;
    --ci) ci=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "error: unknown option $a (see --help)" >&2; exit 2 ;;
    *) args+=("$a") ;;
  esac
done

all_variants="ack-before-commit never-reclaim lock-without-ttl apply-twice retry-forever
stop-after-redis-error fold-arrival-order enqueue-duplicates drop-one-in-twenty
undercount-processed spool-skip-last spool-stuck-last accept-on-enqueue-failure tombstone-by-arrival
tie-by-arrival uncounted-spooled"
if [ ${#args[@]} -gt 0 ]; then
  variants="${args[*]}"
else
  variants=${VARIANTS:-$all_variants}
fi
if [ "$quick" = 1 ] || [ "$ci" = 1 ]; then
  seeds=${SEEDS:-1}
  scenarios=${SCENARIOS:-scenarios/01-smoke.yaml scenarios/03-worker-crash.yaml scenarios/04-duplicates.yaml}
  scale=${TIME_SCALE:-0.2}
else
  seeds=${SEEDS:-2}
  scenarios=${SCENARIOS:-$(ls scenarios/0*.yaml)}
  scale=${TIME_SCALE:-1}
fi
backend=${BACKEND:-process}
run_timeout=${RUN_TIMEOUT:-900}
out=${REPORT_DIR:-/tmp/gitspy-sabotage-reports}
sabotage_target=${SABOTAGE_TARGET_DIR:-target/sabotage}
command -v jq >/dev/null 2>&1 || { echo "error: jq is missing (apt-get install jq)" >&2; exit 2; }

echo "building gitspy --features failpoints,sabotage into $sabotage_target" >&2
CARGO_TARGET_DIR="$sabotage_target" cargo build --quiet -p gitspy --features failpoints,sabotage || exit 2
echo "building gitspy-chaos" >&2
cargo build --quiet --bin gitspy-chaos || exit 2
gitspy="$(cd "$sabotage_target/debug" && pwd)/gitspy"
chaos="${CARGO_TARGET_DIR:-target}/debug/gitspy-chaos"
"$gitspy" --version | grep -q 'failpoints, sabotage' || {
  echo "error: $gitspy is not a failpoints+sabotage build: $("$gitspy" --version)" >&2
  exit 2
}
for v in $variants; do
  case " $(echo $all_variants) " in
    *" $v "*) ;;
    *) echo "error: unknown variant $v; valid: $(echo $all_variants)" >&2; exit 2 ;;
  esac
done
# --ci: stop a run at its first failed step and cap every drain wait, so a variant that stops
# draining costs under a minute instead of waiting out each timeout (a catch either way: exit 1).
fast=()
if [ "$ci" = 1 ] && "$chaos" run --help 2>/dev/null | grep -q -- '--fail-fast'; then
  fast=(--fail-fast --max-wait "${MAX_WAIT:-45s}")
fi
if "$chaos" run --help 2>/dev/null | grep -q -- '--target-env'; then
  via=flag
else
  via=env
fi
echo "variant reaches gitspy via: $via; seeds: $seeds; backend: $backend; time scale: $scale" >&2

rm -rf "$out"
mkdir -p "$out"
results="$out/results.tsv"
: >"$results"
"$chaos" cleanup >/dev/null 2>&1 || true

# One run: prints the harness exit code; writes its report under $out/<variant>/<scenario>/<seed>.
run_one() {
  local variant=$1 scenario=$2 seed=$3
  local name dir code
  name=$(basename "$scenario" .yaml)
  dir="$out/$variant/$name/seed-$seed"
  mkdir -p "$dir"
  local cmd=("$chaos" run "$scenario" --gitspy-bin "$gitspy" --seed "$seed" --backend "$backend"
    --time-scale "$scale" --report-dir "$dir" "${fast[@]}")
  set +e
  if [ "$variant" = none ]; then
    env -u GITSPY_SABOTAGE timeout "$run_timeout" "${cmd[@]}" >"$dir/stdout" 2>"$dir/stderr"
  elif [ "$via" = flag ]; then
    env -u GITSPY_SABOTAGE timeout "$run_timeout" "${cmd[@]}" --target-env "GITSPY_SABOTAGE=$variant" \
      >"$dir/stdout" 2>"$dir/stderr"
  else
    GITSPY_SABOTAGE=$variant timeout "$run_timeout" "${cmd[@]}" >"$dir/stdout" 2>"$dir/stderr"
  fi
  code=$?
  set -e
  local failed
  failed=$(find "$dir" -name run.json -print -quit | xargs -r jq -r \
    '[.checks[]? | select(.passed == false) | .name] | join(",")' 2>/dev/null || true)
  printf '%s\t%s\t%s\t%s\t%s\n' "$variant" "$name" "$seed" "$code" "${failed:--}" >>"$results"
  echo "  $variant × $name seed $seed → exit $code ${failed:+(failed: $failed)}" >&2
}

# --ci: one designated scenario per variant; every seed must be caught (exit 1: a failed check;
# exit 3, inconclusive, is not a catch).
default_pairs="ack-before-commit:08-store-faults never-reclaim:03-worker-crash
lock-without-ttl:03-worker-crash apply-twice:07-crash-points retry-forever:08-store-faults
stop-after-redis-error:02-redis-down fold-arrival-order:04-duplicates
enqueue-duplicates:04-duplicates drop-one-in-twenty:06-combined@0.2
undercount-processed:04-duplicates spool-skip-last:02b-redis-down-spool
spool-stuck-last:02b-redis-down-spool accept-on-enqueue-failure:02-redis-down
tombstone-by-arrival:05-replay tie-by-arrival:05-replay
uncounted-spooled:02b-redis-down-spool"
if [ "$ci" = 1 ]; then
  missed=0
  for pair in ${PAIRS:-$default_pairs}; do
    variant=${pair%%:*}
    rest=${pair#*:}
    scenario="scenarios/${rest%%@*}.yaml"
    scale=${TIME_SCALE:-1}
    case "$rest" in *@*) scale=${rest#*@} ;; esac
    [ -f "$scenario" ] || { echo "error: no scenario $scenario (pair $pair)" >&2; exit 2; }
    for seed in $(seq 1 "$seeds"); do
      run_one "$variant" "$scenario" "$seed"
      code=$(tail -n 1 "$results" | cut -f4)
      if [ "$code" = 3 ]; then
        # Inconclusive: the crash fault hit nothing, so the run says nothing; once more.
        run_one "$variant" "$scenario" "$seed"
        code=$(tail -n 1 "$results" | cut -f4)
      fi
      if [ "$code" != 1 ]; then
        missed=$((missed + 1))
        echo "NOT CAUGHT: $variant by $scenario seed $seed (exit $code)" >&2
      fi
    done
  done
  "$chaos" cleanup >/dev/null 2>&1 || true
  printf '\nvariant\tscenario\tseed\texit\tfailed checks\n'
  cat "$results"
  if [ "$missed" -gt 0 ]; then
    echo "error: $missed sabotaged run(s) were not caught" >&2
    exit 1
  fi
  echo "every sabotaged variant was caught by its scenario in every seed" >&2
  exit 0
fi

for variant in none $variants; do
  echo "=== ${variant/none/no sabotage (correct build)}" >&2
  for scenario in $scenarios; do
    for seed in $(seq 1 "$seeds"); do
      run_one "$variant" "$scenario" "$seed"
    done
  done
done
"$chaos" cleanup >/dev/null 2>&1 || true

# The matrix.
names=$(for s in $scenarios; do basename "$s" .yaml; done)
printf '\n%-26s' "variant \\ scenario"
for n in $names; do printf ' %-16s' "${n:0:16}"; done
printf ' %s\n' "caught in every seed by"
ok=1
for variant in $variants; do
  printf '%-26s' "$variant"
  best=""
  for n in $names; do
    k=$(awk -F'\t' -v v="$variant" -v n="$n" '$1==v && $2==n && $4==1' "$results" | wc -l)
    e=$(awk -F'\t' -v v="$variant" -v n="$n" '$1==v && $2==n && $4!=0 && $4!=1' "$results" | wc -l)
    cell="$k/$seeds"
    [ "$e" -gt 0 ] && cell="$cell ($e err)"
    printf ' %-16s' "$cell"
    if [ "$k" -eq "$seeds" ]; then
      checks=$(awk -F'\t' -v v="$variant" -v n="$n" '$1==v && $2==n && $4==1 {print $5}' "$results" \
        | tr ',' '\n' | grep -v '^-$' | sort | uniq -c | sort -rn | head -3 | awk '{print $2}' \
        | paste -sd+)
      best="${best:+$best, }$n${checks:+ [$checks]}"
    fi
  done
  printf ' %s\n' "${best:-NONE}"
  [ -n "$best" ] || ok=0
done
printf '%-26s' "correct build: passed"
for n in $names; do
  k=$(awk -F'\t' -v n="$n" '$1=="none" && $2==n && $4==0' "$results" | wc -l)
  printf ' %-16s' "$k/$seeds"
  [ "$k" -eq "$seeds" ] || ok=0
done
printf '\n\nper-run results (variant, scenario, seed, exit, failed checks): %s\n' "$results"
[ "$ok" = 1 ]
