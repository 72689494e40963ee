"""The client's authorized_keys files, through a Session: where they are, read, write, undo.

Where: ``sshd -T -C user=LOGIN,host=ADDR,addr=ADDR`` (root only; else sshd's default).
Every value is a script argument, never inside it; POSIX sh and coreutils suffice.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
from dataclasses import dataclass

from backuppc_agent import names
from backuppc_agent.errors import BackupPCAgentError
from backuppc_agent.install.authkeys import Target
from backuppc_agent.install.client import Session
from backuppc_agent.ssh.remote import decode, escape_untrusted

DEFAULT_AUTHKEYS = ".ssh/authorized_keys"
MAX_AUTHKEYS_BYTES = 256 * 1024
#: What we parse of the inspect, write and undo scripts' answers (a few short lines).
MAX_ANSWER_BYTES = 64 * 1024


@dataclass(frozen=True)
class Account:
    """The login account on the client, and the files its sshd reads."""

    address: str | None
    user: str
    files: tuple[str, ...]
    source: str


@dataclass(frozen=True)
class KeysFile:
    """One authorized_keys file as read: its state, text (when read), saved copy."""

    path: str
    state: str
    text: str | None = None
    saved: bool = False


#: No arguments. Prints ``addr ADDR`` (the server as the client sees it), ``home``,
#: ``user``, ``uid``, then ``akf VALUE`` from ``sshd -T`` or ``akf-unknown WHY``.
INSPECT_SCRIPT = r"""# backuppc-agent client-setup: which authorized_keys this account's sshd reads.
addr=${SSH_CONNECTION:-}
addr=${addr%% *}
user=$(id -un)
printf 'addr %s\nhome %s\nuser %s\nuid %s\n' "$addr" "${HOME:-}" "$user" "$(id -u)"
for sshd in /usr/sbin/sshd /usr/local/sbin/sshd /sbin/sshd; do
    [ -x "$sshd" ] || continue
    # -T needs root (it loads the host keys): anyone else gets the default.
    if out=$("$sshd" -T -C "user=$user,host=$addr,addr=$addr" 2>/dev/null); then
        printf '%s\n' "$out" | sed -n 's/^authorizedkeysfile /akf /p'
        exit 0
    fi
    echo "akf-unknown $sshd -T failed (not root?)"
    exit 0
done
echo "akf-unknown no sshd found"
"""


def expand(value: str, home: str, user: str, uid: str) -> str | None:
    """An AuthorizedKeysFile value as sshd expands it for this account; None if we can't."""
    values = {"%": "%", "h": home, "u": user, "U": uid}
    parts = re.split(r"%(.?)", value)  # the odd ones are the tokens' letters
    if any(token not in values for token in parts[1::2]):
        return None
    path = "".join(values[part] if index % 2 else part for index, part in enumerate(parts))
    return path if path.startswith("/") else f"{home.rstrip('/')}/{path}"


def parse_inspect(output: str) -> Account:
    """The inspect script's lines as an Account; raise BackupPCAgentError if malformed."""
    fields: dict[str, str] = {}
    values: list[str] = []
    for line in output.splitlines():
        key, _, value = line.partition(" ")
        if key == "akf":
            values += value.split()
        elif key in ("addr", "home", "user", "uid", "akf-unknown"):
            fields[key] = value
    home, user, uid = fields.get("home", ""), fields.get("user", ""), fields.get("uid", "")
    if not home.startswith("/") or not user:
        raise BackupPCAgentError(f"the client gave no home or user: {escape_untrusted(output)}")
    if values:
        files = [expand(v, home, user, uid) for v in values if v.lower() != "none"]
        source = "sshd -T"
    else:
        files = [f"{home.rstrip('/')}/{DEFAULT_AUTHKEYS}"]
        source = f"sshd's default ({fields.get('akf-unknown', 'sshd -T gave none')})"
    return Account(_address(fields.get("addr", "")), user, tuple(f for f in files if f), source)


