"""Unattended unlock in pieces: key fingerprints, the askpass helper, the listener's triggers."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from backuppc_agent import askpass
from backuppc_agent.agent import keyfiles, passphrases, unlock
from backuppc_agent.agent.passphrases import PassphraseError
from backuppc_agent.agent.unlock import KeyOutcome, Unlocker
from backuppc_agent.config import Config, from_mapping
from backuppc_agent.errors import BackupPCAgentError
from backuppc_agent.state import Snapshot, State
from tests.helpers import key_fingerprint


def make_config(
    tmp_path: Path, unlock: str = "keyring", keys: tuple[str, ...] = ("/k/a",)
) -> Config:
    agent = {"unlock": unlock, "keys": list(keys), "socket": str(tmp_path / "s")}
    return from_mapping({"agent": agent}, "test", home=Path("/h"))


def snap(agent_pid: int | None, up: bool = True) -> Snapshot:
    return Snapshot(
        state=State.WAITING,
        reason="",
        socket="/s",
        agent_pid=agent_pid,
        identities=0,
        fingerprints=(),
        since=0.0,
        supervisor_pid=1,
        agent_up=up,
    )


# -- key fingerprints ---------------------------------------------------------


def test_the_fingerprint_comes_from_the_pub_file(keys: dict[str, Path]) -> None:
    assert keyfiles.key_fingerprint(keys["a"]) == key_fingerprint(keys["a"])


def test_without_a_pub_file_the_private_key_header_gives_the_same_fingerprint(
    keys: dict[str, Path], tmp_path: Path
) -> None:
    lone = tmp_path / "lone"
    shutil.copy(keys["b"], lone)
    assert not Path(f"{lone}.pub").exists()
    assert keyfiles.key_fingerprint(lone) == key_fingerprint(keys["b"])


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage",
        "-----BEGIN OPENSSH PRIVATE KEY-----\n!!!\n-----END OPENSSH PRIVATE KEY-----",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----",
    ],
)
def test_an_unreadable_key_has_no_fingerprint_rather_than_an_error(text: str) -> None:
    assert keyfiles.private_key_blob(text) is None


def test_a_missing_key_file_has_no_fingerprint(tmp_path: Path) -> None:
    assert keyfiles.key_fingerprint(tmp_path / "nothing") is None


# -- the askpass helper ---------------------------------------------------------


def _answer(data: bytes) -> tuple[int, bytes, bytes]:
    """Run the helper on a pipe holding ``data``; return (status, output, what is left)."""
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    os.write(in_w, data)
    os.close(in_w)
    try:
        status = askpass.answer(in_r, out_w)
    finally:
        os.close(out_w)
    output = os.read(out_r, 65536)
    rest = os.read(in_r, 65536)
    os.close(in_r)
    os.close(out_r)
    return status, output, rest


def test_askpass_hands_over_exactly_one_line_and_leaves_the_rest() -> None:
    assert _answer(b"first line\nsecond\n") == (0, b"first line\n", b"second\n")


def test_askpass_on_an_empty_pipe_answers_nothing_so_ssh_add_gives_up() -> None:
    assert _answer(b"") == (1, b"", b"")


def test_askpass_refuses_to_read_a_terminal() -> None:
    primary, secondary = os.openpty()
    out_r, out_w = os.pipe()
    try:
        assert askpass.answer(secondary, out_w) == 1
    finally:
        for fd in (primary, secondary, out_r, out_w):
            os.close(fd)


# -- what reaches OpenSSH -------------------------------------------------------


def test_ssh_add_and_ssh_keygen_ask_our_helper_and_never_a_tty(tmp_path: Path) -> None:
    # that the passphrase reaches neither argv nor environment is checked on the real
    # children: tests/integration/test_unlock.py::test_ssh_keygen_and_ssh_add_get_the_...
    key = tmp_path / "id"
    assert passphrases.make_add_command(key) == ("ssh-add", str(key))
    assert passphrases.make_public_command(key) == ("ssh-keygen", "-y", "-f", str(key))
    env = passphrases.askpass_env(tmp_path / "sock")
    assert env["SSH_ASKPASS_REQUIRE"] == "force"
    assert env["SSH_ASKPASS"].endswith("backuppc-agent-askpass")
    assert env["SSH_AUTH_SOCK"] == str(tmp_path / "sock")


def openssh_said(returncode: int, stderr: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.CompletedProcess(("ssh-keygen",), returncode, b"", stderr)


def test_one_ssh_keygen_answer_tells_opened_wrong_passphrase_or_unusable_key() -> None:
    key = Path("/k/a")
    assert passphrases.opened(key, openssh_said(0, b""))  # no passphrase, or the right one
    wrong = b'Load key "/k/a": incorrect passphrase supplied to decrypt private key\n'
    assert not passphrases.opened(key, openssh_said(255, wrong))
    assert not passphrases.opened(key, openssh_said(255, b""))
    unusable = b'junk\nLoad key "/k/a": bad permissions\n'
    with pytest.raises(BackupPCAgentError, match='usable private key: Load key "/k/a": bad perm'):
        passphrases.opened(key, openssh_said(255, unusable))


def test_ssh_add_blaming_the_passphrase_or_silent_is_a_wrong_passphrase_else_its_last_word() -> (
    None
):
    key, sock = Path("/k/a"), Path("/s")
    passphrases.check_added(openssh_said(0, b""), sock, key)
    for said in (b"Bad passphrase, try again for /k/a: \n", b""):
        with pytest.raises(PassphraseError, match="the stored passphrase does not open /k/a"):
            passphrases.check_added(openssh_said(1, said), sock, key)
    with pytest.raises(BackupPCAgentError, match="ssh-add /k/a failed: agent refused operation"):
        passphrases.check_added(openssh_said(1, b"noise\nagent refused operation\n"), sock, key)


def test_keyring_entries_are_named_by_the_normalized_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert passphrases.entry_name(Path("sub/../id")) == str(tmp_path / "id")


# -- the listener -------------------------------------------------------------


class Recorder:
    """A fake unlock: records calls, can be held to simulate a slow keyring."""

    def __init__(self) -> None:
        self.calls: list[Config] = []
        self.release = threading.Event()
        self.release.set()
        self.done = threading.Semaphore(0)
        self.entered = threading.Event()

    def __call__(self, config: Config) -> list[KeyOutcome]:
        self.entered.set()
        self.release.wait(10)
        self.calls.append(config)
        self.done.release()
        return []


def test_each_new_agent_is_unlocked_once(tmp_path: Path) -> None:
    fake = Recorder()
    unlocker = Unlocker(make_config(tmp_path), fake)
    unlocker.on_snapshot(None, snap(100))
    assert fake.done.acquire(timeout=10)
    unlocker.on_snapshot(snap(100), snap(100))
    unlocker.on_snapshot(None, snap(100))
    unlocker.on_snapshot(snap(100), snap(200))
    assert fake.done.acquire(timeout=10)
    unlocker.close()
    assert len(fake.calls) == 2


def test_nothing_is_unlocked_without_a_live_agent_or_with_unlock_none(tmp_path: Path) -> None:
    fake = Recorder()
    Unlocker(make_config(tmp_path), fake).on_snapshot(None, snap(100, up=False))
    Unlocker(make_config(tmp_path), fake).on_snapshot(None, snap(None))
    Unlocker(make_config(tmp_path, unlock="none", keys=()), fake).on_snapshot(None, snap(1))
    assert not fake.done.acquire(timeout=0.2)
    assert fake.calls == []


def test_a_request_while_an_unlock_runs_is_not_lost(tmp_path: Path) -> None:
    fake = Recorder()
    fake.release.clear()
    unlocker = Unlocker(make_config(tmp_path), fake)
    unlocker.on_snapshot(None, snap(100))
    assert fake.entered.wait(10)
    unlocker.on_snapshot(snap(100), snap(200))
    fake.release.set()
    assert fake.done.acquire(timeout=10)
    assert fake.done.acquire(timeout=10)
    unlocker.close()
    assert len(fake.calls) == 2


def test_turning_keyring_unlock_on_by_reload_unlocks_at_once(tmp_path: Path) -> None:
    fake = Recorder()
    unlocker = Unlocker(make_config(tmp_path, unlock="none", keys=()), fake)
    unlocker.on_reload(make_config(tmp_path))
    assert fake.done.acquire(timeout=10)
    unlocker.on_reload(make_config(tmp_path))
    unlocker.close()
    assert len(fake.calls) == 1


def test_a_new_agent_cuts_the_tang_back_off_short(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(unlock, "RETRY_FIRST_SECONDS", 600.0)  # a back-off no test outwaits
    attempts = threading.Semaphore(0)

    def no_tang(_config: Config) -> list[KeyOutcome]:
        attempts.release()
        return [KeyOutcome("no Tang answers: x", unlock.WAITING_TANG)]

    unlocker = Unlocker(make_config(tmp_path), no_tang)
    unlocker.on_snapshot(None, snap(100))
    assert attempts.acquire(timeout=10)
    assert unlocker.status()[0] == unlock.WAITING_TANG
    unlocker.on_snapshot(snap(100), snap(200))  # an agent restarted: try at once
    assert attempts.acquire(timeout=10)
    unlocker.close()
