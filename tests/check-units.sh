#!/bin/sh
# systemd-analyze verify the shipped units: backuppc-agent.service, and BackupPC's
# own unit with our drop-in. ExecStart must name a real program for verify to
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
sed "s#/usr/bin/backuppc-agent#$program#" "$here/initscripts/backuppc-agent.service" \
    >"$tmp/backuppc-agent.service"
cp "$here/initscripts/backuppc.service.d/backuppc-agent.conf" "$tmp/backuppc.service.d/"
if [ -f /lib/systemd/system/backuppc.service ]; then
    cp /lib/systemd/system/backuppc.service "$tmp/"
else
    # BackupPC is not installed: a stand-in for the unit the drop-in extends.
    printf '[Unit]\nDescription=stand-in for BackupPC\n[Service]\nExecStart=/bin/true\n' \
        >"$tmp/backuppc.service"
fi

if ! out=$(SYSTEMD_UNIT_PATH="$tmp:" systemd-analyze verify \
        backuppc-agent.service backuppc.service 2>&1); then
    printf '%s\n' "$out" >&2
    exit 1
fi
if [ -n "$out" ]; then
    printf 'check-units: systemd-analyze verify warned:\n%s\n' "$out" >&2
    exit 1
fi
echo "check-units: backuppc-agent.service and the backuppc.service drop-in verify cleanly"