def _address(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def inspect(session: Session) -> Account:
    """Ask the client where its sshd reads this account's keys."""
    return parse_inspect(_answer(session, INSPECT_SCRIPT))


#: ``MAX_BYTES (PATH SAVED_COPY)...``: per path one line ``file SIZE SAVED`` then SIZE
#: bytes, or ``absent``, ``symlink``, ``unreadable``, ``toolarge SIZE`` (SAVED: 1 if
#: SAVED_COPY exists).
READ_SCRIPT = r"""# backuppc-agent client-setup: read authorized_keys files.
max=$1
shift
while [ "$#" -ge 2 ]; do
    path=$1
    saved=0
    [ -e "$2" ] && saved=1
    shift 2
    if [ -L "$path" ]; then
        echo symlink
    elif [ ! -e "$path" ]; then
        echo absent
    elif [ ! -f "$path" ] || [ ! -r "$path" ]; then
        echo unreadable
    else
        size=$(wc -c < "$path" | tr -d ' ')
        if [ "$size" -gt "$max" ]; then
            echo "toolarge $size"
        else
            echo "file $size $saved"
            head -c "$size" "$path"
        fi
    fi
done
"""


def parse_read(output: bytes, paths: tuple[str, ...]) -> list[KeysFile]:
    """The read script's output for ``paths``; raise BackupPCAgentError if it does not add up."""
    found, rest = [], output
    for path in paths:
        header, newline, rest = rest.partition(b"\n")
        words = decode(header).split()
        if not newline or not words:
            raise BackupPCAgentError(f"{path}: the client's answer was cut short")
        if words[0] != "file" or len(words) != 3 or not words[1].isdigit():
            found.append(KeysFile(path, escape_untrusted(" ".join(words))))
            continue
        size = int(words[1])
        if size > MAX_AUTHKEYS_BYTES or len(rest) < size:
            raise BackupPCAgentError(f"{path}: changed while it was read: try again")
        found.append(KeysFile(path, "file", decode(rest[:size]), words[2] == "1"))
        rest = rest[size:]
    return found


def read(session: Session, paths: tuple[str, ...]) -> list[KeysFile]:
    """Read each of ``paths`` on the client (bounded)."""
    pairs = [word for path in paths for word in (path, Target(path).saved)]
    output = session.script(READ_SCRIPT, str(MAX_AUTHKEYS_BYTES), *pairs)
    return parse_read(output[: len(paths) * (MAX_AUTHKEYS_BYTES + 100)], paths)


#: ``AUTHKEYS SAVED GATE SHA256 GATE_BASE64 NEW_BASE64``: each file through a temporary
#: one and mv; the gate 0755, the saved copy 0600, AUTHKEYS keeping its owner and mode.
WRITE_SCRIPT = r"""# backuppc-agent client-setup: install the gate and the new authorized_keys.
umask 077
ak=$1
saved=$2
gate=$3
want=$4
gate_b64=$5
new_b64=$6
tmp=$(dirname -- "$ak")/.backuppc-agent-tmp.$$
fail() {
    rm -f -- "$tmp"
    echo "error $*"
    exit 1
}
if [ -L "$ak" ] || [ ! -f "$ak" ]; then fail "$ak is not a regular file"; fi
have=$(sha256sum < "$ak") || fail "cannot read $ak"
[ "${have%% *}" = "$want" ] || fail "$ak changed since it was read: run client-setup again"
if [ ! -e "$saved" ]; then
    { cp -- "$ak" "$tmp" && chmod 600 -- "$tmp" && mv -f -- "$tmp" "$saved"; } ||
        fail "cannot keep a copy in $saved"
fi
rm -f -- "$tmp"
{ printf '%s' "$gate_b64" | base64 -d > "$tmp" && chmod 755 -- "$tmp" &&
    mv -f -- "$tmp" "$gate"; } || fail "cannot install $gate"
# cp -p, then truncate and write: the new file keeps the old one's mode and owner.
{ cp -p -- "$ak" "$tmp" && printf '%s' "$new_b64" | base64 -d > "$tmp" &&
    mv -f -- "$tmp" "$ak"; } || fail "cannot replace $ak"
echo written
"""


def write(session: Session, path: str, old: str, new: str, gate: str) -> None:
    """Keep a saved copy (once), install the gate, replace ``path`` if it still holds ``old``."""
    sha256 = hashlib.sha256(_raw(old)).hexdigest()  # as sha256sum prints it
    gate_b64, new_b64 = (base64.b64encode(_raw(text)).decode("ascii") for text in (gate, new))
    answer = _answer(session, WRITE_SCRIPT, *_layout(path), sha256, gate_b64, new_b64)
    last = names.last_line(answer)
    if last != "written":
        raise BackupPCAgentError(f"{path}: {_error(last)}")


#: ``(AUTHKEYS SAVED GATE)...``; prints ``restored AUTHKEYS`` or ``nothing``. The file
#: keeps its mode.
UNDO_SCRIPT = r"""# backuppc-agent client-setup --undo: put the saved authorized_keys back.
while [ "$#" -ge 3 ]; do
    ak=$1
    saved=$2
    gate=$3
    shift 3
    if [ -f "$saved" ] && [ ! -L "$saved" ]; then
        # As the gate's undo: the copy was kept 0600, AUTHKEYS's mode goes back with it.
        mode=$(stat -c %a -- "$ak" 2>/dev/null) && chmod -- "$mode" "$saved" 2>/dev/null
        mv -f -- "$saved" "$ak" || { echo "error cannot move $saved back"; exit 1; }
        rm -f -- "$gate"
        echo "restored $ak"
        exit 0
    fi
done
echo nothing
"""


def undo_by_shell(session: Session, paths: tuple[str, ...]) -> str | None:
    """Move the first saved copy found back over its file, remove the gate; its path or None."""
    layouts = [word for path in paths for word in _layout(path)]
    last = names.last_line(_answer(session, UNDO_SCRIPT, *layouts))
    if last == "nothing":
        return None
    if last.startswith("restored ") and last[9:] in paths:
        return last[9:]
    raise BackupPCAgentError(f"undo failed on the client: {_error(last)}")


def _answer(session: Session, script: str, *args: str) -> str:
    """What ``script`` printed, bounded to MAX_ANSWER_BYTES (its answer is a few short lines)."""
    return decode(session.script(script, *args)[:MAX_ANSWER_BYTES])


def _error(last: str) -> str:
    """What a script's last line (``error WHY``, or anything else) says, escaped."""
    return escape_untrusted(last.removeprefix("error ") or "no answer")


def _layout(path: str) -> tuple[str, str, str]:
    """``path``, its saved copy and the gate beside it (``Target``), as script arguments."""
    target = Target(path)
    return path, target.saved, target.gate


def _raw(text: str) -> bytes:
    """The bytes ``text`` was decoded from (remote.decode's inverse)."""
    return text.encode("utf-8", errors="surrogateescape")
