"""The authorized_keys parser and rewriter of client-setup: pure text in, text out."""

from __future__ import annotations

import base64
import os
import pwd
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backuppc_agent import config as config_mod
from backuppc_agent.install import authkeys, client
from backuppc_agent.install.authkeys import PublicKey, Target
from backuppc_agent.ssh import remote


def make_key(seed: int, key_type: str = "ssh-ed25519", comment: str = "") -> PublicKey:
    name = key_type.encode()
    body = bytes([seed]) * 32
    blob = struct.pack(">I", len(name)) + name + struct.pack(">I", len(body)) + body
    return PublicKey(key_type, blob, comment)


BACKUP = make_key(1, comment="backuppc@server")
RESTORE = make_key(2, comment="backuppc-restore@server")
OTHER = make_key(3, comment="admin@laptop")
TARGET = Target("/root/.ssh/authorized_keys", "192.0.2.7")
GATE = "/root/.ssh/backuppc-agent-gate"


def line(key: PublicKey, options: str = "", comment: str | None = None) -> str:
    words = [options] if options else []
    words += [key.key_type, key.base64, key.comment if comment is None else comment]
    return " ".join(words).rstrip()


def backup_entry(key: PublicKey = BACKUP) -> str:
    return (
        f'restrict,from="192.0.2.7",command="{GATE} backup /root/.ssh/authorized_keys" '
        f"ssh-ed25519 {key.base64} {key.comment}"
    )


def restore_entry() -> str:
    return (
        f'restrict,from="192.0.2.7",command="{GATE} restore /root/.ssh/authorized_keys" '
        f"ssh-ed25519 {RESTORE.base64} {RESTORE.comment}"
    )


def rewrite(text: str, backup: tuple[PublicKey, ...] = (BACKUP,)) -> str:
    return authkeys.rewrite(text, {k.ident for k in backup}, RESTORE, TARGET)


@pytest.mark.parametrize(
    ("text", "options", "comment"),
    [
        (line(BACKUP), "", "backuppc@server"),
        ("  \t" + line(BACKUP), "", "backuppc@server"),
        (line(BACKUP, 'command="a, b",no-pty'), 'command="a, b",no-pty', "backuppc@server"),
        (line(BACKUP, r'command="say \"hi there\"",from="a,b"'),
         r'command="say \"hi there\"",from="a,b"', "backuppc@server"),
        (line(BACKUP, "no-pty", comment="two  words\there"), "no-pty", "two  words\there"),
        (line(BACKUP, comment=""), "", ""),
    ],
)  # fmt: skip
def test_key_lines_parse_into_options_key_and_comment(
    text: str, options: str, comment: str
) -> None:
    parsed = authkeys.parse_line(text)
    assert parsed.key is not None
    assert (parsed.options, parsed.key.ident, parsed.key.comment) == (
        options,
        BACKUP.ident,
        comment,
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "# " + line(BACKUP),
        "  #" + line(BACKUP),
        'command="unterminated ' + line(BACKUP),
        f"ssh-rsa {BACKUP.base64} wrong type in the blob",
        "ssh-ed25519 not-base64!",
        "ssh-ed25519",
        "garbage",
        "\x00\x1b[2J",
    ],
)
def test_blank_comment_and_unreadable_lines_hold_no_key(text: str) -> None:
    assert authkeys.parse_line(text).key is None


def test_cert_authority_lines_are_left_alone_even_for_the_backup_key() -> None:
    text = line(BACKUP, 'cert-authority,principals="a,b"') + "\n"
    assert authkeys.parse_line(text.rstrip()).is_ca
    out = rewrite(text)
    assert out == text + restore_entry() + "\n"


def test_the_backup_key_loses_its_options_and_gets_restrict_from_and_the_gate() -> None:
    text = "# mine\n" + line(OTHER) + "\n" + line(BACKUP, 'no-pty,command="x y"') + "\n"
    assert rewrite(text) == (
        "# mine\n" + line(OTHER) + "\n" + backup_entry() + "\n" + restore_entry() + "\n"
    )


def test_without_an_address_there_is_no_from() -> None:
    target = Target("/home/b/.ssh/authorized_keys")
    out = authkeys.entry(authkeys.BACKUP, target, BACKUP)
    assert out == (
        'restrict,command="/home/b/.ssh/backuppc-agent-gate backup /home/b/.ssh/authorized_keys"'
        f" ssh-ed25519 {BACKUP.base64} backuppc@server"
    )


def test_keys_match_by_blob_never_by_comment() -> None:
    impostor = line(OTHER, comment=BACKUP.comment)
    out = rewrite(impostor + "\n" + line(BACKUP, comment="renamed") + "\n")
    assert out.splitlines()[0] == impostor
    assert out.splitlines()[1] == backup_entry().replace("backuppc@server", "renamed")


