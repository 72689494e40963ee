"""The hook-run store: aggregates, concurrency from several processes, file safety."""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import sqlite3
import stat
import time
from pathlib import Path

import pytest

from backuppc_agent.events import (
    DB_FILE,
    WAIT_BUCKETS_SECONDS,
    EventStore,
    EventStoreError,
    HookRecord,
    bucket_index,
)


def _rec(
    hook: str = "pre-dump",
    client: str = "a",
    result: str = "ok",
    waited: float = 0.0,
    when: float | None = None,
) -> HookRecord:
    return HookRecord(time.time() if when is None else when, hook, client, result, waited)


def test_a_fresh_store_summarises_to_zero_with_an_inf_bucket(tmp_path: Path) -> None:
    with EventStore(tmp_path) as store:
        summary = store.summary()
    assert summary.runs == {}
    assert summary.wait_buckets[-1] == (math.inf, 0)
    assert [bound for bound, _ in summary.wait_buckets[:-1]] == list(WAIT_BUCKETS_SECONDS)
    assert (summary.wait_sum, summary.wait_count) == (0.0, 0)


def test_the_database_file_is_private_and_in_wal_mode(tmp_path: Path) -> None:
    with EventStore(tmp_path) as store:
        store.record(_rec())
    assert stat.S_IMODE((tmp_path / DB_FILE).stat().st_mode) == 0o600
    # sqlite3.Connection's own context manager commits but does not close.
    with contextlib.closing(sqlite3.connect(tmp_path / DB_FILE)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_counts_buckets_and_last_success_follow_the_records(tmp_path: Path) -> None:
    with EventStore(tmp_path) as store:
        store.record(_rec(waited=0.05, when=100.0))
        store.record(_rec(waited=3.0, result="not-ready", when=200.0))
        store.record(_rec(hook="post-dump", result="failed", when=300.0))
        store.record(_rec(client="b", waited=400.0, when=400.0))
        summary = store.summary()
    assert summary.runs == {
        ("pre-dump", "ok"): 2,
        ("pre-dump", "not-ready"): 1,
        ("post-dump", "failed"): 1,
    }
    buckets = dict(summary.wait_buckets)
    assert buckets[0.1] == 1
    assert buckets[5] == 2
    assert buckets[300] == 2
    assert buckets[math.inf] == 3  # the post hook's wait is not observed
    assert summary.wait_count == 3
    assert summary.wait_sum == pytest.approx(403.05)
    assert summary.last_success == {"a": 100.0, "b": 400.0}


def test_bucket_index_puts_bounds_in_their_own_bucket() -> None:
    assert bucket_index(0.1) == 0
    assert bucket_index(0.10001) == 1
    assert bucket_index(1e9) == len(WAIT_BUCKETS_SECONDS)


#: A store as version 1 left it: a per-run detail table beside the aggregates.
VERSION_1 = """
CREATE TABLE hook_runs (
    id INTEGER PRIMARY KEY, time REAL NOT NULL, hook TEXT NOT NULL, client TEXT NOT NULL,
    result TEXT NOT NULL, waited_seconds REAL NOT NULL, detail TEXT NOT NULL);
CREATE INDEX hook_runs_time ON hook_runs(time);
CREATE TABLE run_counts (
    hook TEXT NOT NULL, result TEXT NOT NULL, count INTEGER NOT NULL, PRIMARY KEY (hook, result));
CREATE TABLE wait_buckets (bucket INTEGER PRIMARY KEY, count INTEGER NOT NULL);
CREATE TABLE wait_totals (
    id INTEGER PRIMARY KEY CHECK (id = 1), sum REAL NOT NULL, count INTEGER NOT NULL);
CREATE TABLE last_success (client TEXT PRIMARY KEY, time REAL NOT NULL);
INSERT INTO hook_runs VALUES (1, 100.0, 'pre-dump', 'a', 'ok', 0.3, 'opened');
INSERT INTO run_counts VALUES ('pre-dump', 'ok', 41);
INSERT INTO wait_buckets VALUES (1, 41);
INSERT INTO wait_totals VALUES (1, 12.3, 41);
INSERT INTO last_success VALUES ('a', 100.0);
PRAGMA journal_mode=WAL;
PRAGMA user_version = 1;
"""


def test_a_version_1_store_keeps_its_aggregates_and_loses_its_detail_table(
    tmp_path: Path,
) -> None:
    with contextlib.closing(sqlite3.connect(tmp_path / DB_FILE)) as conn:
        conn.executescript(VERSION_1)
    with EventStore(tmp_path) as store:
        store.record(_rec(waited=0.2, when=200.0))
        summary = store.summary()
    assert summary.runs == {("pre-dump", "ok"): 42}
    assert dict(summary.wait_buckets)[0.5] == 42
    assert (summary.wait_count, summary.wait_sum) == (42, pytest.approx(12.5))
    assert summary.last_success == {"a": 200.0}
    with contextlib.closing(sqlite3.connect(tmp_path / DB_FILE)) as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    assert "hook_runs" not in tables


def _writer(state_dir: str, worker: int, count: int) -> None:
    with EventStore(Path(state_dir)) as store:
        for _ in range(count):
            store.record(HookRecord(time.time(), "pre-dump", f"c{worker}", "ok", 0.01))


def test_concurrent_writers_in_several_processes_lose_no_record(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_writer, args=(str(tmp_path), n, 50)) for n in range(6)]
    for proc in workers:
        proc.start()
    for proc in workers:
        proc.join(60)
        assert proc.exitcode == 0
    with EventStore(tmp_path) as store:
        summary = store.summary()
    assert summary.runs[("pre-dump", "ok")] == 300
    assert summary.wait_count == 300
    assert summary.wait_sum == pytest.approx(3.0)
    assert set(summary.last_success) == {f"c{n}" for n in range(6)}


