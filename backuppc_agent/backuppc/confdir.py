"""BackupPC's config dir read by BackupPC's own rules: hosts, ``$Conf`` settings, host files.

The hosts file as BackupPC::Storage::Text::HostInfoRead (4.4) reads it, on bytes:
per line, the first run of CR/LF, a ``#`` comment and trailing white space go; a
line counts only if it starts with ``[\\w.\\-]+`` and white space; the first such
line is the header, whatever it says; fields split on white space not preceded by
``\\`` (``\\ `` becomes a space); hosts are keyed by their name lower-cased (ASCII,
Perl's lc on bytes), a later line replacing an earlier one
(tests/integration/test_hosts_agreement.py runs BackupPC's code on the same files).
Only plain ``$Conf{Name} = VALUE;`` statements are read, the last one winning. A
host's own file is TopDir/pc/HOST/config.pl, else ConfDir/HOST.pl (Debian's
layout), never for a name BackupPC_dump refuses, '.' or '..'.
"""

from __future__ import annotations

import os
import re
import string
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path

from backuppc_agent import paths
from backuppc_agent.errors import BackupPCAgentError, UnsafePathError

#: Bound on any one BackupPC file read (a backups file of 10,000 dumps is ~1.5 MB).
MAX_FILE_BYTES = 16 * 1024 * 1024
#: A host's fields by the header's names; None where its line is shorter than the header.
Record = dict[str, str | None]
_ASSIGNMENT = re.compile(r"^[ \t]*\$Conf\{(\w+)\}\s*=\s*(.*?);[ \t]*(?:#[^\n]*)?$", re.M | re.S)
_QUOTED = re.compile(r"""'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)\"""")
_SINGLE_QUOTED = re.compile(r"'((?:[^'\\]|\\.)*)'", re.S)
_CONF_NUMBER = re.compile(r"-?(?:\d+\.?\d*|\.\d+)")
# HostInfoRead's own patterns; on bytes \w and \s are ASCII, as in Perl on a binmode file
_CRLF, _COMMENT, _TRAILING = re.compile(rb"[\n\r]+"), re.compile(rb"#.*"), re.compile(rb"\s+$")
_HOST_LINE = re.compile(rb"[\w.\\-]+\s+")
_FIELD_BREAK = re.compile(rb"(?<!\\)\s+")
_ESCAPED_SPACE = re.compile(rb"\\(\s)")
#: BackupPC_dump's test of a host name: any other is a "bad host name" it never backs up.
_DUMPABLE = re.compile(r"[\w.\s-]+", re.ASCII)
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
#: BackupPC 4's transfer methods that never run ssh (anything unknown is taken to).
NO_SSH_METHODS = frozenset({"rsyncd", "smb", "ftp", "archive"})


class MalformedError(BackupPCAgentError):
    """A BackupPC file cannot be read, or holds something BackupPC would not have written."""


def read_bytes(path: Path | str) -> bytes | None:
    """A BackupPC file's bytes, None if it does not exist; raise MalformedError otherwise."""
    try:
        return paths.read_bounded(path, MAX_FILE_BYTES, follow=True)
    except UnsafePathError as err:
        raise MalformedError(str(err)) from err


def read_text(path: Path | str) -> str | None:
    """A BackupPC file's text (bytes kept as surrogates), None if it does not exist."""
    data = read_bytes(path)
    return None if data is None else data.decode("utf-8", "surrogateescape")


def host_key(name: str) -> str:
    """The name BackupPC keys a host by: ``name`` with A-Z lower-cased (Perl's lc on bytes)."""
    return name.translate(_ASCII_LOWER)


def usable(name: str) -> bool:
    """True if a path may be built from host ``name``: BackupPC_dump takes it, not '.' or '..'."""
    return _DUMPABLE.fullmatch(name) is not None and name not in (".", "..")


def parse_hosts(data: bytes) -> dict[str, Record]:
    """ConfDir/hosts as HostInfoRead reads it: {host key: {header field: value}}, file order."""
    hosts: dict[str, Record] = {}
    header: list[str] = []
    for raw in data.split(b"\n"):
        line = _CRLF.sub(b"", raw, count=1)
        line = _TRAILING.sub(b"", _COMMENT.sub(b"", line, count=1), count=1)
        if _HOST_LINE.match(line) is None:
            continue
        fields = [
            _ESCAPED_SPACE.sub(rb"\1", field).decode("utf-8", "surrogateescape")
            for field in _FIELD_BREAK.split(line)
        ]
        if not header:
            header = fields
            continue
        hosts[host_key(fields[0])] = dict(zip_longest(header, fields[: len(header)]))
    return hosts


def assignments(text: str) -> dict[str, str]:
    """Every ``$Conf{Name}`` with the text of its last assignment, white space collapsed."""
    return {
        match.group(1): " ".join(match.group(2).split()) for match in _ASSIGNMENT.finditer(text)
    }


