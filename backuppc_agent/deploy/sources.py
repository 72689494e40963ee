"""The generated texts install writes, from the modules that own them.

The ssh_config comes from ``ssh.sshconfig`` and the BackupPC lines from
``backuppc.snippets``: install and doctor never keep their own copy.
"""

from __future__ import annotations

from pathlib import Path

from backuppc_agent.config import Config

#: The account on the clients that BackupPC's ssh logs in as (Debian's default).
CLIENT_LOGIN_USER = "root"
#: Jobs wait for readiness in the pre/post user commands (not in PingCmd).
GATE = "hooks"


def ssh_config(config: Config) -> str:
    """The ssh_config for client pulls (``backuppc-agent ssh-config``)."""
    from backuppc_agent.ssh import sshconfig  # noqa: PLC0415

    return sshconfig.render(config)


def backuppc_lines(
    config: Config, program: str, config_path: Path, client_user: str = CLIENT_LOGIN_USER
) -> str:
    """The lines for BackupPC's config.pl (``backuppc-agent backuppc-config``)."""
    from backuppc_agent.backuppc import snippets  # noqa: PLC0415

    return snippets.render(config, [program], str(config_path), client_user, GATE)


def required_settings() -> dict[str, str]:
    """Each BackupPC setting doctor requires, with text its effective value must contain."""
    from backuppc_agent.backuppc import snippets  # noqa: PLC0415

    wanted = {setting: f" hook {hook} " for setting, hook, _ in snippets.USER_COMMANDS}
    wanted["RsyncSshArgs"] = " master ssh "
    return wanted
