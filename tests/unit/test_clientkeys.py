"""client-setup's remote scripts: what they are given, and their answers parsed."""

from __future__ import annotations

import base64
import hashlib
from typing import cast

import pytest

from backuppc_agent.errors import BackupPCAgentError
from backuppc_agent.install import client, clientkeys


class ScriptedSession:
    """A Session that records each script's arguments and answers ``answer``."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.args: list[tuple[str, ...]] = []

    def script(self, script: str, *args: str) -> bytes:
        self.args.append(args)
        return self.answer


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (".ssh/authorized_keys", "/home/u/.ssh/authorized_keys"),
        ("%h/.ssh/k", "/home/u/.ssh/k"),
        ("/etc/ssh/keys/%u", "/etc/ssh/keys/u"),
        ("/etc/ssh/keys/%U", "/etc/ssh/keys/1001"),
        ("/etc/100%%/k", "/etc/100%/k"),
        ("/etc/%k", None),
    ],
)
def test_authorized_keys_file_tokens_expand_as_sshd_does(value: str, expected: str | None) -> None:
    assert clientkeys.expand(value, "/home/u", "u", "1001") == expected


def test_the_inspect_output_defaults_to_the_home_file_when_sshd_t_fails() -> None:
    account = clientkeys.parse_inspect(
        "noise from .bashrc\naddr 192.0.2.7\nhome /home/u\nuser u\nuid 5\nakf-unknown not root\n"
    )
    assert account.files == ("/home/u/.ssh/authorized_keys",)
    assert account.address == "192.0.2.7"
    listed = clientkeys.parse_inspect(
        "addr bogus\nhome /root\nuser root\nuid 0\nakf .ssh/authorized_keys .ssh/authorized_keys2\n"
    )
    assert listed.files == ("/root/.ssh/authorized_keys", "/root/.ssh/authorized_keys2")
    assert listed.address is None


def test_the_read_output_is_split_by_sizes_not_by_lines() -> None:
    body = b"a\nb\nfile 3 0\n"
    output = b"file %d 1\n" % len(body) + body + b"absent\n"
    files = clientkeys.parse_read(output, ("/x", "/y"))
    assert [(f.state, f.text, f.saved) for f in files] == [
        ("file", body.decode(), True),
        ("absent", None, False),
    ]


def test_undo_is_given_each_file_with_its_saved_copy_and_gate() -> None:
    session = ScriptedSession(b"restored /etc/keys/r\n")
    paths = ("/r/.ssh/authorized_keys", "/etc/keys/r")
    assert clientkeys.undo_by_shell(cast(client.Session, session), paths) == "/etc/keys/r"
    assert session.args == [(
        "/r/.ssh/authorized_keys", "/r/.ssh/authorized_keys.backuppc-agent-saved",
        "/r/.ssh/backuppc-agent-gate",
        "/etc/keys/r", "/etc/keys/r.backuppc-agent-saved", "/etc/keys/backuppc-agent-gate",
    )]  # fmt: skip


def test_read_is_given_each_file_with_its_saved_copy() -> None:
    session = ScriptedSession(b"absent\n")
    files = clientkeys.read(cast(client.Session, session), ("/r/k",))
    assert [(f.path, f.state) for f in files] == [("/r/k", "absent")]
    assert session.args == [
        (str(clientkeys.MAX_AUTHKEYS_BYTES), "/r/k", "/r/k.backuppc-agent-saved")
    ]


def test_a_script_that_answers_nothing_fails_saying_so() -> None:
    with pytest.raises(BackupPCAgentError, match=r"undo failed on the client: no answer$"):
        clientkeys.undo_by_shell(cast(client.Session, ScriptedSession(b"")), ("/r/k",))


def test_write_is_given_the_file_its_saved_copy_the_gate_and_the_old_texts_hash() -> None:
    session = ScriptedSession(b"written\n")
    clientkeys.write(cast(client.Session, session), "/r/k", "old\n", "new\n", "#!/bin/sh\n")
    [args] = session.args
    assert args[:3] == ("/r/k", "/r/k.backuppc-agent-saved", "/r/backuppc-agent-gate")
    assert args[3] == hashlib.sha256(b"old\n").hexdigest()
    assert [base64.b64decode(word) for word in args[4:]] == [b"#!/bin/sh\n", b"new\n"]


def test_write_reads_no_further_than_the_bound_of_an_answer() -> None:
    flood = ScriptedSession(b"x" * clientkeys.MAX_ANSWER_BYTES + b"\nwritten\n")
    with pytest.raises(BackupPCAgentError, match=r"^/r/k: x{100}"):
        clientkeys.write(cast(client.Session, flood), "/r/k", "", "", "")
