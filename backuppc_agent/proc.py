"""The one module that starts subprocesses: explicit argv, env, cwd and timeouts.

Builders elsewhere return argument tuples; this module runs them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from backuppc_agent.errors import BackupPCAgentError

STOP_GRACE_SECONDS = 3.0
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
    """Run ``argv`` to completion within ``timeout``; capture output.

    Raises CommandError if it cannot start or does not finish in time; a
    non-zero exit is returned, not raised. On timeout the whole process
    group is killed, so no grandchild keeps a pipe open.
    """
    try:
        proc = subprocess.Popen(
            tuple(argv),
            stdin=subprocess.PIPE if input_data is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env) if env is not None else base_env(),
            cwd=cwd,
            start_new_session=True,
        )
    except OSError as err:
        raise CommandError(f"cannot run {argv[0]}: {err.strerror}") from err
    try:
        out, errout = proc.communicate(input_data, timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc.pid)
        proc.communicate()
        raise CommandError(f"{argv[0]} did not finish within {timeout:g} s") from None
    return subprocess.CompletedProcess(tuple(argv), proc.returncode, out, errout)


def spawn(
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    stdout: int | None = subprocess.DEVNULL,
    stderr: int | None = None,
    new_session: bool = True,
) -> subprocess.Popen[bytes]:
    """Start a long-running child with stdin from /dev/null; raise CommandError if it can't."""
    try:
        return subprocess.Popen(
            tuple(argv),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            env=dict(env) if env is not None else base_env(),
            start_new_session=new_session,
            close_fds=True,
        )
    except OSError as err:
        raise CommandError(f"cannot run {argv[0]}: {err.strerror}") from err


def run_with_files(
    argv: Sequence[str],
    timeout: float,
    env: Mapping[str, str] | None = None,
    stdin: Path | None = None,
    output: Path | None = None,
) -> int:
    """Run ``argv`` with stdio from/to files (or /dev/null), never pipes; return its status.

    For ssh masters and mux sessions: a master keeps whatever stdio it was
    handed, so a pipe to us could stay open long after the command ended.
    Raises CommandError if it cannot start or does not finish within ``timeout``
    (its process group is killed first).
    """
    try:
        with _open_or_null(stdin, "rb") as source, _open_or_null(output, "ab") as sink:
            proc = subprocess.Popen(
                tuple(argv),
                stdin=source,
                stdout=sink,
                stderr=sink,
                env=dict(env) if env is not None else base_env(),
                start_new_session=True,
                close_fds=True,
            )
    except OSError as err:
        raise CommandError(f"cannot run {argv[0]}: {err.strerror}") from err
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc.pid)
        proc.wait()
        raise CommandError(f"{argv[0]} did not finish within {timeout:g} s") from None


def _open_or_null(path: Path | None, mode: str) -> IO[bytes]:
    return open(path or os.devnull, mode)


def spawn_relay(
    argv: Sequence[str], env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start a child that shares our stdin and stdout but writes stderr to a pipe to us.

    Raises CommandError if it cannot start.
    """
    try:
        return subprocess.Popen(
            tuple(argv),
            stderr=subprocess.PIPE,
            env=dict(env) if env is not None else base_env(),
            close_fds=True,
        )
    except OSError as err:
        raise CommandError(f"cannot run {argv[0]}: {err.strerror}") from err


def kill_group(pid: int) -> None:
    """SIGKILL a child's whole process group (it was started in its own session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def stop_child(proc: subprocess.Popen[bytes], grace: float = STOP_GRACE_SECONDS) -> int:
    """TERM a child, wait ``grace`` seconds, then KILL; return its exit status."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def stop_pid(pid: int, grace: float = STOP_GRACE_SECONDS) -> bool:
    """TERM a process that is not our child, then KILL after ``grace``; True once gone."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return True


def pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[-1].split()
    except OSError:
        return False
    return bool(fields) and fields[0] != b"Z"


def process_name(pid: int) -> str | None:
    """Return /proc/PID/comm, or None if the process is gone."""
    try:
        with open(f"/proc/{pid}/comm", "rb") as handle:
            return handle.read().decode("utf-8", "replace").strip()
    except OSError:
        return None


def run_interactive(argv: Sequence[str], env: Mapping[str, str]) -> int:
    """Run a command on the caller's terminal (ssh-add prompting for a passphrase).

    Deliberately without a timeout: a person is typing. Returns the exit status.
    Raises CommandError if it cannot start.
    """
    try:
        return subprocess.call(tuple(argv), env=dict(env))
    except OSError as err:
        raise CommandError(f"cannot run {argv[0]}: {err.strerror}") from err
