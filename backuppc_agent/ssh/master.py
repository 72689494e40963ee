"""One OpenSSH master connection per client: find it alive, or open it under a per-client lock.

Its stdio is /dev/null and its log (``-E``) CLIENT.log, so BackupPC never hangs on a
pipe the master inherited. A stale socket goes first: ``ssh -M`` over an existing
path silently runs without multiplexing. ``restore``: the restore key's own master.
"""

from __future__ import annotations

import functools
import logging
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from backuppc_agent import names, paths, waits
from backuppc_agent.config import Config
from backuppc_agent.ssh import masterfiles, mux, reach, sshconfig
from backuppc_agent.ssh.masterfiles import MasterError
from backuppc_agent.unixsock import Failure

logger = logging.getLogger(__name__)

#: Concurrent mux checks in list_masters: 8 halved the time for 200 masters here;
#: more threads only fight over the GIL.
LIST_WORKERS = 8
#: ssh -f returns once authenticated; how long the socket may take to answer after that.
SETTLE_SECONDS = 2.0
SETTLE_POLL_SECONDS = 0.02
#: What close_master finds when the master is gone or wedged: its socket is removed.
_DEAD_STATUSES = frozenset({Failure.STALE, Failure.TIMEOUT, Failure.BAD_REPLY})
#: ssh binds PATH + "." + 16 random characters, then renames it to PATH.
_TEMP_SUFFIX_CHARS = 16


@dataclass(frozen=True, slots=True)
class MasterInfo(mux.MuxResult):
    """One control socket in the control directory, as ``master list`` shows it."""

    client: str
    path: Path
    #: epoch seconds the master was opened (the socket's mtime: bind, then rename)
    opened: float | None

    def as_dict(self) -> dict[str, object]:
        """The row as JSON-ready values (``path`` as text, ``status`` by its value)."""
        # MuxResult named, not super(): a slots dataclass is a new class (before 3.14)
        row = mux.MuxResult.as_dict(self)
        return row | {"client": self.client, "path": str(self.path), "opened": self.opened}


def _is_temp_name(name: str) -> bool:
    base, dot, suffix = name.rpartition(".")
    return bool(dot and base) and len(suffix) == _TEMP_SUFFIX_CHARS and suffix.isalnum()


def list_masters(control_dir: Path, timeout: float = mux.CHECK_SECONDS) -> list[MasterInfo]:
    """Every control socket in ``control_dir``, checked concurrently over the mux protocol."""
    sockets = _control_sockets(control_dir)
    if len(sockets) <= 1:
        return [_check_one(entry, timeout) for entry in sockets]
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415  (only with many)

    with ThreadPoolExecutor(max_workers=min(LIST_WORKERS, len(sockets))) as pool:
        return list(pool.map(lambda entry: _check_one(entry, timeout), sockets))


def _control_sockets(control_dir: Path) -> list[tuple[str, Path, float]]:
    """(client, path, mtime) of each socket named like a client, sorted by client."""
    try:
        entries = sorted(os.scandir(control_dir), key=lambda entry: entry.name)
    except OSError:
        return []
    found = []
    for entry in entries:
        if names.problem(entry.name) or _is_temp_name(entry.name):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISSOCK(info.st_mode):
            found.append((entry.name, Path(entry.path), info.st_mtime))
    return found


def _check_one(entry: tuple[str, Path, float], timeout: float) -> MasterInfo:
    client, path, mtime = entry
    result = mux.check(path, timeout)
    opened = mtime if result.alive else None
    return MasterInfo(result.status, result.pid, result.detail, client, path, opened)


def make_master_command(
    config: Config, client: str, host: str, log: Path, restore: bool = False
) -> tuple[str, ...]:
    """argv that opens CLIENT's master to HOST in the background (returns once authenticated).

    ControlMaster=yes and no ``-M``: ssh turns ``-M`` on top of it into "ask", which
    BatchMode answers with "Permission denied" for every session.
    """
    options = ("-E", str(log), "-N", "-f")
    return sshconfig.client_command(config, client, host, "yes", (), options, restore)


def _file(config: Config, client: str, restore: bool, suffix: str) -> Path:
    """``MASTERS_DIR/CLIENT.SUFFIX``, or ``CLIENT.restore.SUFFIX`` for a restore master."""
    return masterfiles.masters_dir(config) / f"{client}{'.restore' if restore else ''}.{suffix}"