def first_string(value: str | None) -> str | None:
    """The first quoted string in a Perl value ('x', "x" or ['x', ...]), or None."""
    match = None if value is None else _QUOTED.search(value)
    if match is None:
        return None
    return match.group(1) if match.group(1) is not None else match.group(2)


def config_number(settings: dict[str, str], key: str) -> float | None:
    """The number ``$Conf{KEY}`` is set to in ``settings`` (``assignments``), or None.

    Raises MalformedError for anything but a plain number: only Perl knows its value.
    """
    value = settings.get(key)
    if value is None:
        return None
    if _CONF_NUMBER.fullmatch(value) is None:
        raise MalformedError(f"$Conf{{{key}}} is not set to a plain number")
    return float(value)


def server_secret(settings: dict[str, str] | None) -> str:
    """$Conf{ServerMesgSecret} when config.pl sets it to one single-quoted string, else ''."""
    match = _SINGLE_QUOTED.fullmatch((settings or {}).get("ServerMesgSecret", ""))
    return "" if match is None else re.sub(r"\\([\\'])", r"\1", match.group(1))


def uses_ssh(method: str, settings: dict[str, str], restore: bool = False) -> bool:
    """True if transfer ``method`` with these settings runs ssh to the client."""
    if method == "tar":  # only if its command runs $sshPath (Debian's ``localhost`` does not)
        command = "TarClientRestoreCmd" if restore else "TarClientCmd"
        return "$sshPath" in settings.get(command, "$sshPath")
    return method not in NO_SSH_METHODS


#: rsync's -s (--protect-args) sends the options over rsync's own channel, out of sight of
#: any forced command: client-setup's gate refuses it, so gated rsync hosts drop it.
PROTECT_ARGS = "--protect-args"
RSYNC_ARG_SETTINGS = ("RsyncArgs", "RsyncArgsExtra", "RsyncRestoreArgs")
#: The lines that drop it for one host (for its HOST.pl).
WITHOUT_PROTECT_ARGS = (
    "$Conf{RsyncArgs} = [grep { $_ ne '--protect-args' } @{$Conf{RsyncArgs}}];",
    "$Conf{RsyncRestoreArgs} = [grep { $_ ne '--protect-args' } @{$Conf{RsyncRestoreArgs}}];",
)


def protected_args(settings: dict[str, str]) -> list[str]:
    """The rsync settings that still pass --protect-args (a ``grep`` removing it does not)."""
    return [
        key
        for key in RSYNC_ARG_SETTINGS
        if PROTECT_ARGS in settings.get(key, "") and "grep" not in settings.get(key, "")
    ]


def no_ssh_reason(method: str) -> str:
    """Why a host is left alone: its transfer method (and command) does not use ssh."""
    if method == "tar":
        return "XferMethod tar with a TarClientCmd that does not run $sshPath"
    return f"XferMethod {method}"


@dataclass(frozen=True)
class Host:
    """One BackupPC host as ssh sees it."""

    name: str
    address: str
    xfer_method: str
    uses_ssh: bool = True


@dataclass(frozen=True)
class ConfDir:
    """BackupPC's ConfDir (hosts, config.pl, HOST.pl), and TopDir for old-style host files."""

    conf_dir: Path
    top_dir: Path

    def hosts(self) -> dict[str, Record] | None:
        """The hosts file as BackupPC reads it; None if there is none. Raises MalformedError."""
        data = read_bytes(self.conf_dir / "hosts")
        return None if data is None else parse_hosts(data)

    def host_names(self) -> list[str]:
        """The names BackupPC knows its hosts by, in file order; none without a hosts file."""
        return list(self.hosts() or {})

    def main(self) -> dict[str, str] | None:
        """The assignments of config.pl, or None if it does not exist."""
        text = read_text(self.conf_dir / "config.pl")
        return None if text is None else assignments(text)

    def host_file(self, name: str) -> Path | None:
        """Where BackupPC reads host ``name``'s own config, if it has a file; never off the dir."""
        if not usable(name):
            return None
        for path in (f"{self.top_dir}/pc/{name}/config.pl", f"{self.conf_dir}/{name}.pl"):
            if os.path.isfile(path):  # noqa: PTH113  (str paths: 500 hosts at each scrape)
                return Path(path)
        return None

    def settings(self, name: str, base: dict[str, str] | None = None) -> dict[str, str]:
        """``base`` (default: config.pl's) overridden by host ``name``'s own file."""
        path = self.host_file(host_key(name))
        own = assignments((path and read_text(path)) or "")
        return {**(self.main() or {} if base is None else base), **own}

    def host(self, name: str, main: dict[str, str] | None = None) -> Host:
        """Host ``name`` as BackupPC keys it: address (ClientNameAlias), method, ssh or not."""
        name = host_key(name)
        merged = self.settings(name, main)
        method = first_string(merged.get("XferMethod")) or "tar"
        address = first_string(merged.get("ClientNameAlias")) or name
        return Host(name, address, method, uses_ssh(method, merged))
