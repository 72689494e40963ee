"""The ssh that rsync_bpc runs (``$Conf{RsyncSshArgs}``): a mux client that aborts cleanly.

The trap (OpenSSH 9.2): a mux client hands its stdio to the master, which keeps it
open until the remote command ends, even if the client is killed. rsync_bpc's stderr
is the pipe BackupPC_dump reads, so after a SIGINT the dump would wait forever and
never run DumpPostUserCmd. So ssh's stderr is a pipe to us, and when our caller goes
or we are signalled we kill the remote job, stop ssh and exit, closing the dump's pipe.
A restore (rsync receiving) rides the restore master, ``ControlMaster no``.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from backuppc_agent import names, proc
from backuppc_agent.config import Config
from backuppc_agent.errors import BadNameError, UsageError
from backuppc_agent.ssh import remote, sshconfig

if TYPE_CHECKING:
    import subprocess

#: ssh(1) options that take an argument (OpenSSH 9.x getopt string).
SSH_OPTIONS_WITH_ARG = frozenset("bceilmopBDEFIJLOPQRSwW")
#: Options that run a local command: refused on the command line, where a $hostIP
#: like "-oProxyCommand=..." (rsync_bpc puts it right after our options) would land.
COMMAND_KEYWORDS = frozenset({"proxycommand", "localcommand", "permitlocalcommand",
                              "knownhostscommand"})  # fmt: skip
POLL_SECONDS = 0.2
DRAIN_SECONDS = 1.0
ABORT_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def split_ssh_args(args: Sequence[str]) -> tuple[list[str], str | None, list[str]]:
    """Split ssh arguments into (options, destination, command), as ssh's getopt does."""
    index = 0
    while index < len(args) and args[index].startswith("-") and args[index] not in ("-", "--"):
        index = _option(args, index)[0]
    options = list(args[:index])
    if index < len(args) and args[index] == "--":
        index += 1
    if index >= len(args):
        return options, None, []
    return options, args[index], list(args[index + 1 :])


def option_values(options: Sequence[str]) -> list[tuple[str, str]]:
    """(letter, value) of each option in ``options`` (split_ssh_args' first part) with a value."""
    pairs, index = [], 0
    while index < len(options):
        index, pair = _option(options, index)
        if pair is not None:
            pairs.append(pair)
    return pairs


def _option(args: Sequence[str], index: int) -> tuple[int, tuple[str, str] | None]:
    """The option word at ``index``: where the next one starts, and (letter, value) if any.

    As getopt: the value is the rest of the word after the first letter taking one,
    else the next word (even "--").
    """
    letters = args[index][1:]
    for position, letter in enumerate(letters):
        if letter in SSH_OPTIONS_WITH_ARG:
            value = letters[position + 1 :]
            if not value and index + 1 < len(args):
                return index + 2, (letter, args[index + 1])
            return index + 1, (letter, value)
    return index + 1, None


def check_options(options: Sequence[str]) -> None:
    """Refuse ``-o`` options that would run a local command; raise BadNameError."""
    for letter, value in option_values(options):
        # ssh reads "Keyword=value" or "Keyword value", the keyword possibly quoted
        words = value.replace("=", " ").replace('"', " ").split()
        if letter == "o" and words and words[0].lower() in COMMAND_KEYWORDS:
            raise BadNameError(
                f"refusing ssh option {names.printable('-o' + value)} before the destination: "
                "an option that runs a command is never taken from the command line "
                "(a $hostIP that starts with '-'?); set it in ~/.ssh/config"
            )


def make_session_command(
    config: Config, client: str, args: Sequence[str], token: str
) -> tuple[str, ...]:
    """argv of the real ssh: our options, the caller's, the destination, the marked command."""
    options, host, command = split_ssh_args(args)
    receiving = "--server" in command and "--sender" not in command  # rsync's, for a restore
    restore = receiving and config.agent.restore_key_set_up()
    if host is None:
        raise UsageError("master ssh: no destination host in the ssh arguments")
    check_options(options)
    marked = remote.mark_command(token, command) if command else ()
    mode = "no" if restore else "auto"
    return sshconfig.client_command(config, client, host, mode, marked, options, restore)


class Relay:
    """Run the real ssh, relay its stderr, and abort cleanly when the caller goes away."""

    def __init__(self, config: Config, client: str, argv: tuple[str, ...], token: str) -> None:
        self.config = config
        self.client = client
        self.argv = argv
        self.token = token
        self.signals: list[int] = []
        self.parent = os.getppid()
        # If BackupPC_dump dies (SIGKILL, the OOM killer), rsync_bpc (our parent) runs on,
        # pulling a backup nobody will finish: our parent's parent changing is the only sign.
        self.grandparent = proc.parent_pid(self.parent)

    def run(self) -> int:
        """Relay until ssh exits (its status) or we must abort (128 + signal, or 255)."""
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        for signum in ABORT_SIGNALS:
            signal.signal(signum, self._record)
        # A handler (not SIG_DFL) so the child's exit wakes select() through the wakeup fd.
        signal.signal(signal.SIGCHLD, lambda _signum, _frame: None)
        child = proc.spawn_relay(self.argv, env=proc.base_env())
        assert child.stderr is not None
        err_fd = child.stderr.fileno()
        watched = [err_fd, wake_r]
        while True:
            if self.signals or self._orphaned():
                return self._abort(child)
            readable, _, _ = select.select(watched, [], [], POLL_SECONDS)
            if wake_r in readable:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 64)
            if err_fd in readable and not _relay_chunk(err_fd):
                watched.remove(err_fd)  # the remote may close stderr and run on
            if child.poll() is not None:
                if err_fd in watched:
                    _drain(err_fd, DRAIN_SECONDS)
                return child.returncode

    def _orphaned(self) -> bool:
        """True once our caller (rsync_bpc) or the caller's caller (the dump) is gone."""
        if os.getppid() != self.parent:
            return True
        return self.grandparent is not None and proc.parent_pid(self.parent) != self.grandparent

    def _record(self, signum: int, _frame: object) -> None:
        self.signals.append(signum)

    def _abort(self, child: subprocess.Popen[bytes]) -> int:
        why = f"signal {self.signals[0]}" if self.signals else "the caller went away"
        _say(f"transfer for {self.client} aborted ({why}): ending the remote job")
        try:
            _say(remote.kill_remote(self.config, self.client, self.token))
        except Exception as err:  # noqa: BLE001  (an abort must always finish)
            _say(f"could not kill the remote job: {err}")
        proc.stop_child(child, grace=1.0)
        return 128 + self.signals[0] if self.signals else remote.SSH_FAILED


def _relay_chunk(fd: int) -> bool:
    """Copy one chunk of ssh's stderr to ours; False at EOF."""
    try:
        data = os.read(fd, 65536)
    except OSError:
        return False
    with contextlib.suppress(OSError):
        os.write(2, data)  # nothing at EOF
    return bool(data)


def _drain(fd: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        readable, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not readable or not _relay_chunk(fd):
            return


def _say(line: str) -> None:
    with contextlib.suppress(OSError):
        sys.stderr.write(f"backuppc-agent: {line}\n")
        sys.stderr.flush()


def run_session(config: Config, client: str, args: Sequence[str]) -> int:
    """Run one ssh session for CLIENT through its master; return ssh's exit status."""
    sshconfig.control_path(config.mux.control_dir, client)  # refuse a bad name before any use
    token = remote.new_token(client)
    argv = make_session_command(config, client, args, token)
    return Relay(config, client, argv, token).run()