def clear_dead_socket(path: Path, status: mux.MuxResult) -> None:
    """Remove a control socket whose master is gone or wedged; refuse anything else."""
    if status.status is Failure.MISSING:
        return
    if status.status is Failure.FOREIGN:
        raise MasterError(f"control socket {path}: {status.detail}")
    paths.check_socket_path(path, "control socket")
    logger.warning("removing dead control socket %s (%s)", path, status.detail)
    path.unlink(missing_ok=True)


def _wait_alive(path: Path, seconds: float) -> mux.MuxResult:
    """Check the master on ``path`` until it answers or ``seconds`` pass; the last check."""
    check = functools.partial(mux.check, path)
    deadline = time.monotonic() + seconds
    return waits.until(check, deadline, SETTLE_POLL_SECONDS, done=lambda result: result.alive)


def open_master(config: Config, client: str, host: str, restore: bool = False) -> mux.MuxResult:
    """Start CLIENT's master to HOST (caller holds the lock); raise MasterError on failure."""
    from backuppc_agent import proc  # noqa: PLC0415  (subprocess only when opening)

    log = _file(config, client, restore, "log")
    masterfiles.rotate_log(log)
    argv = make_master_command(config, client, host, log, restore)
    timeout = config.hooks.connect_timeout_seconds + 5.0
    try:
        code = proc.run_with_files(argv, timeout, env=proc.base_env())
    except proc.CommandError as err:
        raise MasterError(f"cannot open ssh master to {host} for {client}: {err}") from err
    path = sshconfig.master_path(config, client, restore)
    status = _wait_alive(path, SETTLE_SECONDS) if code == 0 else None
    what = "restore master" if restore else "master"
    if status is None or not status.alive:
        why = masterfiles.last_log_line(log) or (status.detail if status else f"ssh exited {code}")
        raise MasterError(f"cannot open ssh {what} to {host} for {client}: {_explained(why, host)}")
    if not restore:
        masterfiles.remember(log.parent, client, "host", host)
    return status


def _explained(why: str, host: str) -> str:
    """``why``, plus sshd's PerSourcePenalties and their fix when the client dropped us."""
    if reach.classify(why) is not reach.Reach.DROPPED:
        return why
    address = host.rpartition("@")[2]
    source = reach.source_address(address, 22)
    return f"{why} ({reach.explain(reach.Reach.DROPPED, address, 22, 0.0, source)})"


def ensure_master(
    config: Config,
    client: str,
    host: str,
    first: mux.MuxResult | None = None,
    restore: bool = False,
) -> tuple[mux.MuxResult, bool]:
    """Find CLIENT's master alive (a session proves it) or open it; (status, opened_now).

    ``first``: the caller's own session check, if any. Raises MasterError or BadNameError.
    """
    path = sshconfig.master_path(config, client, restore)
    names.check(host, "host")
    status = first or mux.check(path, session_timeout=config.hooks.connect_timeout_seconds)
    if status.alive:
        return status, False
    paths.ensure_private_dir(config.mux.control_dir, "control")
    paths.ensure_private_dir(path.parent, "control")
    lock = paths.FileLock(_file(config, client, restore, "lock"), MasterError)
    if not lock.acquire(config.hooks.connect_timeout_seconds + 10.0):
        raise MasterError(f"timed out waiting for {lock.path}")
    try:
        again = mux.check(path)
        if again.alive and again.pid != status.pid:  # another hook opened one meanwhile
            return again, False
        if again.alive:
            retire_master(path, status)
        else:
            clear_dead_socket(path, again)
        return open_master(config, client, host, restore), True
    finally:
        lock.release()


def retire_master(path: Path, status: mux.MuxResult) -> None:
    """Free ``path`` from a master that opens no sessions (``ssh -O stop``: its sessions run on)."""
    logger.warning("retiring ssh master %s: %s", path, status.detail)
    mux.stop_listening(path)
    if path.is_socket():  # it did not answer: take the path from it
        paths.check_socket_path(path, "control socket")
        path.unlink(missing_ok=True)


def close_master(config: Config, client: str, restore: bool = False) -> mux.MuxResult:
    """Ask CLIENT's master to exit (like ``ssh -O exit``); remove its socket if it was dead."""
    path = sshconfig.master_path(config, client, restore)
    status = mux.terminate(path)
    if status.status in _DEAD_STATUSES:
        clear_dead_socket(path, status)
    return status