def test_a_key_listed_twice_keeps_one_restricted_line() -> None:
    text = line(BACKUP) + "\n" + line(OTHER) + "\n" + line(BACKUP, "no-pty") + "\n"
    new = rewrite(text)
    assert new == backup_entry() + "\n" + line(OTHER) + "\n" + restore_entry() + "\n"
    shown = authkeys.summary(text, new)
    assert [s[0] for s in shown] == ["-", "+", "-", "+"]  # rewritten, duplicate gone, added
    assert shown[2] == "- " + authkeys.summary_line(line(BACKUP, "no-pty"))


def test_crlf_lines_keep_their_endings_and_a_last_line_gets_a_newline() -> None:
    text = line(OTHER) + "\r\n" + line(BACKUP) + "\r\n" + line(OTHER, comment="last")
    assert rewrite(text) == (
        line(OTHER) + "\r\n" + backup_entry() + "\r\n" + line(OTHER, comment="last") + "\n"
        + restore_entry() + "\n"
    )  # fmt: skip


def test_the_restore_key_already_present_is_rewritten_in_place() -> None:
    text = line(RESTORE, "no-pty") + "\n" + line(BACKUP) + "\n"
    assert rewrite(text) == restore_entry() + "\n" + backup_entry() + "\n"


def test_an_empty_file_gets_the_restore_key_only() -> None:
    assert rewrite("") == restore_entry() + "\n"


def test_a_restricted_file_has_no_changes() -> None:
    done = rewrite(line(BACKUP) + "\n")
    assert rewrite(done) == done
    assert authkeys.summary(done, done) == []


def test_lines_split_only_on_newline_as_sshd_does() -> None:
    text = line(OTHER, comment="a\x0bb\x1cc\u2028d") + "\n" + line(BACKUP) + "\n"
    assert rewrite(text).splitlines(keepends=False)[0] != line(OTHER)
    assert rewrite(text).split("\n")[0] == line(OTHER, comment="a\x0bb\x1cc\u2028d")


def test_the_summary_shows_fingerprints_and_escapes_control_characters() -> None:
    text = line(BACKUP, comment="evil\x1b[2J") + "\n"
    shown = authkeys.summary(text, rewrite(text))
    assert shown[0].startswith("- ssh-ed25519 SHA256:")
    assert "\x1b" not in "".join(shown)
    assert "\\x1b[2J" in shown[0]
    assert all(BACKUP.base64 not in s and RESTORE.base64 not in s for s in shown)
    assert [s[0] for s in shown] == ["-", "+", "+"]


@pytest.mark.parametrize(
    ("target", "ok"),
    [
        (Target("/root/.ssh/authorized_keys", "192.0.2.7"), True),
        (Target("/home/a b/.ssh/authorized_keys"), False),
        (Target('/home/a"b/.ssh/authorized_keys'), False),
        (Target("/home/a/../.ssh/authorized_keys"), False),
        (Target(".ssh/authorized_keys"), False),
        (Target("/root/.ssh/authorized_keys", "127.0.0.1 x"), False),
        (Target("/root/.ssh/authorized_keys", "::1"), True),
    ],
)
def test_only_plain_paths_and_addresses_go_into_command_and_from(target: Target, ok: bool) -> None:
    assert (authkeys.check_target(target) is None) is ok


def test_a_pub_file_gives_its_key() -> None:
    assert authkeys.public_key(line(RESTORE) + "\n") == RESTORE
    assert authkeys.public_key("nothing here\n") is None


# -- hypothesis: any text round-trips; the rewrite is idempotent ----------------------

KEYS = (BACKUP, RESTORE, OTHER)
OPTION = st.sampled_from(
    ["no-pty", 'command="a b, c"', r'command="x \"y\" z"', 'from="1.2.3.4,*.lan"', "restrict",
     "cert-authority", 'environment="A=b c"', "CERT-AUTHORITY"]
)  # fmt: skip
KEY_LINE = st.builds(
    lambda k, opts, comment, lead: lead + line(k, ",".join(opts), comment),
    st.sampled_from(KEYS),
    st.lists(OPTION, max_size=3),
    st.text(st.characters(blacklist_characters="\n\r"), max_size=12),
    st.sampled_from(["", " ", "\t "]),
)
ANY_LINE = st.one_of(KEY_LINE, st.text(st.characters(blacklist_characters="\n"), max_size=30))
FILE = st.builds(
    lambda lines, endings, last: (
        "".join(a + b for a, b in zip(lines, endings, strict=False)) + last
    ),
    st.lists(ANY_LINE, max_size=8),
    st.lists(st.sampled_from(["\n", "\r\n"]), min_size=8, max_size=8),
    st.sampled_from(["", "tail without newline"]),
)


