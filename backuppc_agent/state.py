"""The state the supervisor publishes for other processes (status, hooks, exporter).

The supervisor writes ``state.json`` atomically (mode 0600) on every change and
holds an exclusive flock on ``supervisor.lock`` for its whole life: a reader
learns whether a supervisor runs without trusting a pid that may be reused.
"""

from __future__ import annotations

import enum
import fcntl
import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from backuppc_agent import paths
from backuppc_agent.errors import UnsafePathError

STATE_FILE = "state.json"
LOCK_FILE = "supervisor.lock"
#: Far above any state.json the supervisor writes (its lists are capped at 100 entries).
STATE_MAX_BYTES = 1 << 20
#: How long a starting supervisor waits for the lock: a reader (``supervisor_running``)
#: holds it shared for microseconds, a supervisor for good.
LOCK_WAIT_SECONDS = 2.0


class State(enum.Enum):
    """Readiness of SSH authentication, as published."""

    DOWN = "down"  # no live agent on the socket
    WAITING = "waiting"  # agent up, but no usable key, a required key missing, or locked
    READY = "ready"  # keys loaded: backups can authenticate


@dataclass(frozen=True, slots=True)
class Snapshot:
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
    #: (fingerprint, Unix time, "certificate" | "lifetime"), soonest first (at most 100)
    expiries: tuple[tuple[str, float, str], ...] = ()
    #: when authentication stops working as far as expiries tell (see agent/certs.py)
    expires: float | None = None
    #: (fingerprint, why) for each key that counts but cannot be used: a sign check's
    #: label (refused, touch, timeout, garbage, error) or "expired" / "not-yet-valid"
    unusable: tuple[tuple[str, str], ...] = ()
    #: "" or why unattended unlock waits: "tang-unreachable", "tang-refused"
    unlock_waiting: str = ""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Snapshot:
        """Build a snapshot from what ``publish`` wrote; raise ValueError/KeyError/TypeError."""
        values = {name: data[name] for name in (f.name for f in fields(cls)) if name in data}
        values["state"] = State(data["state"])
        values["fingerprints"] = tuple(str(item) for item in data["fingerprints"])
        values["expiries"] = tuple(
            (str(fp), float(when), str(source)) for fp, when, source in data.get("expiries", ())
        )
        values["unusable"] = tuple((str(fp), str(why)) for fp, why in data.get("unusable", ()))
        return cls(**values)


def publish(state_dir: Path, snapshot: Snapshot) -> None:
    """Atomically replace the state file; raise UnsafePathError if it cannot be written."""
    values = asdict(snapshot) | {"state": snapshot.state.value}  # tuples become lists
    data = json.dumps(values, sort_keys=True).encode() + b"\n"
    paths.write_private_file(state_dir / STATE_FILE, data)


def read(state_dir: Path) -> Snapshot | None:
    """Return the last published snapshot, or None if there is none or it is unreadable."""
    try:
        raw = paths.read_bounded(state_dir / STATE_FILE, STATE_MAX_BYTES)
        return None if raw is None else Snapshot.from_json(json.loads(raw))
    except (UnsafePathError, ValueError, KeyError, TypeError):
        return None


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
