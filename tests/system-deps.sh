#!/bin/sh
# Install the Debian packages the tests drive for real, when missing and root.
# Not root: say what is missing; the tests that need it skip with a reason.
set -eu

# systemd: systemd-analyze verify of the units (no systemd needs to run);
# sysvinit-utils: lsb's init-functions, which the sysvinit script sources.
# iputils-ping: BackupPC's default PingCmd (the stock localhost host, tests/e2e/test_deb.py).
# smbclient, samba-common-bin: only Recommends of backuppc, but its server exits at start
# ("$Conf{SmbClientPath} = ... is not a valid executable program") without them, as on a
# machine that installs without recommends.
# debhelper ... lintian: `make deb` (tests/e2e/test_deb.py builds and installs the
# package; python3-argparse-manpage renders its man page); man-db: test_deb.py reads
# that page with man; python3-keyring, python3-prometheus-client: the package's Depends,
# also under the tests of `make test-debian-libs` (a venv of Debian's python3:
# python3-venv; its file keyring: python3-keyrings.alt). debootstrap, systemd-container:
# the Debian trees tests/systemd builds and boots with systemd-nspawn (make test-systemd).
# clevis, tang, jose, socat: unlock = "tang" against a real Tang on loopback (tests/tang.py;
# tang pulls tang-common, which holds /usr/libexec/tangd on Debian 12 and 13); gdb: its
# gcore and strace watch the supervisor's memory and reads: a Tang-held passphrase never
# reaches it.
PACKAGES="openssh-client openssh-server rsync backuppc smbclient samba-common-bin prometheus prometheus-alertmanager shellcheck procps iproute2 sudo faketime systemd sysvinit-utils python3 iputils-ping
debhelper dh-python pybuild-plugin-pyproject python3-all python3-argparse-manpage python3-setuptools lintian man-db
python3-keyring python3-prometheus-client python3-keyrings.alt python3-venv
debootstrap systemd-container
clevis tang jose socat gdb strace"

# With arguments: install those optional packages (make bench) when this Debian has them;
# never fail for them.
if [ "$#" -gt 0 ]; then
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" && continue
        if [ "$(id -u)" -eq 0 ]; then
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null 2>&1 \
                || echo "system-deps: optional $pkg not installed (not in this Debian?)" >&2
        fi
    done
    exit 0
fi

missing=""
for pkg in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $pkg"
    fi
done

if [ -z "$missing" ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "system-deps: missing Debian packages:$missing (run make test as root to install them)" >&2
    exit 0
fi

echo "system-deps: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
# shellcheck disable=SC2086  # word splitting of the package list is intended
apt-get update -qq && apt-get install -y -qq $missing >/dev/null