@given(FILE)
def test_parsing_keeps_every_line_byte_for_byte(text: str) -> None:
    assert "".join(parsed.text + parsed.ending for parsed in authkeys.parse(text)) == text


@given(FILE)
def test_the_rewrite_is_idempotent_and_leaves_other_lines_alone(text: str) -> None:
    once = rewrite(text)
    assert rewrite(once) == once
    others = [p.text for p in authkeys.parse(text) if not _ours(p)]
    assert [p.text for p in authkeys.parse(once) if not _ours(p)] == others


@given(FILE)
def test_after_the_rewrite_every_usable_backup_or_restore_line_is_the_gate(text: str) -> None:
    for parsed in authkeys.parse(rewrite(text)):
        if _ours(parsed):
            mode = "restore" if parsed.key == RESTORE or parsed.key.ident == RESTORE.ident else ""
            assert parsed.options.startswith('restrict,from="192.0.2.7",command="')
            assert (mode or "backup") in parsed.options


def _ours(parsed: authkeys.Line) -> bool:
    ours = {BACKUP.ident, RESTORE.ident}
    return parsed.key is not None and not parsed.is_ca and parsed.key.ident in ours


def test_a_line_whose_blob_is_short_or_names_another_type_holds_no_key() -> None:
    assert authkeys.read_key("ssh-ed25519 " + base64.b64encode(b"\0\0\3\xe8x").decode()) is None
    assert authkeys.read_key(line(make_key(4, "ssh-rsa")).replace("ssh-rsa", "ssh-ed25519")) is None
    assert authkeys.read_key(line(BACKUP)) == BACKUP


# -- the probe's answers (ssh/remote.py) and the ssh argv (client.py) -----------------


@pytest.mark.parametrize(
    ("stdout", "answer", "version", "mode"),
    [
        ("backuppc-agent-gate-probe\n", remote.Answer.SHELL, "", ""),
        ("motd from .bashrc\nbackuppc-agent-gate-probe\n", remote.Answer.SHELL, "", ""),
        ("backuppc-agent-gate 1 backup\n", remote.Answer.GATE, "1", "backup"),
        ("backuppc-agent-gate 2.0 restore\n", remote.Answer.GATE, "2.0", "restore"),
        ("backuppc-agent-gate 1 root\n", remote.Answer.OTHER, "", ""),
        ("backuppc-agent-gate 1 backup extra\n", remote.Answer.OTHER, "", ""),
        ("", remote.Answer.OTHER, "", ""),
        ("hello\x1b[2J\n", remote.Answer.OTHER, "", ""),
    ],
)
def test_the_probe_tells_a_shell_our_gate_and_anything_else_apart(
    stdout: str, answer: remote.Answer, version: str, mode: str
) -> None:
    found = remote.parse_probe(stdout.encode())
    assert (found.answer, found.version, found.mode) == (answer, version, mode)
    assert found.text.isprintable()


def test_the_shipped_gate_names_itself_and_its_saved_copy_as_client_setup_does() -> None:
    text = client.gate_text()
    assert f"\nGATE_NAME={authkeys.GATE_NAME}\n" in text
    assert f"\nSAVED_SUFFIX={authkeys.SAVED_SUFFIX}\n" in text


def test_the_gate_version_is_read_from_the_script() -> None:
    assert client.gate_version("#!/bin/sh\n# x\nGATE_VERSION=3\n") == "3"
    assert client.gate_version("#!/bin/sh\n") == "unknown"


def test_the_ssh_argv_drops_to_the_user_offers_only_the_given_keys_and_ends_with_the_command(
    tmp_path: Path,
) -> None:
    config = config_mod.from_mapping(
        {"mux": {"identity_files": [str(tmp_path / "id_config")], "control_dir": "/run/m"}},
        "test",
        tmp_path,
    )
    runas = pwd.getpwuid(os.getuid())
    files = (tmp_path / "key0.pub",)
    argv = client.Session(config, "root", "192.0.2.7", runas, files).argv("echo x")
    assert argv[:4] == ("runuser", "-u", runas.pw_name, "--")
    assert argv[-5:] == ("-l", "root", "--", "192.0.2.7", "echo x")
    assert f"IdentityFile={files[0]}" in argv
    assert "IdentityFile=" + str(tmp_path / "id_config") not in argv
    assert {"IdentitiesOnly=yes", "ControlMaster=no", "ControlPath=none", "BatchMode=yes"} <= set(
        argv
    )
    assert client.Session(config, "root", "192.0.2.7").argv("true")[0] == "ssh"
