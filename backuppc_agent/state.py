"""The state the supervisor publishes for other processes (status, hooks, exporter).

The supervisor writes ``state.json`` atomically (mode 0600) on every change and
holds an exclusive flock on ``supervisor.lock`` for its whole life: a reader
learns whether a supervisor runs without trusting a pid that may be reused.
"""

from __future__ import annotations

import enum
import fcntl
import os
import time
from pathlib import Path

from backuppc_agent import paths
from backuppc_agent.errors import AgentError, UnsafePathError
from backuppc_agent.records import Record

TYPE_CHECKING = False  # see records.py: typing stays off the hot path
if TYPE_CHECKING:
    from typing import Any

STATE_FILE = "state.json"
LOCK_FILE = "supervisor.lock"
LOCK_WAIT_SECONDS = 2.0


class State(enum.Enum):
    """Readiness of SSH authentication, as published."""

    DOWN = "down"  # no live agent on the socket
    WAITING = "waiting"  # agent up, but no usable key, a required key missing, or locked
    READY = "ready"  # keys loaded: backups can authenticate


class Snapshot(Record):
    """Everything published about the agent at one moment."""

    state: State
    reason: str
    socket: str
    agent_pid: int | None
    identities: int
    fingerprints: tuple[str, ...]
    since: float
    supervisor_pid: int | None
    agent_restarts: int = 0
    adopted: bool = False
    agent_up: bool = False
    updated: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-ready dict (state as its string value)."""
        data = self._asdict()
        data["state"] = self.state.value
        data["fingerprints"] = list(self.fingerprints)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Snapshot:
        """Build a snapshot from ``to_json`` output; raise ValueError/KeyError/TypeError if bad."""
        values = {name: data[name] for name in cls._fields if name in data}
        values["state"] = State(data["state"])
        values["fingerprints"] = tuple(str(item) for item in data["fingerprints"])
        return cls(**values)


def publish(state_dir: Path, snapshot: Snapshot) -> None:
    """Atomically replace the state file; raise UnsafePathError if it cannot be written."""
    import json  # noqa: PLC0415  (hooks import this module for State alone)

    data = json.dumps(snapshot.to_json(), sort_keys=True).encode() + b"\n"
    paths.write_private_file(state_dir / STATE_FILE, data)


def read(state_dir: Path) -> Snapshot | None:
    """Return the last published snapshot, or None if there is none or it is unreadable."""
    try:
        raw = paths.read_private_file(state_dir / STATE_FILE)
    except UnsafePathError:
        return None
    if raw is None:
        return None
    try:
        import json  # noqa: PLC0415

        return Snapshot.from_json(json.loads(raw))
    except (ValueError, KeyError, TypeError):
        return None


class SupervisorLock:
    """The exclusive lock a running supervisor holds on its state directory."""

    def __init__(self, state_dir: Path) -> None:
        self._path = state_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self, wait_seconds: float = LOCK_WAIT_SECONDS) -> None:
        """Take the lock; raise AgentError if another supervisor holds it."""
        fd = _open_lock(self._path)
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                # A reader holds LOCK_SH for microseconds; a supervisor holds it for good.
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise AgentError(
                        f"another backuppc-agent supervisor already runs on {self._path.parent}"
                    ) from None
                time.sleep(0.02)
                continue
            self._fd = fd
            return

    def release(self) -> None:
        """Drop the lock (closing the descriptor releases it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _open_lock(path: Path) -> int:
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(path, flags, paths.PRIVATE_FILE_MODE)
    except OSError as err:
        raise UnsafePathError(f"{path}: cannot open lock file: {err.strerror}") from err


def supervisor_running(state_dir: Path) -> bool:
    """True if a supervisor holds the lock on ``state_dir`` right now."""
    try:
        fd = os.open(state_dir / LOCK_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False
