#!/usr/bin/env bash
# Runs the 64-writer store test (tests/store.rs) N times in a row (default 20) and reports how
# many runs passed, failed or hung (no result within 5 minutes). Not part of CI: it takes about
# N x 20 s. Usage: scripts/store-soak.sh [N]
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
test=sixty_four_writers_through_the_api_and_the_cli_lose_nothing_while_the_edge_serves
cargo test --locked --test store --no-run >/dev/null 2>&1 || { echo "build failed" >&2; exit 1; }
passed=0 failed=0 hung=0
for i in $(seq "$runs"); do
  log=$(mktemp)
  timeout --signal=KILL 300 cargo test --locked --test store -- --exact "$test" --nocapture >"$log" 2>&1
  rc=$?
  p99=$(grep -o 'p99 [0-9.]*[mu]*s' "$log" | head -1)
  took=$(grep -o 'writers in [0-9.]*s' "$log" | head -1)
  case $rc in
    0) passed=$((passed + 1)); echo "run $i: passed ($took, $p99)" ;;
    137) hung=$((hung + 1)); echo "run $i: HUNG (no result within 300 s), log kept in $log"; continue ;;
    *) failed=$((failed + 1)); echo "run $i: FAILED, log kept in $log"; continue ;;
  esac
  rm -f "$log"
done
echo "$runs runs: $passed passed, $failed failed, $hung hung"
[ "$passed" -eq "$runs" ]
