"""Read what doctor and trust need from BackupPC's configuration, without Perl.

Only the plain ``$Conf{Name} = VALUE;`` statements BackupPC's own CGI editor
and our install write are understood; the last assignment of a name wins, as
in Perl. Per-host files (``HOST.pl`` or ``pc/HOST.pl``) override config.pl.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from backuppc_agent.deploy import fsops

CONFIG_DIR = Path("/etc/backuppc")
_ASSIGNMENT = re.compile(r"^[ \t]*\$Conf\{(\w+)\}\s*=\s*(.*?);[ \t]*(?:#[^\n]*)?$", re.M | re.S)
_QUOTED = re.compile(r"""'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)\"""")
#: tar reaches the client through ssh only when its command runs $sshPath: Debian's
#: stock ``localhost`` host runs tar locally. rsyncd, smb, ftp never use ssh.
TAR_COMMANDS = {False: "TarClientCmd", True: "TarClientRestoreCmd"}
#: config.pl's default tar commands run ``$sshPath`` (an unset one counts as that).
DEFAULT_TAR_COMMAND = "$sshPath"


#: BackupPC 4's transfer methods that never run ssh (anything unknown is taken to).
NO_SSH_METHODS = frozenset({"rsyncd", "smb", "ftp", "archive"})


def uses_ssh(method: str, settings: dict[str, str], restore: bool = False) -> bool:
    """True if transfer ``method`` with these settings runs ssh to the client."""
    if method == "tar":
        return "$sshPath" in settings.get(TAR_COMMANDS[restore], DEFAULT_TAR_COMMAND)
    return method not in NO_SSH_METHODS


def no_ssh_reason(method: str) -> str:
    """Why a host is left alone: its transfer method (and command) does not use ssh."""
    if method == "tar":
        return "XferMethod tar with a TarClientCmd that does not run $sshPath"
    return f"XferMethod {method}"


def assignments(text: str) -> dict[str, str]:
    """Every ``$Conf{Name}`` with the text of its last assignment, whitespace normalized."""
    found: dict[str, str] = {}
    for match in _ASSIGNMENT.finditer(text):
        found[match.group(1)] = normalize(match.group(2))
    return found


def normalize(value: str) -> str:
    """Collapse whitespace so formatting alone never makes two values differ."""
    return " ".join(value.split())


def first_string(value: str | None) -> str | None:
    """The first quoted string in a Perl value ('x', "x" or ['x', ...]), or None."""
    if value is None:
        return None
    match = _QUOTED.search(value)
    if match is None:
        return None
    return match.group(1) if match.group(1) is not None else match.group(2)


def hosts(text: str) -> list[str]:
    """Host names from BackupPC's hosts file (first column; header and comments skipped)."""
    names = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if fields and fields[0] != "host":
            names.append(fields[0])
    return names


@dataclass(frozen=True)
class Host:
    """One BackupPC host as ssh sees it."""

    name: str
    address: str
    xfer_method: str
    #: For tar: whether its TarClientCmd runs $sshPath.
    tar_over_ssh: bool = True

    @property
    def uses_ssh(self) -> bool:
        """True if BackupPC reaches this host through ssh."""
        if self.xfer_method == "tar":
            return self.tar_over_ssh
        return uses_ssh(self.xfer_method, {})


class BackupPCConfig:
    """config.pl, the hosts file and per-host files under one directory."""

    def __init__(self, directory: Path = CONFIG_DIR) -> None:
        self.directory = directory

    def main(self) -> dict[str, str] | None:
        """The assignments of config.pl, or None if it does not exist."""
        text = fsops.read_text(self.directory / "config.pl")
        return None if text is None else assignments(text)

    def host_overrides(self, name: str) -> dict[str, str]:
        """The assignments of the host's own file (HOST.pl, else pc/HOST.pl)."""
        for candidate in (self.directory / f"{name}.pl", self.directory / "pc" / f"{name}.pl"):
            text = fsops.read_text(candidate)
            if text is not None:
                return assignments(text)
        return {}

    def host_names(self) -> list[str]:
        """The hosts BackupPC backs up."""
        return hosts(fsops.read_text(self.directory / "hosts") or "")

    def host(self, name: str, main: dict[str, str] | None = None) -> Host:
        """Effective address (ClientNameAlias or the name) and transfer method of a host."""
        merged = {**(main if main is not None else self.main() or {}), **self.host_overrides(name)}
        address = first_string(merged.get("ClientNameAlias")) or name
        method = first_string(merged.get("XferMethod")) or "tar"
        return Host(name, address, method, uses_ssh("tar", merged))

    def host_uses_ssh(self, name: str, method: str, restore: bool) -> bool:
        """Does ``method`` (BackupPC's $XferMethod) use ssh for host ``name``'s dump/restore?"""
        if method != "tar":
            return uses_ssh(method, {})
        merged = {**(self.main() or {}), **self.host_overrides(name)}
        return uses_ssh(method, merged, restore)
