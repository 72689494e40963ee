"""config.pl lines, server messages and the on-ready notifier, without a BackupPC."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest

from backuppc_agent import config as config_mod
from backuppc_agent.backuppc import notify, serversock, snippets
from backuppc_agent.config import Config
from backuppc_agent.errors import UsageError
from backuppc_agent.state import Snapshot, State

PROGRAM = ["/opt/bpa/bin/backuppc-agent"]


def make_config(**hooks: object) -> Config:
    return config_mod.from_mapping({"hooks": dict(hooks)}, "t.toml", Path("/home/bk"))


def test_every_printed_command_carries_the_same_config_path() -> None:
    text = snippets.render(make_config(), PROGRAM, "/etc/bpa/c.toml", "root", "ping")
    commands = re.findall(r"'(/opt/bpa/bin/backuppc-agent[^']*)'", text)
    assert len(commands) == 8  # ping, six user commands, the ssh for rsync
    assert all(c.startswith(f"{PROGRAM[0]} --config /etc/bpa/c.toml ") for c in commands)
    assert "$Conf{UserCmdCheckStatus} = 1;" in text
    job = "--client $client --host root@$host --xfer-method $XferMethod"
    assert f"hook pre-dump {job}'" in text
    assert f"hook post-dump {job} --xfer-ok $xferOK'" in text
    assert f"hook pre-restore {job}'" in text


def test_rsync_ssh_args_are_exactly_dash_e_and_one_string() -> None:
    text = snippets.render(make_config(), PROGRAM, None, "backup", "hooks")
    line = next(x for x in text.splitlines() if x.startswith("$Conf{RsyncSshArgs}"))
    assert line == (
        "$Conf{RsyncSshArgs} = ['-e', '/opt/bpa/bin/backuppc-agent master ssh $client -l backup'];"
    )
    assert "PingCmd" not in text
    assert "--config" not in text


def test_words_with_whitespace_or_a_bad_login_are_refused() -> None:
    with pytest.raises(UsageError, match="whitespace"):
        snippets.render(make_config(), ["/opt/my tools/backuppc-agent"], None, "root", "hooks")
    with pytest.raises(UsageError):
        snippets.render(make_config(), PROGRAM, None, "root@x", "hooks")


def _snap(state: State) -> Snapshot:
    return Snapshot(
        state=state,
        reason="1 key loaded",
        socket="/s",
        agent_pid=1,
        identities=1,
        fingerprints=(),
        since=0.0,
        supervisor_pid=2,
    )


class FakeSend:
    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.done = threading.Event()

    def __call__(self, config: Config, *words: str) -> str:
        self.calls.append(words)
        if words[0] == "log":
            self.done.set()
        return "ok"


def test_the_notifier_sends_backup_all_once_per_move_into_ready() -> None:
    send = FakeSend()
    notifier = notify.OnReadyNotifier(make_config(), send)
    notifier.on_snapshot(None, _snap(State.WAITING))
    notifier.on_snapshot(_snap(State.WAITING), _snap(State.READY))
    assert send.done.wait(5)
    notifier.close()
    notifier.on_snapshot(_snap(State.READY), _snap(State.READY))
    notifier.close()
    assert send.calls[0] == ("backup", "all")
    assert send.calls[1][0] == "log"
    assert "SSH keys loaded" in send.calls[1][1]
    assert len(send.calls) == 2


def test_on_ready_none_sends_nothing_and_failures_are_one_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    send = FakeSend()
    quiet = notify.OnReadyNotifier(make_config(on_ready="none"), send)
    quiet.on_snapshot(_snap(State.DOWN), _snap(State.READY))
    quiet.close()
    assert send.calls == []

    def failing(config: Config, *words: str) -> str:
        raise serversock.ServerError("BackupPC_serverMesg backup exited 1: no server")

    loud = notify.OnReadyNotifier(make_config(), failing)
    loud.on_snapshot(None, _snap(State.READY))
    loud.close()
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1
    assert "no server" in errors[0].getMessage()
