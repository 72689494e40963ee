#!/bin/sh
# Build (once) a minimal Debian tree that boots under systemd-nspawn, with what the
# systemd tier installs inside: BackupPC, sshd, Debian's python3 libraries and the
# tools that build the package. Usage: build-tree.sh RELEASE DIR (e.g. trixie
# /var/cache/backuppc-agent-tests/trixie). DIR appears only once complete, with
# DIR/.complete holding the package list it was built with: a tree built from
# another list is built again. Tests never change DIR: they boot a copy of it.
# Several builders at once (two test runs) wait for each other on DIR.lock.
set -eu
release=$1
dir=$2
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
TRIES=3

# build-essential: dpkg-buildpackage checks for it. smbclient, samba-common-bin: only
# Recommends of backuppc, but its server exits at start without them.
PACKAGES="libpam-systemd backuppc openssh-server openssh-client rsync python3 python3-keyring \
python3-keyrings.alt python3-prometheus-client sudo procps iproute2 iputils-ping less \
debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools lintian \
python3-argparse-manpage make build-essential smbclient samba-common-bin clevis tang jose socat"
BACKUPPC_UID=950
STAMP="$release: backuppc $BACKUPPC_UID: $PACKAGES"

fail() {
    echo "build-tree.sh $release: $*" >&2
    exit 1
}

is_complete() {
    [ -e "$dir/.complete" ] && [ "$(cat "$dir/.complete")" = "$STAMP" ]
}

# Run "$@" up to TRIES times (a mirror that hiccups), 10 s apart; output to the log.
retry() {
    n=1
    until "$@" >>"$log" 2>&1; do
        [ "$n" -ge "$TRIES" ] && return 1
        echo "build-tree.sh: attempt $n of $TRIES failed: $*" >>"$log"
        n=$((n + 1))
        sleep 10
    done
}

is_complete && exit 0
[ "$(id -u)" -eq 0 ] || fail "needs root (debootstrap, chroot)"
command -v debootstrap >/dev/null || fail "needs debootstrap (apt install debootstrap)"
mkdir -p "$(dirname "$dir")"
exec 9>"$dir.lock"
flock 9
is_complete && exit 0  # another builder finished it while we waited

tmp="$dir.tmp"
log="$dir.log"
: >"$log"
echo "build-tree.sh: building $dir ($release from $mirror; log $log)" >&2
debootstrap_once() {
    rm -rf "$tmp"
    debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,ca-certificates \
        "$release" "$tmp" "$mirror"
}
retry debootstrap_once || { tail -20 "$log" >&2; fail "debootstrap failed (log $log)"; }

# Services must not start inside the chroot while packages install.
printf '#!/bin/sh\nexit 101\n' >"$tmp/usr/sbin/policy-rc.d"
chmod 0755 "$tmp/usr/sbin/policy-rc.d"
in_tree() {
    chroot "$tmp" env DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 \
        PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"
}
retry in_tree apt-get -q -o Acquire::Retries=3 update \
    || { tail -20 "$log" >&2; fail "apt-get update failed (log $log)"; }
# The backuppc account gets a uid of its own before BackupPC's postinst would pick one:
# the container's processes show in the host's /proc, and host tests that clean up
# by the host's backuppc uid must never hit the container's (nor the other way round).
in_tree groupadd --system --gid "$BACKUPPC_UID" backuppc
in_tree useradd --system --uid "$BACKUPPC_UID" --gid "$BACKUPPC_UID" --home-dir /var/lib/backuppc \
    --no-create-home --shell /bin/sh --comment BackupPC backuppc
# shellcheck disable=SC2086  # word splitting of the package list is intended
retry in_tree apt-get install -y -q -o Acquire::Retries=3 --no-install-recommends $PACKAGES \
    || { tail -20 "$log" >&2; fail "apt-get install failed (log $log)"; }
rm -f "$tmp/usr/sbin/policy-rc.d"
in_tree apt-get clean
echo "$STAMP" >"$tmp/.complete"
# Replace an older tree only now: a copy running from it is disturbed for a moment only.
if [ -e "$dir" ]; then
    mv "$dir" "$dir.old.$$"
fi
mv "$tmp" "$dir"
rm -rf "$dir.old.$$"
echo "build-tree.sh: $dir complete" >&2
