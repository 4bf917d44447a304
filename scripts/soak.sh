#!/bin/sh
# A soak at about 80 % of the measured capacity: HTTPS with HTTP/2 (h2load) through a release
# Porter to nginx, first flat out for 15 s to measure the capacity, then at 80 % of it for
# SECONDS (default 600). Prints the errors (any non-2xx answer or failed request) and Porter's
# RSS each minute under load; fails on an error or RSS growth of 5 % or more. Not part
# of CI (it runs for minutes and wants an idle machine).
#
#   scripts/soak.sh [SECONDS]      (PORTER_BIN=path runs another build of Porter)
set -eu
seconds=${1:-600}
. "$(dirname "$0")/lib.sh"
command -v h2load >/dev/null || { apt-get update && apt-get install -y nghttp2-client; }
command -v nginx >/dev/null || { apt-get update && apt-get install -y nginx-light; }

start_porter
# nginx as the upstream instead of python's http.server, which would be the bottleneck.
nginx_port=$(free_port)
mkdir -p "$work/www"
head -c 1024 /dev/urandom | base64 >"$work/www/index.html"
# nginx's workers run as nobody: they must be able to read the page (the work dir is 0700).
chmod a+rx "$work" "$work/www" && chmod a+r "$work/www/index.html"
cat >"$work/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    server { listen 127.0.0.1:$nginx_port; root $work/www; }
}
EOF
nginx -c "$work/nginx.conf" -p "$work" &
pids="$pids $!"
wait_port "$nginx_port"
$porter site update localhost --upstream "127.0.0.1:$nginx_port" >/dev/null
sleep 1

porter_pid=$(pgrep -f -- "--data-dir $work/data serve" | head -1)
rss() { awk '/VmRSS/ {print $2}' "/proc/$porter_pid/status"; }
# By address (no SNI: the default name answers), routed by :authority.
url="https://127.0.0.1:$porter_port/index.html"
authority=":authority: localhost"
clients=32

h2load -D 15 -c $clients -m 4 -H "$authority" "$url" >"$work/capacity.txt"
capacity=$(sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p' "$work/capacity.txt" | cut -d. -f1)
rate=$((capacity * 8 / 10))
echo "capacity: $capacity requests/s; soaking at $rate requests/s for $seconds s"

# Warm-up at the soak rate. Then the RSS is sampled once a minute under load: the growth is
# from the first sample to the last (measured between runs, it would compare an idle process
# with one holding 32 busy connections, or count what the allocator keeps after a burst).
h2load -D 30 -c $clients -m 4 --rps $((rate / clients)) -H "$authority" "$url" >/dev/null
(while sleep 60; do rss >>"$work/rss.txt"; done) &
sampler=$!
h2load -D "$seconds" -c $clients -m 4 --rps $((rate / clients)) -H "$authority" \
    "$url" >"$work/soak.txt"
kill $sampler
awk '{ printf "RSS after %d min: %d KiB\n", NR, $1 }' "$work/rss.txt"
before=$(head -1 "$work/rss.txt")
after=$(tail -1 "$work/rss.txt")

grep -E '^(finished in|requests:|status codes:)' "$work/soak.txt"
failed=$(sed -n 's/^requests: .* \([0-9]*\) failed, \([0-9]*\) errored, \([0-9]*\) timeout/\1 \2 \3/p' "$work/soak.txt")
not2xx=$(sed -n 's/^status codes: [0-9]* 2xx, \([0-9]*\) 3xx, \([0-9]*\) 4xx, \([0-9]*\) 5xx/\1 \2 \3/p' "$work/soak.txt")
errors=0
for n in $failed $not2xx; do errors=$((errors + n)); done
growth=$(awk -v a="$before" -v b="$after" 'BEGIN { printf "%.1f", (b - a) * 100 / a }')
printf '%-28s %s\n' "errors" "$errors" "RSS at 1 min (KiB)" "$before" \
    "RSS at the end (KiB)" "$after" "RSS growth (%)" "$growth"
[ "$errors" -eq 0 ] && awk -v g="$growth" 'BEGIN { exit !(g < 5) }'
