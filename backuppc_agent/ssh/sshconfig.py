"""The ssh options every client pull uses, as ssh_config text and as ``-o`` arguments.

As ``-o``, a stale ssh_config never makes BackupPC's sessions disagree with the
hook's master; ``~/.ssh/config`` still sets Port, User, HostName. With the restore
key set up, backups offer the other keys and restores only it (CONTROL_DIR/restore/).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

from backuppc_agent import names, paths
from backuppc_agent.config import Config
from backuppc_agent.ssh.limits import client_budget

#: Restore masters live here, under the control directory: ``master list`` skips them.
RESTORE_DIR = "restore"
#: A restore master outlives its last session by this much at most: write access ends soon.
RESTORE_PERSIST_SECONDS = 120
#: Silences OpenSSH 10.1's warning (in every XferLOG) about a server without post-quantum
#: key exchange; older ssh refuses the keyword, so it goes only where ssh accepts it.
QUIET_WEAK_CRYPTO = ("WarnWeakCrypto", "no")
OPTION_CHECK_SECONDS = 10.0


def make_option_check_command(ssh: str, keyword: str, value: str) -> tuple[str, ...]:
    """argv that exits 0 only if ssh knows KEYWORD (-G connects nowhere, -F none skips ~/.ssh)."""
    return (ssh, "-F", "none", "-G", "-o", f"{keyword}={value}", "--", "localhost")


@functools.cache  # once per process: the installed ssh does not change under one command
def accepts_option(ssh: str, keyword: str, value: str) -> bool:
    """True if ``ssh`` accepts ``-o KEYWORD=VALUE``; False if it refuses it or cannot run."""
    from backuppc_agent import proc  # noqa: PLC0415  (subprocess only when building options)

    try:
        result = proc.run(make_option_check_command(ssh, keyword, value), OPTION_CHECK_SECONDS)
    except proc.CommandError:
        return False
    return result.returncode == 0


def control_path(control_dir: Path, client: str) -> Path:
    """``CONTROL_DIR/CLIENT`` after validating the name; raise BadNameError if unsafe."""
    budget = client_budget(control_dir)
    names.check(client, "client", max(budget, 1), f"control_dir {control_dir} leaves {budget}")
    return control_dir / client


def master_path(config: Config, client: str, restore: bool = False) -> Path:
    """CLIENT's control path for backups or restores; refused as trusted_control_path refuses."""
    control_dir = config.mux.control_dir
    if restore:
        trusted_control_path(control_dir, client)  # the parent directory must be ours too
        control_dir = control_dir / RESTORE_DIR
    return trusted_control_path(control_dir, client)


def trusted_control_path(control_dir: Path, client: str) -> Path:
    """``control_path()``, refusing a control directory others could have put a master in.

    ssh does not check who owns the master socket it talks to: an existing directory
    must be ours (or root's), private, no symlink. Raises BadNameError or UnsafePathError.
    """
    path = control_path(control_dir, client)
    if os.path.lexists(control_dir):
        paths.check_dir(control_dir, "control")
    return path


def options(
    config: Config, path: str, master: str = "auto", restore: bool = False
) -> tuple[tuple[str, str], ...]:
    """The (keyword, value) pairs of our ssh options, for ControlPath ``path``.

    ``restore``: the restore key alone, a short ControlPersist.
    """
    mux = config.mux
    persist = min(mux.persist_seconds, RESTORE_PERSIST_SECONDS) if restore else mux.persist_seconds
    pairs = [
        ("IdentityAgent", str(config.agent.socket)),
        ("BatchMode", "yes"),
        ("ControlMaster", master),
        ("ControlPath", path),
        ("ControlPersist", str(persist)),
        ("ServerAliveInterval", str(mux.server_alive_interval)),
        ("ServerAliveCountMax", "3"),
        ("UserKnownHostsFile", str(mux.known_hosts)),
        ("ConnectTimeout", str(max(1, int(config.hooks.connect_timeout_seconds)))),
    ]
    pairs += identity_options(config, restore)
    if accepts_option(mux.ssh, *QUIET_WEAK_CRYPTO):
        pairs.append(QUIET_WEAK_CRYPTO)
    return tuple(pairs)


def identity_options(config: Config, restore: bool = False) -> list[tuple[str, str]]:
    """``IdentitiesOnly`` and the keys a backup (or a restore) connection may offer."""
    restore_key = config.agent.restore_key
    if restore:
        return [("IdentitiesOnly", "yes"), ("IdentityFile", str(restore_key))]
    files = config.mux.identity_files
    if not files and not config.agent.restore_key_set_up():
        return []  # ssh offers every key of the agent
    if not files:
        files = tuple(key for key in config.agent.keys if key != restore_key)
    return [("IdentitiesOnly", "yes"), *(("IdentityFile", str(key)) for key in files)]


def option_args(pairs: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    """``-o Keyword=value`` arguments for ssh's command line."""
    return tuple(word for pair in pairs for word in ("-o", "=".join(pair)))


def ssh_command(
    config: Config, path: Path, master: str, *words: str, restore: bool = False
) -> tuple[str, ...]:
    """argv of ``config.mux.ssh``, our options for ControlPath ``path``, then ``words``.

    Check the destination among ``words`` first: options() may run ``ssh -G``.
    """
    pairs = options(config, str(path), master, restore)
    return (config.mux.ssh, *option_args(pairs), *words)


def client_command(
    config: Config,
    client: str,
    host: str,
    master: str,
    command: Sequence[str] = (),
    ssh_options: Sequence[str] = (),
    restore: bool = False,
) -> tuple[str, ...]:
    """argv of ssh to HOST over CLIENT's (restore) master; BadNameError or UnsafePathError first."""
    path = master_path(config, client, restore)
    destination = names.check(host, "host")
    words = (*ssh_options, "--", destination, *command)
    return ssh_command(config, path, master, *words, restore=restore)


def render(config: Config) -> str:
    """The ssh_config text (config validation has refused any path ssh would misread)."""
    control = str(config.mux.control_dir / "%n")
    lines = [
        f"# Generated by backuppc-agent ssh-config from {config.source}; regenerate, don't edit.",
        "# Sockets are CONTROL_DIR/CLIENT: BackupPC's hooks and transfers name the client",
        "# explicitly (-o ControlPath=...); by hand, `ssh -F THIS_FILE CLIENT` finds the",
        "# same master when CLIENT is also the address you connect to.",
        "Host *",
    ]
    lines += [f"    {key} {value}" for key, value in options(config, control)]
    return "\n".join(lines) + "\n"
