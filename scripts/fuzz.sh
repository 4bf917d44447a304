#!/bin/sh
# Runs each fuzz target of fuzz/ for a bounded time and prints a table: executions, corpus
# size and crashes per target. Not part of CI (it installs cargo-fuzz and runs for minutes).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default 60 s, every target)
#
# The corpus grows in fuzz/corpus/TARGET and is kept in the repository (minimised first with
# `cargo fuzz cmin TARGET`); a crash leaves its input in fuzz/artifacts/TARGET/ and makes the
# script exit non-zero. cargo-fuzz asks for nightly-only compiler flags: RUSTC_BOOTSTRAP lets
# the machine's one stable toolchain accept them.
set -u
cd "$(dirname "$0")/../fuzz"
seconds=${1:-60}
[ $# -gt 0 ] && shift
targets=${*:-"request_head domain_name store_records"}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked || exit 1
export RUSTC_BOOTSTRAP=1
failed=0
printf '%-15s %12s %8s %8s\n' target executions corpus crashes > table.txt
for target in $targets; do
    mkdir -p "corpus/$target"
    log="artifacts/$target.log"
    mkdir -p artifacts
    cargo fuzz run "$target" "corpus/$target" -- -max_total_time="$seconds" -max_len=4096 \
        >"$log" 2>&1
    status=$?
    runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -1)
    crashes=$(ls "artifacts/$target" 2>/dev/null | grep -c '^crash-\|^oom-\|^timeout-')
    [ "$status" -ne 0 ] && failed=1
    printf '%-15s %12s %8s %8s\n' "$target" "${runs:-?}" "$(ls "corpus/$target" | wc -l)" \
        "$crashes" >> table.txt
    [ "$status" -ne 0 ] && tail -30 "$log"
done
cat table.txt
rm -f table.txt
exit $failed
