#!/usr/bin/env bash
# Runs Porter's whole test suite on a Debian machine: installs the Debian packages the tests
# talk to when they are missing (waiting, up to 10 minutes, for another apt to finish), then
# checks formatting and lints and runs every test binary, also after one fails, ending with
# the list of failed tests.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/test-steps.sh

# bind9's tools live in sbin, which is not on every user's PATH.
export PATH="$PATH:/usr/sbin:/sbin"

# command (or file, a glob) -> Debian package that provides it
needs=(
  # The build's C parts: aws-lc (the TLS provider) and jemalloc (the allocator).
  "cc gcc"
  "make make"
  "/usr/lib/*/libmodsecurity.so.3 libmodsecurity3"
  "/usr/share/modsecurity-crs/rules modsecurity-crs"
  "curl curl"
  "openssl openssl"
  "python3 python3"
  "pebble pebble"
  "pebble-challtestsrv pebble"
  "etcd etcd-server"
  "testssl testssl.sh"
  "nginx nginx-light"
  "promtool prometheus"
  "systemd-analyze systemd"
  "named bind9"
  "tsig-keygen bind9"
  "dig bind9-dnsutils"
  "nsupdate bind9-dnsutils"
)
missing=()
for pair in "${needs[@]}"; do
  set -- $pair
  if [[ $1 == /* ]]; then
    compgen -G "$1" >/dev/null || missing+=("$2")
  else
    command -v "$1" >/dev/null 2>&1 || missing+=("$2")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing missing packages: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  apt_get update -qq
  # The tests start their own nginx and named on loopback ports: the packages' system services
  # are not started (policy-rc.d answers "not now" while they install).
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod +x "$policy"
    trap '$sudo rm -f "$policy"' EXIT
  fi
  # No recommends: prometheus would pull in its web console's assets; the tests need promtool.
  apt_get install -y -qq --no-install-recommends "${missing[@]}"
fi
# aioquic, the HTTP/3 client of tests/h3.rs that shares no code with Porter's, is on PyPI, not
# in Debian (its 1.3.0 needs no compiler: wheels of it and pylsqpack).
if ! python3 -c "import aioquic" 2>/dev/null; then
  echo "installing aioquic from PyPI"
  if ! python3 -m pip --version >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    apt_get update -qq
    apt_get install -y -qq --no-install-recommends python3-pip
  fi
  # Debian's own Python refuses packages from pip unless told (PEP 668); others take them.
  python3 -m pip install -q "aioquic==1.3.0" 2>/dev/null ||
    python3 -m pip install -q --break-system-packages "aioquic==1.3.0"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is missing: install the Rust toolchain (https://rustup.rs), then run this again" >&2
  exit 1
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo_test_all --workspace --locked
