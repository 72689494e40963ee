"""The hook-run store: aggregates of every hook run, in SQLite in the state directory.

Hooks are short-lived concurrent writers, the exporter a long-running reader: WAL
mode with a bounded busy timeout lets writers queue and never blocks readers. Only
aggregates are kept, updated in one transaction per run, so ``summary()`` costs the
same after a day or a year; what one run said goes to BackupPC's XferLOG.
"""

from __future__ import annotations

import bisect
import contextlib
import math
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path

from backuppc_agent import waits
from backuppc_agent.errors import BackupPCAgentError

DB_FILE = "events.sqlite3"
#: 2: version 1's per-run detail table (hook_runs) is dropped; nothing read it.
SCHEMA_VERSION = 2
#: How long a writer waits for another writer's lock before giving up.
BUSY_TIMEOUT_SECONDS = 5.0
#: How often a first opener retries the switch to WAL while another holds the lock.
WAL_RETRY_SECONDS = 0.01
#: Upper bounds (seconds) of the readiness-wait histogram; +Inf is implied.
WAIT_BUCKETS_SECONDS: tuple[float, ...] = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)
#: Every result each hook can record (docs/backuppc.md says what each means), all
#: exported at 0 from the start so increase() sees the first failure of each.
HOOK_RESULTS: dict[str, tuple[str, ...]] = {
    "pre-dump": ("ok", "not-ready", "ssh-failed", "bad-name", "error"),
    "pre-restore": ("ok", "not-ready", "ssh-failed", "bad-name", "error"),
    "pre-archive": ("ok", "not-ready", "bad-name", "error"),  # archives stay local: no ssh
    **dict.fromkeys(
        ("post-dump", "post-restore", "post-archive"), ("ok", "failed", "bad-name", "error")
    ),
    "ping": ("ok", "not-ready", "bad-name", "error"),
}
#: Hooks whose waits feed the histogram: the ones that gate a job on readiness.
GATING_HOOKS = frozenset(hook for hook, results in HOOK_RESULTS.items() if "not-ready" in results)

# Run by whoever opens a store at another version. Every step is idempotent, so hooks
# opening a new or a version-1 store at once all succeed; version 1 keeps its aggregates.
_SCHEMA = f"""
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS run_counts (
    hook TEXT NOT NULL, result TEXT NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (hook, result));
CREATE TABLE IF NOT EXISTS wait_buckets (
    bucket INTEGER PRIMARY KEY, count INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS wait_totals (
    id INTEGER PRIMARY KEY CHECK (id = 1), sum REAL NOT NULL, count INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS last_success (client TEXT PRIMARY KEY, time REAL NOT NULL);
DROP TABLE IF EXISTS hook_runs;
PRAGMA user_version = {SCHEMA_VERSION};
COMMIT;
"""


class EventStoreError(BackupPCAgentError):
    """The hook-run store could not be opened, written or read."""


@dataclass(frozen=True, slots=True)
class HookRecord:
    """One hook run: when, which hook, for which client, how it ended, how long it waited."""

    time: float
    hook: str
    client: str
    result: str
    waited_seconds: float


@dataclass(frozen=True, slots=True)
class HookSummary:
    """Aggregates for the exporter; every count only ever goes up."""

    #: (hook, result) -> number of runs
    runs: dict[tuple[str, str], int]
    #: cumulative counts per upper bound, ascending; the last bound is math.inf
    wait_buckets: tuple[tuple[float, int], ...]
    wait_sum: float
    wait_count: int
    #: client -> epoch seconds of its last run that ended "ok" (not the ping gate's)
    last_success: dict[str, float]


def bucket_index(seconds: float) -> int:
    """Index of the first histogram bucket whose upper bound holds ``seconds``."""
    return bisect.bisect_left(WAIT_BUCKETS_SECONDS, seconds)


