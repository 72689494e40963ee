"""authorized_keys lines as sshd reads them (auth2-pubkeyfile.c), and client-setup's rewrite.

Options end at the first blank outside double quotes (``\\"`` skipped everywhere).
Keys match by type and blob, never comment. Lines not rewritten are kept byte for
byte; ``cert-authority`` lines name a CA, not a login key, and are left alone.
"""

from __future__ import annotations

import base64
import difflib
import ipaddress
import re
from dataclasses import dataclass

from backuppc_agent import names
from backuppc_agent.agent import keyfiles, protocol

#: Paths we write into ``command="..."``: sshd runs it through the login user's shell.
SAFE_PATH = re.compile(r"/[A-Za-z0-9_./@+-]*")
BLANKS = re.compile(r"[ \t]+")
GATE_NAME = "backuppc-agent-gate"
SAVED_SUFFIX = ".backuppc-agent-saved"
BACKUP, RESTORE = "backup", "restore"


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A key as authorized_keys names it: type, blob, comment."""

    key_type: str
    blob: bytes
    comment: str = ""

    @property
    def base64(self) -> str:
        """The blob as it is written in a line."""
        return base64.b64encode(self.blob).decode("ascii")

    @property
    def fingerprint(self) -> str:
        """``SHA256:...`` as ssh prints it."""
        return protocol.fingerprint(self.blob)

    @property
    def ident(self) -> tuple[str, bytes]:
        """What two lines must share to name the same key."""
        return (self.key_type, self.blob)


@dataclass(frozen=True, slots=True)
class Line:
    """One line of the file: its text without the ending, the ending, what it holds."""

    text: str
    ending: str
    options: str = ""
    key: PublicKey | None = None

    @property
    def is_ca(self) -> bool:
        """True for a ``cert-authority`` line."""
        return "cert-authority" in option_names(self.options)


@dataclass(frozen=True, slots=True)
class Target:
    """Where the gate and the file live on the client, and the server's address there."""

    authkeys: str
    address: str | None = None

    @property
    def gate(self) -> str:
        """The gate installed next to the authorized_keys file."""
        return self.authkeys.rsplit("/", 1)[0] + "/" + GATE_NAME

    @property
    def saved(self) -> str:
        """The copy of the file from before the first setup."""
        return self.authkeys + SAVED_SUFFIX


def parse(text: str) -> list[Line]:
    """Every line of an authorized_keys file, in order, with its ending (CRLF, LF or none)."""
    *full, last = text.split("\n")  # sshd splits on \n alone, never on str.splitlines' set
    lines = []
    for chunk, newline in [(chunk, "\n") for chunk in full] + ([(last, "")] if last else []):
        body = chunk.removesuffix("\r")
        lines.append(parse_line(body, chunk[len(body) :] + newline))
    return lines


def parse_line(text: str, ending: str = "\n") -> Line:
    """One line; ``key`` is None for blank, comment and unreadable lines."""
    rest = text.lstrip(" \t")
    if not rest or rest.startswith("#"):
        return Line(text, ending)
    key = read_key(rest)
    if key is not None:
        return Line(text, ending, "", key)
    end = options_end(rest)
    if end is None:
        return Line(text, ending)
    return Line(text, ending, rest[:end], read_key(rest[end:].lstrip(" \t")))


def options_end(text: str) -> int | None:
    """Where the options at the start of ``text`` end; None on an unterminated quote."""
    quoted, index = False, 0
    while index < len(text) and (quoted or text[index] not in " \t"):
        if text.startswith('\\"', index):
            index += 1
        elif text[index] == '"':
            quoted = not quoted
        index += 1
    return None if quoted else index


def option_names(options: str) -> list[str]:
    """The lower-cased names of comma-separated options (quoted commas do not split)."""
    names, quoted, start = [], False, 0
    for index, char in enumerate(options + ","):
        if char == '"' and options[index - 1 : index] != "\\":
            quoted = not quoted
        elif char == "," and not quoted:
            names.append(options[start:index].split("=", 1)[0].strip().lower())
            start = index + 1
    return [name for name in names if name]


def read_key(text: str) -> PublicKey | None:
    """``TYPE BASE64 [COMMENT]`` whose blob names TYPE, or None."""
    fields = BLANKS.split(text, maxsplit=2)
    if len(fields) < 2:
        return None
    blob = keyfiles.decode_blob(fields[1])
    if blob is None or protocol.key_type(blob) != fields[0]:
        return None
    return PublicKey(fields[0], blob, fields[2].strip(" \t") if len(fields) > 2 else "")


def public_key(text: str) -> PublicKey | None:
    """The key of a ``KEY.pub`` file (its first key line), or None."""
    keys = [line.key for line in parse(text) if line.key is not None and not line.options]
    return keys[0] if keys else None


def check_target(target: Target) -> str | None:
    """Why ``target`` cannot be written into a command= option, or None if it can."""
    if not SAFE_PATH.fullmatch(target.authkeys) or "/../" in target.authkeys + "/":
        return f"{target.authkeys!r} is not a plain absolute path (letters, digits, _./@+-)"
    if target.address is not None:
        try:
            ipaddress.ip_address(target.address)
        except ValueError:
            return f"{target.address!r} is not an IP address"
    return None


def entry(mode: str, target: Target, key: PublicKey) -> str:
    """The restricted line for ``key``: restrict, from= (if known), the gate in ``mode``."""
    options = ["restrict"]
    if target.address is not None:
        options.append(f'from="{target.address}"')
    options.append(f'command="{target.gate} {mode} {target.authkeys}"')
    return " ".join([",".join(options), key.key_type, key.base64, key.comment]).rstrip()


def rewrite(text: str, backup: set[tuple[str, bytes]], restore: PublicKey, target: Target) -> str:
    """The file with every backup key and the restore key restricted (appended if missing).

    Each key keeps its first line, rewritten; rewrite(rewrite(x)) == rewrite(x).
    """
    out: list[str] = []
    seen: set[tuple[str, bytes]] = set()
    for line in parse(text):
        mode = gate_mode(line, backup, restore)
        if line.key is None or mode is None:
            out.append(line.text + line.ending)
        elif line.key.ident not in seen:  # a later line of the same key goes
            seen.add(line.key.ident)
            ending = line.ending if "\n" in line.ending else "\n"
            out.append(entry(mode, target, line.key) + ending)
    if restore.ident not in seen:
        if "".join(out)[-1:] not in ("", "\n"):
            out.append("\n")
        out.append(entry(RESTORE, target, restore) + "\n")
    return "".join(out)


def gate_mode(line: Line, backup: set[tuple[str, bytes]], restore: PublicKey) -> str | None:
    """BACKUP or RESTORE if ``line`` lets in one of those keys (a CA line never does), or None."""
    if line.key is None or line.is_ca:
        return None
    if line.key.ident == restore.ident:
        return RESTORE
    return BACKUP if line.key.ident in backup else None


def summary_line(line: str) -> str:
    """A line for the summary: the blob as its fingerprint, control characters escaped."""
    key = parse_line(line).key
    return names.escaped(line if key is None else line.replace(key.base64, key.fingerprint))


def summary(old: str, new: str) -> list[str]:
    """What changes from ``old`` to ``new`` (line endings aside), as ``- line`` and ``+ line``."""
    before, after = ([line.text for line in parse(text)] for text in (old, new))
    diff = list(difflib.unified_diff(before, after, n=0, lineterm=""))[2:]  # no file names
    return [f"{line[0]} {summary_line(line[1:])}" for line in diff if not line.startswith("@@")]
