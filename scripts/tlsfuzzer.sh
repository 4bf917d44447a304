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
# scripts/ folder (default: the four the accept step is judged by).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
[ $# -ge 1 ] || { echo "usage: $0 TLSFUZZER_DIR [SCRIPT...]" >&2; exit 2; }
tlsfuzzer=$(cd "$1" && pwd)
shift
scripts=${*:-"test-invalid-client-hello test-message-skipping test-tls13-multiple-ccs-messages test-tls13-0rtt-garbage"}
python3 -c 'import tlslite' 2>/dev/null || pip install tlslite-ng==0.9.0b2 ecdsa

work=$(mktemp -d)
pids=""
cleanup() {
    for pid in $pids; do kill "$pid" 2>/dev/null || true; done
    for pid in $pids; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_port() {
    for _ in $(seq 100); do
        python3 -c "import socket; socket.create_connection(('127.0.0.1',$1),1)" 2>/dev/null && return
        sleep 0.1
    done
    echo "nothing listens on $1" >&2
    exit 1
}

cd "$root"
cargo build --release --quiet --bin porter --example bare_rustls
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=a.test \
    -addext subjectAltName=DNS:a.test -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null

porter_port=$(free_port)
bare_port=$(free_port)
data="$work/data"
target/release/porter --data-dir "$data" serve --http "127.0.0.1:$(free_port)" \
    --https "127.0.0.1:$porter_port" --admin "127.0.0.1:$(free_port)" --default-sni a.test \
    >"$work/porter.log" 2>&1 &
pids="$pids $!"
target/release/examples/bare_rustls "127.0.0.1:$bare_port" "$work/cert.pem" "$work/key.pem" \
    >"$work/bare.log" 2>&1 &
pids="$pids $!"
wait_port "$porter_port"
wait_port "$bare_port"
target/release/porter --data-dir "$data" site add a.test --upstream 127.0.0.1:9 >/dev/null
target/release/porter --data-dir "$data" cert import a.test --cert "$work/cert.pem" \
    --key "$work/key.pem" >/dev/null
# The clients send no SNI (they connect to an address): --default-sni answers them.
for _ in $(seq 100); do
    echo | openssl s_client -connect "127.0.0.1:$porter_port" 2>/dev/null | grep -q CN.*a.test && break
    sleep 0.1
done

# Runs SCRIPT against PORT; prints "passed failed" and leaves the failing probes in FILE.
run() {
    out="$work/$1-$2.out"
    (cd "$tlsfuzzer" && PYTHONPATH=. timeout 600 python3 "scripts/$1.py" -h 127.0.0.1 -p "$2" -n 0) \
        >"$out" 2>&1 || true
    sed -n 's/^\(.*\) \.\.\.$/\1/p; /^Failed:/,$p' "$out" >/dev/null
    passed=$(sed -n 's/^PASS: *\([0-9]*\).*/\1/p' "$out" | tail -1)
    failed=$(sed -n 's/^FAIL: *\([0-9]*\).*/\1/p' "$out" | tail -1)
    sed -n '/^Failed:/,/^$/p' "$out" | sed '1d;/^$/d;s/^[[:space:]]*//' | sort >"$3"
    echo "${passed:-?} ${failed:-?}"
}

printf '%-36s %15s %15s\n' script "porter pass/fail" "rustls pass/fail"
differs=0
for script in $scripts; do
    porter=$(run "$script" "$porter_port" "$work/$script.porter.failed")
    bare=$(run "$script" "$bare_port" "$work/$script.bare.failed")
    printf '%-36s %15s %15s\n' "$script" "$(echo "$porter" | tr ' ' /)" "$(echo "$bare" | tr ' ' /)"
    only=$(comm -23 "$work/$script.porter.failed" "$work/$script.bare.failed")
    if [ -n "$only" ]; then
        differs=1
        echo "  failing on Porter alone:"
        echo "$only" | sed 's/^/    /'
    fi
done
exit $differs
