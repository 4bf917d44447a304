#!/bin/sh
# Installs Porter as a systemd service: the binary in /usr/local/bin, a system user `porter`,
# the unit (enabled; systemd makes /var/lib/porter, the data dir, at the first start).
#
#   dist/install.sh [--binary target/release/porter] [--root DIR]
#
# --root installs into DIR instead of / (an image being built, or the test that runs these
# very steps); nothing is started then. Running it again upgrades the binary and the unit.
set -eu
root=/
binary=target/release/porter
while [ $# -gt 0 ]; do
    case $1 in
        --root) root=$2; shift 2 ;;
        --binary) binary=$2; shift 2 ;;
        *) echo "usage: $0 [--binary PATH] [--root DIR]" >&2; exit 2 ;;
    esac
done
here=$(dirname "$0")
if [ ! -x "$binary" ]; then
    echo "$binary is missing: build it first (cargo build --release) or pass --binary PATH" >&2
    exit 1
fi
install -D -m 0755 "$binary" "$root/usr/local/bin/porter"
if [ "$root" = / ] && ! { [ -e /usr/share/modsecurity-crs/rules ] && ldconfig -p | grep -q 'libmodsecurity\.so\.3'; }; then
    echo "note: Porter's WAF needs libmodsecurity3 and modsecurity-crs (apt-get install libmodsecurity3 modsecurity-crs)" >&2
fi
if ! grep -q '^porter:' "$root/etc/passwd" 2>/dev/null; then
    if [ "$root" = / ]; then
        useradd --system --home-dir /var/lib/porter --shell /usr/sbin/nologin porter
    else
        useradd --root "$(cd "$root" && pwd)" --system --home-dir /var/lib/porter \
            --shell /usr/sbin/nologin porter
    fi
fi
install -D -m 0644 "$here/porter.service" "$root/etc/systemd/system/porter.service"
if [ "$root" = / ]; then
    systemctl daemon-reload
    systemctl enable porter.service
    echo "installed: start it with 'systemctl start porter'"
else
    systemctl --root="$root" enable porter.service
    echo "installed into $root"
fi