class EventStore:
    """The store at ``STATE_DIR/events.sqlite3`` (mode 0600, WAL), open until ``close()``.

    A context manager: a connection left to the garbage collector makes Python 3.13 warn.
    """

    def __init__(self, state_dir: Path) -> None:
        """Open the store, creating it if needed; raise EventStoreError."""
        self.path = state_dir / DB_FILE
        with self._failing("open"):
            self._conn = _open(self.path)

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _failing(self, what: str) -> Iterator[None]:
        """Turn an SQLite error into EventStoreError ("cannot WHAT")."""
        try:
            yield
        except sqlite3.Error as err:
            raise EventStoreError(f"hook store {self.path}: cannot {what}: {err}") from err

    def record(self, rec: HookRecord) -> None:
        """Add one run to the aggregates atomically; raise EventStoreError."""
        with self._failing("record"), self._conn:  # commits, or rolls back on any exception
            self._conn.execute("BEGIN IMMEDIATE")
            _add(self._conn, rec)

    def summary(self) -> HookSummary:
        """Read the aggregates (a few small tables); raise EventStoreError."""
        conn = self._conn
        with self._failing("read"):
            runs = {(h, r): c for h, r, c in conn.execute("SELECT * FROM run_counts")}
            per_bucket = dict(conn.execute("SELECT bucket, count FROM wait_buckets").fetchall())
            totals = conn.execute("SELECT sum, count FROM wait_totals").fetchone() or (0.0, 0)
            last = dict(conn.execute("SELECT client, time FROM last_success").fetchall())
        return HookSummary(runs, _cumulative(per_bucket), float(totals[0]), int(totals[1]), last)

    def close(self) -> None:
        self._conn.close()


def _open(path: Path) -> sqlite3.Connection:
    """Open (creating mode 0600 if needed) in WAL mode with a busy timeout."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        os.close(os.open(path, flags, 0o600))
    except OSError as err:
        raise sqlite3.OperationalError(err.strerror) from err
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
    try:
        _prepare(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _prepare(conn: sqlite3.Connection) -> None:
    """Switch a fresh connection to WAL and create the schema if it is missing."""
    deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
    if not waits.until(lambda: _switched_to_wal(conn), deadline, WAL_RETRY_SECONDS):
        raise sqlite3.OperationalError("database is locked (switching to WAL)")
    conn.execute("PRAGMA synchronous=NORMAL")
    if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
        conn.executescript(_SCHEMA)


def _switched_to_wal(conn: sqlite3.Connection) -> bool:
    """Put a new store in WAL mode; False while a concurrent first opener holds the lock.

    The switch needs the database to itself: when several hooks open a new store at
    once, SQLite fails it at once with "database is locked" (no busy timeout).
    """
    try:
        if conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
            return True
        return bool(conn.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal")
    except sqlite3.OperationalError as err:
        if "locked" not in str(err):
            raise
        return False


def _add(conn: sqlite3.Connection, rec: HookRecord) -> None:
    """Bump the aggregates for one run (inside the caller's transaction)."""
    conn.execute(
        "INSERT INTO run_counts VALUES (?, ?, 1) "
        "ON CONFLICT (hook, result) DO UPDATE SET count = count + 1",
        (rec.hook, rec.result),
    )
    if rec.hook in GATING_HOOKS:
        _observe_wait(conn, rec.waited_seconds)
    # Only hooks given BackupPC's host name ($client) feed last_success: BackupPC runs
    # the ping gate with $host alone, the ClientNameAlias or address, not the host's name.
    if rec.result == "ok" and rec.hook != "ping":
        conn.execute(
            "INSERT INTO last_success VALUES (?, ?) "
            "ON CONFLICT (client) DO UPDATE SET time = max(time, excluded.time)",
            (rec.client, rec.time),
        )


def _observe_wait(conn: sqlite3.Connection, seconds: float) -> None:
    conn.execute(
        "INSERT INTO wait_buckets VALUES (?, 1) "
        "ON CONFLICT (bucket) DO UPDATE SET count = count + 1",
        (bucket_index(seconds),),
    )
    conn.execute(
        "INSERT INTO wait_totals VALUES (1, ?, 1) "
        "ON CONFLICT (id) DO UPDATE SET sum = sum + excluded.sum, count = count + 1",
        (seconds,),
    )


def _cumulative(per_bucket: dict[int, int]) -> tuple[tuple[float, int], ...]:
    bounds = [float(bound) for bound in (*WAIT_BUCKETS_SECONDS, math.inf)]
    totals = accumulate(per_bucket.get(index, 0) for index in range(len(bounds)))
    return tuple(zip(bounds, totals, strict=True))
