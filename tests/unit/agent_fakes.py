"""Fakes for the agent seams: what listens on the agent socket, probed and started in memory.

``FakeSocket.probe`` stands in for ``probe.probe`` and ``FakeSocket.start`` for
``process.start_agent``: the supervisor and the keeper run their real logic
against them in milliseconds, with no ssh-agent and no subprocess.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from backuppc_agent.agent.probe import Probe, Probed, ProbeResult
from backuppc_agent.agent.protocol import Identity
from backuppc_agent.agent.signing import SignCheck, SignChecks, Signed
from backuppc_agent.config import Config, from_mapping
from backuppc_agent.errors import AgentError
from backuppc_agent.unixsock import Failure


@pytest.fixture(name="root")
def short_root() -> Iterator[Path]:
    """A fresh directory under /tmp, short enough for socket paths (<= 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="bpa-u-"))
    try:
        yield path
    finally:
        shutil.rmtree(path)


#: Above Linux's largest pid_max: no real process has these pids.
FIRST_FAKE_PID = 5_000_000


@dataclass
class FakeAgent:
    """An ssh-agent handle whose life the test decides."""

    socket: FakeSocket
    pid: int
    adopted: bool = False
    status: int | None = None
    keys: tuple[Identity, ...] = ()
    stopped: bool = False

    def exit_status(self) -> int | None:
        return self.status

    def stop(self) -> None:
        self.stopped = True
        if self.socket.listener is self:
            self.socket.listener = None

    def dies(self, status: int = 2, stale: bool = False) -> None:
        """Exit; ``stale`` leaves a socket nobody listens on (SIGKILL) instead of none."""
        self.status = status
        self.socket.stale = stale
        if self.socket.listener is self:
            self.socket.listener = None


@dataclass
class FakeSocket:
    """The agent socket as the probe sees it, and the starter that puts agents on it."""

    listener: FakeAgent | None = None
    stale: bool = False
    #: what a live listener that is not our agent answers with, if anything
    hostile: Probed | Failure | None = None
    starts: list[tuple[tuple[str, ...], Probe]] = field(default_factory=list)
    failing_starts: int = 0
    next_pid: int = FIRST_FAKE_PID
    #: how long each probe of a live agent reports it took
    probe_seconds: float = 0.001
    #: fingerprints of keys the agent lists but refuses to sign with (ssh-add -c, FIDO)
    refusing: set[str] = field(default_factory=set)

    def probe(self, path: Path, timeout: float) -> ProbeResult:
        if self.hostile is not None:
            return ProbeResult(self.hostile, peer_pid=1, peer_uid=12345, detail="hostile listener")
        if self.listener is None and self.stale:
            return ProbeResult(Failure.STALE, detail=f"nothing listens on {path} (stale)")
        if self.listener is None:
            return ProbeResult(Failure.MISSING, detail=f"no agent socket at {path}")
        agent = self.listener
        return ProbeResult(
            Probed.ANSWERED, agent.keys, agent.pid, os.getuid(), seconds=self.probe_seconds
        )

    def sign(
        self, path: Path, keys: Sequence[Identity], timeout: float, expected_uid: int | None = None
    ) -> SignChecks:
        """Stands in for ``signing.sign_keys``: every key signs unless it is in ``refusing``."""
        return {
            k.fingerprint: SignCheck(
                Signed.REFUSED if k.fingerprint in self.refusing else Signed.OK
            )
            for k in keys
        }

    def start(
        self, argv: tuple[str, ...], socket_path: Path, probe_timeout: float, probe_fn: Probe
    ) -> FakeAgent:
        self.starts.append((argv, probe_fn))
        if self.failing_starts > 0:
            self.failing_starts -= 1
            raise AgentError("ssh-agent exited at start with status 1")
        return self.serve()

    def serve(self, keys: tuple[Identity, ...] = ()) -> FakeAgent:
        """A new agent listening on the socket (started by us or by someone else)."""
        self.next_pid += 1
        self.listener = FakeAgent(self, self.next_pid, keys=keys)
        self.stale = False
        return self.listener


def key(name: str) -> Identity:
    """An identity whose blob is a well-formed ed25519 key blob of a made-up key."""
    blob = b"\0\0\0\x0bssh-ed25519\0\0\0\x20" + name.encode().ljust(32, b"\0")
    return Identity(blob, name)


def make_config(root: Path, **agent: object) -> Config:
    """A config whose agent socket, env file and state dir live under ``root``."""
    section = {"socket": str(root / "agent.sock"), "env_file": str(root / "agent.env"), **agent}
    data = {"agent": section, "state": {"dir": str(root / "state")}, "metrics": {"listen": ""}}
    return from_mapping(data, str(root / "config.toml"), home=root)


def bind_socket(path: Path) -> None:
    """Leave a socket file at ``path`` (bound, never listening): what the keeper finds there."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.close()
