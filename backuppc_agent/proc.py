"""The one module that runs the argv tuples builders elsewhere return: explicit env, timeouts."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from backuppc_agent import paths, waits
from backuppc_agent.errors import BackupPCAgentError

STOP_GRACE_SECONDS = 3.0
#: How often stop_pid looks whether a process it signalled is gone.
STOP_POLL_SECONDS = 0.02
#: What a kill session may print (its script prints a line or two).
OUTPUT_LIMIT_BYTES = 1 << 20
#: Far above any /proc/PID/stat or comm.
PROC_FILE_MAX_BYTES = 64 * 1024
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class CommandError(BackupPCAgentError):
    """A command could not be run, timed out, or failed."""


def base_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A minimal environment for children: PATH, HOME, LANG, plus ``extra``."""
    env = {"PATH": os.environ.get("PATH", SAFE_PATH), "LANG": "C.UTF-8"}
    if "HOME" in os.environ:
        env["HOME"] = os.environ["HOME"]
    env.update(extra or {})
    return env


def run(
    argv: Sequence[str],
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    input_data: bytes | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` within ``timeout``, capturing output; a non-zero exit is returned.

    Raises CommandError if it cannot start or does not finish in time (then its
    whole process group is killed, so no grandchild keeps a pipe open).
    """
    proc = _start(
        argv,
        env,
        stdin=subprocess.PIPE if input_data is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        start_new_session=True,
    )
    with _killed_after(proc, argv[0], timeout):
        out, errout = proc.communicate(input_data, timeout=timeout)
    return subprocess.CompletedProcess(tuple(argv), proc.returncode, out, errout)


@contextlib.contextmanager
def _killed_after(proc: subprocess.Popen[bytes], name: str, timeout: float) -> Iterator[None]:
    """On TimeoutExpired, kill the child's process group, reap it, raise CommandError."""
    try:
        yield
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise CommandError(f"{name} did not finish within {timeout:g} s") from None


def spawn(argv: Sequence[str]) -> subprocess.Popen[bytes]:
    """Start a long-running child in its own session, on our stderr only; raise CommandError."""
    return _start(
        argv, None, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True
    )


def run_with_files(argv: Sequence[str], timeout: float, env: Mapping[str, str] | None) -> int:
    """Run ``argv`` with stdio on /dev/null, never pipes; return its status.

    For ssh masters: a master keeps whatever stdio it was handed, so a pipe to us
    could stay open long after the command ended. Raises CommandError if it cannot
    start or does not finish within ``timeout`` (its process group is killed first).
    """
    return _run_on_fds(argv, timeout, env, subprocess.DEVNULL, subprocess.DEVNULL)


def run_in_memory(
    argv: Sequence[str],
    timeout: float,
    env: Mapping[str, str] | None,
    input_data: bytes,
) -> tuple[int, bytes]:
    """Run ``argv`` on ``input_data``; return its status and (the start of) its output.

    Like run_with_files, stdio is never a pipe; and never the disk: a full or read-only
    state directory cannot stop a kill session. Raises CommandError.
    """
    try:
        with _memory_file("stdin", input_data) as source, _memory_file("output") as sink:
            code = _run_on_fds(argv, timeout, env, source, sink)
            return code, os.pread(sink, OUTPUT_LIMIT_BYTES, 0)
    except OSError as err:
        raise CommandError(f"cannot run {argv[0]}: {err.strerror}") from err


@contextlib.contextmanager
def _memory_file(name: str, data: bytes = b"") -> Iterator[int]:
    """An anonymous file (memfd) holding ``data``, positioned at its start; closed after."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    try:
        paths.write_all(fd, data)
        os.lseek(fd, 0, os.SEEK_SET)
        yield fd
    finally:
        os.close(fd)


def _run_on_fds(
    argv: Sequence[str], timeout: float, env: Mapping[str, str] | None, stdin: int, output: int
) -> int:
    """Start ``argv`` in its own session on these descriptors (or DEVNULL) and wait for it."""
    proc = _start(argv, env, stdin=stdin, stdout=output, stderr=output, start_new_session=True)
    with _killed_after(proc, argv[0], timeout):
        return wait_child(proc, timeout)


def wait_child(proc: subprocess.Popen[bytes], timeout: float) -> int:
    """Wait up to ``timeout`` for a child to exit; return its status.

    Woken by the child's pidfd rather than Popen.wait's polling, whose sleeps
    (time.sleep: an absolute CLOCK_MONOTONIC deadline) libfaketime breaks in the
    clock-jump tests. Raises subprocess.TimeoutExpired.
    """
    try:
        pidfd = os.pidfd_open(proc.pid)
    except OSError:  # a kernel before 5.3
        return proc.wait(timeout=timeout)
    try:
        ready, _, _ = select.select([pidfd], [], [], max(timeout, 0.0))
    finally:
        os.close(pidfd)
    if not ready:
        raise subprocess.TimeoutExpired(proc.args, timeout)
    return proc.wait()


def spawn_relay(
    argv: Sequence[str], env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start a child on our stdin and stdout, its stderr a pipe to us; raise CommandError."""
    return _start(argv, env, stderr=subprocess.PIPE)


def _start(
    argv: Sequence[str], env: Mapping[str, str] | None, **popen: Any
) -> subprocess.Popen[bytes]:
    """Popen ``argv`` with ``env`` (default: base_env()); raise CommandError if it cannot start."""
    try:
        return subprocess.Popen(
            tuple(argv), env=dict(env) if env is not None else base_env(), **popen
        )
    except OSError as err:
        raise CommandError(f"cannot run {argv[0]}: {err.strerror}") from err


def stop_child(proc: subprocess.Popen[bytes], grace: float = STOP_GRACE_SECONDS) -> int:
    """``stop_pid`` for a child (unreaped, its pid cannot be reused); return its exit status."""
    if proc.poll() is None:
        stop_pid(proc.pid, grace)
    return proc.wait()


def stop_pid(pid: int, grace: float = STOP_GRACE_SECONDS) -> bool:
    """TERM a process, then KILL it after ``grace``; True once it is gone (or a zombie)."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    if waits.until(lambda: not pid_alive(pid), time.monotonic() + grace, STOP_POLL_SECONDS):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return True


def _stat_fields(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (state first); [] if it is gone."""
    return paths.read_or_empty(f"/proc/{pid}/stat", PROC_FILE_MAX_BYTES).rpartition(")")[2].split()


def pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    fields = _stat_fields(pid)
    return bool(fields) and fields[0] != "Z"


def parent_pid(pid: int) -> int | None:
    """The parent of ``pid`` from /proc/PID/stat, or None if it is gone or unreadable."""
    fields = _stat_fields(pid)
    return int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else None


def process_name(pid: int) -> str | None:
    """Return /proc/PID/comm, or None if the process is gone."""
    return paths.read_or_empty(f"/proc/{pid}/comm", PROC_FILE_MAX_BYTES).strip() or None


def run_interactive(argv: Sequence[str], env: Mapping[str, str]) -> int:
    """Run a command on the caller's terminal, without a timeout: a person is typing.

    Returns the exit status; raises CommandError if it cannot start.
    """
    try:
        return subprocess.call(tuple(argv), env=dict(env))
    except OSError as err:
        raise CommandError(f"cannot run {argv[0]}: {err.strerror}") from err
