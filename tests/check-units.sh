#!/bin/sh
# systemd-analyze verify the shipped units: backuppc-agent.service,
# backuppc-ssh-agent.service, and BackupPC's own unit with our drop-in. ExecStart must name a real program for verify to
# pass, so it is rendered with PROGRAM (the venv's backuppc-agent); everything
# else is the file as shipped. verify exits 0 on unknown keys and only warns, so
# ANY output fails the check. Without systemd-analyze: say so and pass.
set -eu

program=${1:?usage: check-units.sh PROGRAM}
here=$(dirname "$0")/..

if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "check-units: systemd-analyze not installed (Debian package systemd): skipped" >&2
    exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/backuppc.service.d"
for unit in backuppc-agent.service backuppc-ssh-agent.service; do
    sed "s#/usr/bin/backuppc-agent#$program#" "$here/initscripts/$unit" >"$tmp/$unit"
done
cp "$here/initscripts/backuppc.service.d/backuppc-agent.conf" "$tmp/backuppc.service.d/"
# BackupPC's unit: /lib on Debian 12, /usr/lib on Debian 13.
if [ -f /usr/lib/systemd/system/backuppc.service ]; then
    cp /usr/lib/systemd/system/backuppc.service "$tmp/"
elif [ -f /lib/systemd/system/backuppc.service ]; then
    cp /lib/systemd/system/backuppc.service "$tmp/"
else
    # BackupPC is not installed: a stand-in for the unit the drop-in extends.
    printf '[Unit]\nDescription=stand-in for BackupPC\n[Service]\nExecStart=/bin/true\n' \
        >"$tmp/backuppc.service"
fi

# --man=no: backuppc-agent(1) is generated when the package is built (its
# presence is checked on the installed package, tests/e2e/test_deb.py).
if ! out=$(SYSTEMD_UNIT_PATH="$tmp:" systemd-analyze verify --man=no \
        backuppc-agent.service backuppc-ssh-agent.service backuppc.service 2>&1); then
    printf '%s\n' "$out" >&2
    exit 1
fi
if [ -n "$out" ]; then
    printf 'check-units: systemd-analyze verify warned:\n%s\n' "$out" >&2
    exit 1
fi
echo "check-units: backuppc-agent.service, backuppc-ssh-agent.service and the backuppc.service drop-in verify cleanly"
