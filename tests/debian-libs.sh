#!/bin/sh
# Run the tests that import keyring and prometheus_client against Debian's own
# python3-keyring and python3-prometheus-client (what the .deb runs on), not PyPI's:
# a venv of Debian's python3 with --system-site-packages, the project installed
# without dependencies, and pip adding only the test tools.
# Usage: sh tests/debian-libs.sh VENV TEST...
set -eu

venv=$1
shift
need="python3-venv python3-keyring python3-prometheus-client python3-keyrings.alt"
for pkg in $need; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        echo "test-debian-libs: skipped: $pkg is not installed (run make test as root)" >&2
        exit 0
    fi
done

stamp=$venv/.installed-stamp
if [ ! -f "$stamp" ] || [ -n "$(find pyproject.toml -newer "$stamp")" ]; then
    test -x "$venv/bin/python" || /usr/bin/python3 -m venv --system-site-packages "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps -e . \
        --config-settings editable_mode=compat
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        'pytest>=8' 'pytest-timeout>=2.3' 'hypothesis>=6.100'
    touch "$stamp"
fi

# The libraries under test must be Debian's: pip must not have put its own into the venv.
"$venv/bin/python" - <<'EOF'
import sys
from importlib.metadata import version

import keyring
import keyrings.alt
import prometheus_client

debian = "/usr/lib/python3/dist-packages/"
foreign = [m.__name__ for m in (keyring, keyrings.alt, prometheus_client)
           if not str(m.__file__).startswith(debian)]
if foreign:
    print(f"test-debian-libs: not Debian's: {', '.join(foreign)}", file=sys.stderr)
    sys.exit(1)
names = ("keyring", "keyrings.alt", "prometheus_client")
print("test-debian-libs: Debian's " + ", ".join(f"{n} {version(n)}" for n in names))
EOF

exec "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
