#!/bin/sh
# Holds Porter's TLS accept step to a bare rustls server with tlsfuzzer: the same probes
# against `porter serve` and against examples/bare_rustls.rs, both with the same RSA
# certificate, then a table of passes and failures per script and the probes whose outcome
# differs. What fails on both is rustls's; what fails on Porter alone is Porter's. Not part of
# CI (it needs a tlsfuzzer checkout and tlslite-ng from PyPI).
#
#   scripts/tlsfuzzer.sh TLSFUZZER_DIR [SCRIPT...]
#
# TLSFUZZER_DIR: a checkout of https://github.com/tlsfuzzer/tlsfuzzer. SCRIPT: names from its
# scripts/ folder (default: the four the accept step is judged by). Exits non-zero when a probe
# fails on Porter alone.
set -eu
[ $# -ge 1 ] || { echo "usage: $0 TLSFUZZER_DIR [SCRIPT...]" >&2; exit 2; }
tlsfuzzer=$(cd "$1" && pwd)
shift
scripts=${*:-"test-invalid-client-hello test-message-skipping test-tls13-multiple-ccs-messages test-tls13-0rtt-garbage"}
. "$(dirname "$0")/lib.sh"
python3 -c 'import tlslite' 2>/dev/null || pip install tlslite-ng==0.9.0b2 ecdsa

start_porter --example bare_rustls
bare_port=$(free_port)
"$root/target/release/examples/bare_rustls" "127.0.0.1:$bare_port" "$work/cert.pem" \
    "$work/key.pem" >"$work/bare.log" 2>&1 &
pids="$pids $!"
wait_port "$bare_port"

# Runs SCRIPT against PORT (clients send no SNI: they connect to an address); prints
# "passed/failed" and leaves the names of the failing probes in FILE.
run() {
    out="$work/$1-$2.out"
    (cd "$tlsfuzzer" && PYTHONPATH=. timeout 900 python3 "scripts/$1.py" -h 127.0.0.1 -p "$2" \
        -n 0) >"$out" 2>&1 || true
    passed=$(sed -n 's/^PASS: *\([0-9]*\).*/\1/p' "$out" | tail -1)
    failed=$(sed -n 's/^FAIL: *\([0-9]*\).*/\1/p' "$out" | tail -1)
    sed -n '/^FAILED:/,/^[^[:space:]]/p' "$out" | sed -n "s/^[[:space:]]*'\(.*\)'\$/\1/p" |
        sort -u >"$3"
    echo "${passed:-?}/${failed:-?}"
}

printf '%-36s %17s %17s\n' script "porter pass/fail" "rustls pass/fail"
differs=0
for script in $scripts; do
    porter=$(run "$script" "$porter_port" "$work/$script.porter.failed")
    bare=$(run "$script" "$bare_port" "$work/$script.bare.failed")
    printf '%-36s %17s %17s\n' "$script" "$porter" "$bare"
    only=$(comm -23 "$work/$script.porter.failed" "$work/$script.bare.failed")
    if [ -n "$only" ]; then
        differs=1
        echo "  failing on Porter alone:"
        echo "$only" | sed 's/^/    /'
    fi
done
exit $differs
