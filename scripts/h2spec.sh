#!/bin/sh
# Runs h2spec (every HTTP/2 and HPACK conformance case) against Porter over TLS with ALPN h2.
# Not part of CI: h2spec is not packaged. Give the path of an h2spec binary you have; this
# script only runs it, it builds nothing.
#
#   scripts/h2spec.sh H2SPEC_BINARY [H2SPEC_ARGS...]
#
# Exits non-zero when a case fails.
set -eu
[ $# -ge 1 ] || { echo "usage: $0 H2SPEC_BINARY [H2SPEC_ARGS...]" >&2; exit 2; }
h2spec=$1
shift
[ -x "$h2spec" ] || { echo "$h2spec is not an executable h2spec binary" >&2; exit 2; }
. "$(dirname "$0")/lib.sh"

start_porter
"$h2spec" -h localhost -p "$porter_port" -t -k -o 5 "$@"
