#!/bin/sh
# Installs Porter as a systemd service: the binary in /usr/local/bin, a system user `porter`
# (systemd-sysusers), the unit (enabled; systemd makes /var/lib/porter, the data dir, at the
# first start) and /etc/default/porter for the operator's flags.
#
#   dist/install.sh [--binary target/release/porter] [--root DIR]
#
# --root installs into DIR instead of / (an image being built, even from an empty directory, or
# the test that runs these very steps); nothing is started then. Running it again upgrades the
# binary and the unit and keeps /etc/default/porter as it is.
set -eu
root=/
binary=target/release/porter
while [ $# -gt 0 ]; do
    case $1 in
        --root) [ $# -ge 2 ] || { echo "--root needs a directory" >&2; exit 2; }; root=$2; shift 2 ;;
        --binary) [ $# -ge 2 ] || { echo "--binary needs a path" >&2; exit 2; }; binary=$2; shift 2 ;;
        *) echo "usage: $0 [--binary PATH] [--root DIR]" >&2; exit 2 ;;
    esac
done
here=$(dirname "$0")
if [ ! -x "$binary" ]; then
    echo "$binary is missing: build it first (cargo build --release) or pass --binary PATH" >&2
    exit 1
fi
if [ ! -d "$root" ]; then
    echo "$root is not a directory" >&2
    exit 1
fi
# systemd-sysusers and systemctl take an absolute root.
root=$(cd "$root" && pwd)
for tool in systemd-sysusers systemctl; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "$tool is missing: install systemd (apt-get install systemd)" >&2
        exit 1
    fi
done
if [ "$root" = / ] && ! { [ -e /usr/share/modsecurity-crs/rules ] && ldconfig -p | grep -q 'libmodsecurity\.so\.3'; }; then
    echo "note: Porter's WAF needs libmodsecurity3 and modsecurity-crs (apt-get install libmodsecurity3 modsecurity-crs)" >&2
fi
install -D -m 0755 "$binary" "$root/usr/local/bin/porter"
# The user through sysusers.d rather than useradd: it works on an image root whose /etc is
# empty (useradd --root then refuses, `cannot lock /etc/passwd`, or writes a user without its
# group), leaves an existing porter user as it is, and the file makes the user again at boot.
install -D -m 0644 "$here/porter.sysusers" "$root/usr/local/lib/sysusers.d/porter.conf"
mkdir -p "$root/etc"
systemd-sysusers --root="$root" porter.conf
install -D -m 0644 "$here/porter.service" "$root/etc/systemd/system/porter.service"
# The operator's file, never replaced.
if [ ! -e "$root/etc/default/porter" ]; then
    install -D -m 0600 "$here/porter.default" "$root/etc/default/porter"
fi
if [ "$root" = / ]; then
    systemctl daemon-reload
    systemctl enable porter.service
    echo "installed: set your flags in /etc/default/porter, then 'systemctl start porter'"
else
    systemctl --root="$root" enable porter.service
    echo "installed into $root"
fi