def test_an_unwritable_store_raises_one_error_that_names_the_store(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir"
    with pytest.raises(EventStoreError, match="cannot open") as info, EventStore(missing) as store:
        store.record(_rec())
    assert "no-such-dir" in str(info.value)


def test_a_symlinked_database_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").write_text("")
    (tmp_path / DB_FILE).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(EventStoreError), EventStore(tmp_path) as store:
        store.record(_rec())


def test_a_ping_gate_run_is_counted_but_is_no_hosts_last_success(tmp_path: Path) -> None:
    """PingCmd gets $host (an alias or address), never BackupPC's host name."""
    with EventStore(tmp_path) as store:
        store.record(_rec(hook="ping", client="192.0.2.7", when=100.0))
        store.record(_rec(hook="pre-dump", client="web1", when=200.0))
        summary = store.summary()
    assert summary.runs == {("ping", "ok"): 1, ("pre-dump", "ok"): 1}
    assert summary.last_success == {"web1": 200.0}


def _open_fds_on(path: Path) -> list[str]:
    """This process's file descriptors open on ``path`` (from /proc/self/fd)."""
    found = []
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):
            if os.readlink(fd) == str(path):
                found.append(fd.name)
    return found


def test_a_store_that_fails_to_open_leaves_no_connection_open(tmp_path: Path) -> None:
    """SQLite opens the file, then the first PRAGMA finds it is no database: close it.

    The error's traceback still references the opener's frame; only an explicit
    close frees the file (Python 3.13 also warns of connections left to the GC).
    """
    (tmp_path / DB_FILE).write_bytes(b"not a database, " * 64)
    with pytest.raises(EventStoreError, match="cannot open") as caught:
        EventStore(tmp_path).record(_rec())
    assert caught.value.__cause__ is not None
    assert _open_fds_on(tmp_path / DB_FILE) == []


def test_leaving_the_with_block_closes_the_store(tmp_path: Path) -> None:
    with EventStore(tmp_path) as store:
        store.record(_rec())
        assert _open_fds_on(tmp_path / DB_FILE) != []
    assert _open_fds_on(tmp_path / DB_FILE) == []
