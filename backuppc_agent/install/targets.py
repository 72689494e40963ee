"""What ``install`` puts where: files, blocks in shared files, directories.

Paths are the real ones (``/etc/...``); plan maps them under ``--root``.
"""

from __future__ import annotations

import grp
from dataclasses import dataclass
from pathlib import Path

from backuppc_agent import config as config_mod
from backuppc_agent.backuppc import snippets
from backuppc_agent.install import templates
from backuppc_agent.install.context import Context
from backuppc_agent.ssh import sshconfig
from backuppc_agent.tomlwriter import toml_document

SUPERVISOR_CONF_DIR = Path("/etc/supervisor/conf.d")
SYSTEMD_RUNNING = Path("/run/systemd/system")
SYSTEMD_DIR = Path("/etc/systemd/system")
#: Where the Debian package's units are (/lib on Debian 12, /usr/lib from 13).
PACKAGED_UNIT_DIRS = (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))
#: Present while the Debian package is installed: its service is the one to use.
DPKG_LIST = Path("/var/lib/dpkg/info/backuppc-agent.list")
BACKUPPC_CONFIG = Path("/etc/backuppc/config.pl")
DEFAULT_BACKUPPC = Path("/etc/default/backuppc")
#: The account on the clients that BackupPC's ssh logs in as (Debian's default).
CLIENT_LOGIN_USER = "root"
CONFIG_HEADER = """\
# backuppc-agent configuration (TOML). Every key is optional: the commented
# values are the built-in defaults. `~` is the home of the account that runs
# the supervisor (backuppc). Check a change with: backuppc-agent config check
# A running supervisor rereads this file on SIGHUP (reload); moving the socket
# or the state dir needs a restart.
"""


@dataclass(frozen=True)
class Target:
    """One file (or block in a shared file) install manages."""

    path: Path
    body: str
    block: bool
    mode: int
    for_user: bool
    what: str
    #: Where a packaged copy may already be, equal to ``body`` (then nothing is written).
    packaged: tuple[Path, ...] = ()


def detect_init(ctx: Context) -> str:
    """supervisord if its conf.d exists, else systemd if it runs, else sysvinit.

    With the Debian package installed, its own (enabled) service runs the
    supervisor: a supervisord program too would start a second one.
    """
    packaged = ctx.under(DPKG_LIST).exists()
    if ctx.under(SUPERVISOR_CONF_DIR).is_dir() and not packaged:
        return "supervisord"
    if ctx.under(SYSTEMD_RUNNING).is_dir():
        return "systemd"
    return "sysvinit"


def values(ctx: Context, program: str) -> templates.Values:
    """The literals of the shipped files, for this installation."""
    agent, user = ctx.config.agent, ctx.user
    writable = dict.fromkeys([agent.socket.parent, agent.env_file.parent, ctx.config.state.dir])
    try:
        group = grp.getgrgid(user.pw_gid).gr_name
    except KeyError:
        group = str(user.pw_gid)
    return templates.Values(
        program=program,
        config=str(ctx.config_path),
        user=user.pw_name,
        group=group,
        home=user.pw_dir,
        socket=str(agent.socket),
        env_file=str(agent.env_file),
        writable_dirs=" ".join(str(path) for path in writable),
        socket_dir=str(agent.socket.parent),
    )


def missing_dirs(ctx: Context) -> dict[Path, str]:
    """Missing private directories of the supervisor and hooks: path under the root -> what for."""
    config = ctx.config
    wanted: dict[Path, str] = {}
    for path, what in (
        (config.agent.socket.parent, "agent socket"),
        (config.agent.env_file.parent, "env file"),
        (config.state.dir, "state"),
        (config.mux.control_dir, "ssh control sockets"),
        (config.mux.known_hosts.parent, "known_hosts"),
    ):
        wanted.setdefault(ctx.under(path), what)
    return {path: what for path, what in wanted.items() if not path.is_dir()}


def common_targets(ctx: Context, vals: templates.Values, client_user: str) -> list[Target]:
    """The config file, the ssh_config, the login snippet; BackupPC's lines if it is there."""
    config, bash = ctx.config, ctx.home / ".bash_profile"
    # bash skips ~/.profile when the account has a ~/.bash_profile
    profile = bash if ctx.under(bash).exists() else ctx.home / ".profile"
    wanted = [
        Target(ctx.config_path, default_config(), False, 0o644, False, "config"),
        Target(config.mux.ssh_config, sshconfig.render(config), False, 0o644, True, "ssh_config"),
        Target(profile, templates.render(templates.PROFILE, vals), True, 0o644, True, "login"),
    ]
    if ctx.under(BACKUPPC_CONFIG).exists():
        lines = snippets.render(config, [vals.program], str(ctx.config_path), client_user)
        wanted.append(Target(BACKUPPC_CONFIG, lines, True, 0o644, False, "BackupPC config"))
    return wanted


def default_config() -> str:
    """The config file install writes: every config key, commented out, at its default."""
    return CONFIG_HEADER + "\n" + toml_document(config_mod.defaults(), key_prefix="# ")


#: init -> (real path, shipped file, block in a shared file, mode, what)
INIT_FILES: dict[str, tuple[tuple[Path, str, bool, int, str], ...]] = {
    "supervisord": (
        (SUPERVISOR_CONF_DIR / "backuppc-agent.conf", templates.SUPERVISOR, False, 0o644,
         "supervisord program"),
    ),
    "systemd": (
        (SYSTEMD_DIR / "backuppc-agent.service", templates.SYSTEMD_SERVICE, False, 0o644,
         "systemd unit"),
        (SYSTEMD_DIR / "backuppc-ssh-agent.service", templates.SYSTEMD_AGENT, False, 0o644,
         "systemd unit of the agent"),
        (SYSTEMD_DIR / "backuppc.service.d" / "backuppc-agent.conf", templates.SYSTEMD_DROPIN,
         False, 0o644, "BackupPC drop-in"),
    ),
    "sysvinit": (
        (Path("/etc/init.d/backuppc-agent"), templates.SYSVINIT, False, 0o755, "init script"),
        (DEFAULT_BACKUPPC, templates.SYSVINIT_DEFAULT, True, 0o644, "BackupPC environment"),
    ),
}  # fmt: skip
INITS = tuple(INIT_FILES)


def init_targets(init: str, vals: templates.Values) -> list[Target]:
    return [
        Target(path, templates.render(name, vals), block, mode, False, what, _packaged(path))
        for path, name, block, mode, what in INIT_FILES[init]
    ]


def _packaged(path: Path) -> tuple[Path, ...]:
    """Where the Debian package ships the unit install would write to /etc/systemd/system."""
    if not path.is_relative_to(SYSTEMD_DIR):
        return ()
    return tuple(unit_dir / path.relative_to(SYSTEMD_DIR) for unit_dir in PACKAGED_UNIT_DIRS)


#: What the operator runs after install, for each init (then ssh-add and doctor).
NEXT_STEPS = {
    "supervisord": ("supervisorctl reread", "supervisorctl update"),
    "systemd": ("systemctl daemon-reload", "systemctl enable --now backuppc-agent",
                "systemctl restart backuppc"),
    "sysvinit": ("update-rc.d backuppc-agent defaults", "service backuppc-agent start",
                 "service backuppc restart"),
}  # fmt: skip
