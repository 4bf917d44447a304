#!/bin/sh
# Runs h2spec (every HTTP/2 and HPACK conformance case) against Porter over TLS with ALPN h2.
# Not part of CI: h2spec is not packaged, so it is built from a checkout of
# https://github.com/summerwind/h2spec with Debian's Go and Go libraries (installed here when
# missing), no module download needed.
#
#   scripts/h2spec.sh H2SPEC_DIR [H2SPEC_ARGS...]
#
# Exits non-zero when a case fails.
set -eu
[ $# -ge 1 ] || { echo "usage: $0 H2SPEC_DIR [H2SPEC_ARGS...]" >&2; exit 2; }
source_dir=$(cd "$1" && pwd)
shift
. "$(dirname "$0")/lib.sh"

golibs="golang-go golang-github-fatih-color-dev golang-github-spf13-cobra-dev \
golang-golang-x-net-dev golang-github-mattn-go-colorable-dev golang-github-mattn-go-isatty-dev \
golang-github-spf13-pflag-dev golang-golang-x-sys-dev golang-github-inconshreveable-mousetrap-dev"
# shellcheck disable=SC2086
dpkg -s $golibs >/dev/null 2>&1 || { apt-get update && apt-get install -y $golibs; }
# GOPATH mode over Debian's Go sources (/usr/share/gocode): h2spec's pinned modules are not
# reachable, and the packaged versions build it.
mkdir -p "$work/gopath/src/github.com/summerwind"
cp -r "$source_dir" "$work/gopath/src/github.com/summerwind/h2spec"
(cd "$work/gopath/src/github.com/summerwind/h2spec" &&
    GO111MODULE=off GOPATH="$work/gopath:/usr/share/gocode" GOFLAGS= \
        go build -o "$work/h2spec" ./cmd/h2spec)

start_porter
"$work/h2spec" -h localhost -p "$porter_port" -t -k -o 5 "$@"
