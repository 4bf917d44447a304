# Shared by the scripts that hold Porter to an outside prober (tlsfuzzer.sh, h2spec.sh): a
# work folder cleaned at exit, free loopback ports, and a release `porter serve` with one
# site, localhost (a name a prober can connect to by, so that its requests are routed to a real
# upstream rather than answered 421 by Porter), served with a self-signed RSA certificate (also
# given to clients that send no SNI) in front of a python http.server. Sourced, not run.

root=$(cd "$(dirname "$0")/.." && pwd)
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

# Builds and starts Porter (PORTER_BIN, when set, is run instead of the release build); sets
# porter_port (HTTPS) and leaves cert.pem and key.pem in $work.
start_porter() {
    (cd "$root" && cargo build --release --quiet --bin porter "$@")
    binary=${PORTER_BIN:-$root/target/release/porter}
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=localhost \
        -addext subjectAltName=DNS:localhost -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
    backend_port=$(free_port)
    (cd "$work" && exec python3 -m http.server --bind 127.0.0.1 "$backend_port") \
        >"$work/backend.log" 2>&1 &
    pids="$pids $!"
    porter_port=$(free_port)
    porter="$binary --data-dir $work/data"
    # Without the per-address limits: a prober makes thousands of handshakes from one address,
    # and what it probes is the protocol, not the limits. Given by environment, which an older
    # build (PORTER_BIN) that lacks one of them ignores.
    PORTER_HANDSHAKE_RATE_PER_IP=0 PORTER_MAX_HANDSHAKES_PER_IP=0 \
        PORTER_MAX_CONNECTIONS_PER_IP=0 $porter serve --http "127.0.0.1:$(free_port)" \
        --https "127.0.0.1:$porter_port" --admin "127.0.0.1:$(free_port)" \
        --default-sni localhost >"$work/porter.log" 2>&1 &
    pids="$pids $!"
    wait_port "$porter_port"
    wait_port "$backend_port"
    $porter site add localhost --upstream "127.0.0.1:$backend_port" >/dev/null
    $porter cert import localhost --cert "$work/cert.pem" --key "$work/key.pem" >/dev/null
    for _ in $(seq 100); do
        echo | openssl s_client -connect "127.0.0.1:$porter_port" 2>/dev/null |
            grep -q 'CN *= *localhost' && return
        sleep 0.1
    done
    echo "Porter does not serve localhost; see $work/porter.log" >&2
    exit 1
}
