"""The shipped service files (``files/``, the one source) and their rendering.

Each is valid as shipped for the Debian defaults below (linters check it as is);
rendering swaps the default literals in one pass (a replaced value is never rescanned).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from importlib import resources

FILES = "files"

SUPERVISOR = "supervisor/backuppc-agent.conf"
SYSVINIT = "sysvinit/backuppc-agent"
SYSVINIT_DEFAULT = "sysvinit/default-backuppc"
SYSTEMD_SERVICE = "systemd/backuppc-agent.service"
SYSTEMD_AGENT = "systemd/backuppc-ssh-agent.service"
SYSTEMD_DROPIN = "systemd/backuppc.service.d/backuppc-agent.conf"
PROFILE = "profile/backuppc-agent.sh"


@dataclass(frozen=True)
class Values:
    """What the shipped files name: defaults are the literals written in them."""

    program: str = "/usr/bin/backuppc-agent"
    config: str = "/etc/backuppc-agent/config.toml"
    user: str = "backuppc"
    group: str = "backuppc"
    home: str = "/var/lib/backuppc"
    socket: str = "/var/lib/backuppc/.ssh/agent.socket"
    env_file: str = "/var/lib/backuppc/.ssh/agent.env"
    writable_dirs: str = "/var/lib/backuppc/.ssh /var/lib/backuppc/.local/state/backuppc-agent"
    #: The one directory the agent's own unit writes (its socket's).
    socket_dir: str = "/var/lib/backuppc/.ssh"


SHIPPED = Values()


def read(name: str) -> str:
    """Return a shipped file's text exactly as shipped."""
    return resources.files(__package__).joinpath(FILES, name).read_text(encoding="utf-8")


def render(name: str, values: Values) -> str:
    """Return shipped file ``name`` with the defaults replaced by ``values``."""
    return render_text(read(name), values)


def render_text(text: str, values: Values) -> str:
    """Replace every default literal in ``text`` by its value, in a single pass."""
    old, new = asdict(SHIPPED), asdict(values)
    table = {old[name]: new[name] for name in ("program", "config", "socket", "env_file")}
    table[old["writable_dirs"]] = new["writable_dirs"]
    table[f"ReadWritePaths={old['socket_dir']}\n"] = f"ReadWritePaths={new['socket_dir']}\n"
    table[f'HOME="{old["home"]}"'] = f'HOME="{new["home"]}"'
    for key in ("user=", "User=", "RUN_AS="):
        table[key + old["user"]] = key + new["user"]
    for key in ('USER="', 'LOGNAME="'):
        table[key + old["user"] + '"'] = key + new["user"] + '"'
    table["Group=" + old["group"]] = "Group=" + new["group"]
    pattern = re.compile("|".join(re.escape(key) for key in sorted(table, key=len, reverse=True)))
    return pattern.sub(lambda match: table[match.group(0)], text)
