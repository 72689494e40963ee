"""``status``: which probe of the agent socket it judges, and whose agent it shows."""

from __future__ import annotations

import os
from pathlib import Path

from backuppc_agent.agent.probe import Probed, ProbeResult
from backuppc_agent.cli.status import probe_listener
from backuppc_agent.unixsock import Failure
from tests.unit.agent_fakes import key, make_config

#: The BackupPC user's uid, as status run by root is told it.
SERVICE_UID = 4242
#: Nothing is read or written under it: the fakes only get its socket path.
CONFIG = make_config(Path("/run/bpa"))


class Listener:
    """A fake ``probe.probe`` for a socket served by ``uid`` (None: nobody listens)."""

    def __init__(self, uid: int | None) -> None:
        self.uid = uid
        self.expected: list[int | None] = []

    def __call__(self, path: Path, timeout: float, expected_uid: int | None) -> ProbeResult:
        self.expected.append(expected_uid)
        if self.uid is None:
            return ProbeResult(Failure.MISSING, detail=f"no agent socket at {path}")
        wanted = os.getuid() if expected_uid is None else expected_uid
        if self.uid != wanted:
            return ProbeResult(Failure.FOREIGN, (), 77, self.uid, f"not uid {wanted}")
        return ProbeResult(Probed.ANSWERED, (key("a"),), 77, self.uid)


def test_the_service_users_agent_is_probed_once_and_shown_as_theirs() -> None:
    listener = Listener(SERVICE_UID)
    result, uid = probe_listener(CONFIG, SERVICE_UID, listener)
    assert (result.answered, uid) == (True, SERVICE_UID)
    assert listener.expected == [SERVICE_UID]


def test_no_agent_is_probed_once_and_shown_as_ours() -> None:
    listener = Listener(None)
    result, uid = probe_listener(CONFIG, SERVICE_UID, listener)
    assert (result.status, uid) == (Failure.MISSING, None)
    assert listener.expected == [SERVICE_UID]


def test_our_own_agent_on_the_socket_is_ours() -> None:
    listener = Listener(os.getuid())
    result, uid = probe_listener(CONFIG, SERVICE_UID, listener)
    assert (result.answered, uid) == (True, None)
    assert listener.expected == [SERVICE_UID, None]


def test_an_agent_of_anyone_else_stays_foreign_to_us() -> None:
    listener = Listener(SERVICE_UID + 1)
    result, uid = probe_listener(CONFIG, SERVICE_UID, listener)
    assert (result.status, uid) == (Failure.FOREIGN, None)
    assert result.detail == f"not uid {os.getuid()}"


def test_without_a_service_user_only_our_own_agent_is_asked_for() -> None:
    for trusted in (None, os.getuid()):
        listener = Listener(os.getuid())
        result, uid = probe_listener(CONFIG, trusted, listener)
        assert (result.answered, uid) == (True, None)
        assert listener.expected == [None]
