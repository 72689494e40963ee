"""The long-running supervisor: owns the ssh-agent, polls it, publishes readiness.

Signal handlers only record the signal and wake the loop through the wakeup
fd; the loop acts. Every wait has a deadline (the poll interval).
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import select
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from backuppc_agent import paths, state
from backuppc_agent.agent import envfile, readiness
from backuppc_agent.agent.probe import ProbeResult, ProbeStatus, probe
from backuppc_agent.agent.process import (
    AdoptedAgent,
    AgentHandle,
    make_agent_command,
    start_agent,
)
from backuppc_agent.config import Config
from backuppc_agent.errors import AgentError, BackupPCAgentError, ConfigError, UnsafePathError
from backuppc_agent.state import Snapshot, State

logger = logging.getLogger(__name__)

BACKOFF_FIRST_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0
STABLE_SECONDS = 60.0
PUBLISH_ERROR_REPEAT_SECONDS = 60.0
_HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)


class Listener(Protocol):
    """Something that follows the supervisor: the on-ready notifier, the exporter."""

    def on_snapshot(self, old: Snapshot | None, new: Snapshot) -> None:
        """Called from the loop whenever the published snapshot changes."""

    def on_reload(self, config: Config) -> None:
        """Called after SIGHUP loaded a valid new configuration."""

    def close(self) -> None:
        """Called once when the supervisor stops."""


class Phase(enum.Enum):
    """The supervisor's own life cycle (readiness is the separate ``State``)."""

    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


_PHASE_MOVES = {
    Phase.STARTING: {Phase.RUNNING, Phase.STOPPING},
    Phase.RUNNING: {Phase.STOPPING},
    Phase.STOPPING: {Phase.STOPPED},
    Phase.STOPPED: set(),
}


@dataclass
class _Restart:
    """Backoff bookkeeping for agent restarts."""

    count: int = 0
    failures: int = 0
    due: float | None = None
    started: float = 0.0


class Supervisor:
    """Run, watch and restart one ssh-agent; publish its readiness."""

    def __init__(
        self,
        config: Config,
        config_path: str | None = None,
        listeners: Sequence[Listener] = (),
        probe_fn: Callable[[Path, float], ProbeResult] = probe,
        loader: Callable[[str | None], Config] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._config_path = config_path
        self._listeners = list(listeners)
        self._probe = probe_fn
        self._loader = loader
        self._clock = clock
        self._agent: AgentHandle | None = None
        self._restart = _Restart()
        self._phase = Phase.STARTING
        self._signals: list[int] = []
        self._wakeup_r = -1
        self._snapshot: Snapshot | None = None
        self._publish_error_at = -PUBLISH_ERROR_REPEAT_SECONDS
        self._lock = state.SupervisorLock(config.state.dir)

    @property
    def snapshot(self) -> Snapshot | None:
        """The last published snapshot."""
        return self._snapshot

    # -- life cycle -------------------------------------------------------

    def run(self) -> int:
        """Start or adopt the agent, supervise it until SIGTERM; return the exit code."""
        paths.ensure_private_dir(self.config.state.dir, "state")
        self._lock.acquire()
        try:
            self._install_signals()
            self._attach_agent()
            self._move(Phase.RUNNING)
            self._loop()
        finally:
            self._shutdown()
        return 0

    def _move(self, phase: Phase) -> None:
        if phase not in _PHASE_MOVES[self._phase]:
            raise AgentError(f"supervisor cannot go from {self._phase.value} to {phase.value}")
        logger.debug("supervisor %s -> %s", self._phase.value, phase.value)
        self._phase = phase

    def _install_signals(self) -> None:
        read_fd, write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._wakeup_r = read_fd
        signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        for signum in _HANDLED:
            signal.signal(signum, self._record_signal)

    def _record_signal(self, signum: int, _frame: object) -> None:
        self._signals.append(signum)

    def _loop(self) -> None:
        while True:
            self._handle_signals()
            if self._phase is Phase.STOPPING:
                return
            self._supervise_agent()
            self._refresh()
            self._sleep(self.config.agent.poll_seconds)

    def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(InterruptedError):
            ready, _, _ = select.select([self._wakeup_r], [], [], seconds)
            if ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wakeup_r, 512)

    def _handle_signals(self) -> None:
        pending, self._signals = self._signals, []
        for signum in pending:
            if signum in (signal.SIGTERM, signal.SIGINT):
                logger.info("received %s: stopping", signal.Signals(signum).name)
                self._move(Phase.STOPPING)
                return
            if signum == signal.SIGHUP:
                self._reload()

    # -- the agent ----------------------------------------------------------

    def _attach_agent(self) -> None:
        """Adopt a live agent on the socket or start one; raise if the path is unsafe."""
        sock = self.config.agent.socket
        paths.ensure_private_dir(sock.parent, "agent socket")
        if paths.check_socket_path(sock) is paths.SocketPath.SOCKET:
            result = self._probe(sock, self.config.agent.probe_timeout_seconds)
            if result.answered and result.peer_pid:
                self._adopt(result)
                return
            self._clear_socket(result)
        self._start()

    def _adopt(self, result: ProbeResult) -> None:
        assert result.peer_pid is not None
        self._agent = AdoptedAgent(result.peer_pid)
        self._inherit_history(result.peer_pid)
        self._restart.started = self._clock()
        count = len(result.identities)
        logger.info(
            "adopted running ssh-agent pid %d on %s (%d keys loaded)",
            result.peer_pid,
            self.config.agent.socket,
            count,
        )
        self._write_env()

    def _inherit_history(self, agent_pid: int) -> None:
        """Keep 'since' and the restart count of the supervisor that ran this agent."""
        if self._snapshot is not None:
            return
        previous = state.read(self.config.state.dir)
        if previous is not None and previous.agent_pid == agent_pid:
            self._snapshot = previous
            self._restart.count = previous.agent_restarts

    def _clear_socket(self, result: ProbeResult) -> None:
        """Remove a stale socket; refuse a live listener that is not our agent."""
        sock = self.config.agent.socket
        if result.status is ProbeStatus.REFUSED:
            logger.warning("removing stale agent socket %s (nothing listens on it)", sock)
            paths.remove_socket(sock)
            return
        if result.status is ProbeStatus.MISSING:
            return
        if result.status is ProbeStatus.FOREIGN:
            raise UnsafePathError(f"agent socket {sock}: {result.detail}")
        raise AgentError(
            f"agent socket {sock} is in use by something that is not a working ssh-agent "
            f"({result.detail}); stop it or set agent.socket elsewhere"
        )

    def _start(self) -> None:
        agent_cfg = self.config.agent
        argv = make_agent_command(agent_cfg.ssh_agent, agent_cfg.socket, agent_cfg.lifetime_seconds)
        self._agent = start_agent(argv, agent_cfg.socket, agent_cfg.probe_timeout_seconds)
        self._restart.started = self._clock()
        self._write_env()

    def _write_env(self) -> None:
        pid = self._agent.pid if self._agent else None
        text = envfile.render("sh", self.config.agent.socket, pid)
        env_path = self.config.agent.env_file
        try:
            paths.check_dir(env_path.parent, "env file")
            paths.write_private_file(env_path, text.encode())
        except UnsafePathError as err:
            logger.error("cannot write env file: %s", err)

    def _supervise_agent(self) -> None:
        if self._agent is not None:
            status = self._agent.exit_status()
            if status is not None:
                self._agent_lost(f"exited with status {status}")
        due = self._restart.due
        if self._agent is None and due is not None and self._clock() >= due:
            self._try_restart()

    def _agent_lost(self, how: str) -> None:
        assert self._agent is not None
        pid = self._agent.pid
        self._agent.stop()
        self._agent = None
        delay = self._next_backoff()
        self._restart.due = self._clock() + delay
        logger.warning(
            "ssh-agent pid %d %s: its loaded keys are lost; restarting it in %.1f s. "
            "Re-add keys with: SSH_AUTH_SOCK=%s ssh-add",
            pid,
            how,
            delay,
            self.config.agent.socket,
        )

    def _next_backoff(self) -> float:
        if self._clock() - self._restart.started >= STABLE_SECONDS:
            self._restart.failures = 0
        failures = self._restart.failures
        delay = 0.0 if failures == 0 else BACKOFF_FIRST_SECONDS * 2.0 ** (failures - 1)
        self._restart.failures += 1
        return min(delay, BACKOFF_MAX_SECONDS)

    def _try_restart(self) -> None:
        try:
            self._attach_agent()
        except BackupPCAgentError as err:
            delay = self._next_backoff()
            self._restart.due = self._clock() + delay
            logger.error("cannot restart ssh-agent: %s; next try in %.1f s", err, delay)
            return
        self._restart.due = None
        self._restart.count += 1
        logger.info("ssh-agent restarted (restart #%d)", self._restart.count)

    # -- readiness --------------------------------------------------------

    def _refresh(self) -> None:
        sock = self.config.agent.socket
        result = self._probe(sock, self.config.agent.probe_timeout_seconds)
        if self._agent is not None and result.status in (ProbeStatus.REFUSED, ProbeStatus.MISSING):
            self._agent_lost(f"stopped answering on {sock} ({result.detail})")
        if self._agent is not None and result.answered and result.peer_pid != self._agent.pid:
            logger.warning("agent socket now answered by pid %s; adopting it", result.peer_pid)
            self._adopt(result)
        new_state, reason = readiness.evaluate(result, self.config.agent.required_keys)
        self._publish(self._make_snapshot(result, new_state, reason))

    def _make_snapshot(self, result: ProbeResult, new_state: State, reason: str) -> Snapshot:
        old = self._snapshot
        since = old.since if old is not None and old.state is new_state else time.time()
        return Snapshot(
            state=new_state,
            reason=reason,
            socket=str(self.config.agent.socket),
            agent_pid=self._agent.pid if self._agent else None,
            identities=len(result.identities),
            fingerprints=result.fingerprints,
            since=since,
            supervisor_pid=os.getpid() if self._phase is not Phase.STOPPED else None,
            agent_restarts=self._restart.count,
            adopted=bool(self._agent and self._agent.adopted),
            agent_up=result.answered,
            updated=time.time(),
        )

    def _publish(self, new: Snapshot, force: bool = False) -> None:
        old = self._snapshot
        if not force and old is not None and _same(old, new):
            return
        if old is None or old.state is not new.state:
            logger.info(
                "state %s -> %s: %s",
                old.state.value if old else "none",
                new.state.value,
                new.reason,
            )
        self._snapshot = new
        self._write_state(new)
        self._notify(old, new)

    def _write_state(self, snap: Snapshot) -> None:
        try:
            state.publish(self.config.state.dir, snap)
        except UnsafePathError as err:
            if self._clock() - self._publish_error_at >= PUBLISH_ERROR_REPEAT_SECONDS:
                self._publish_error_at = self._clock()
                logger.error("cannot publish state (readers see stale state): %s", err)

    def _notify(self, old: Snapshot | None, new: Snapshot) -> None:
        for listener in self._listeners:
            try:
                listener.on_snapshot(old, new)
            except Exception:
                logger.exception("listener %s failed", type(listener).__name__)

    # -- reload and stop ----------------------------------------------------

    def _reload(self) -> None:
        if self._loader is None:
            return
        try:
            new = self._loader(self._config_path)
        except ConfigError as err:
            logger.error("SIGHUP: keeping the old configuration; %s has errors:", err.source)
            for problem in err.problems:
                logger.error("  %s", problem)
            return
        self._warn_static_changes(new)
        self.config = new
        logger.info("SIGHUP: configuration reloaded from %s", new.source)
        for listener in self._listeners:
            try:
                listener.on_reload(new)
            except Exception:
                logger.exception("listener %s failed on reload", type(listener).__name__)

    def _warn_static_changes(self, new: Config) -> None:
        old = self.config
        for name, before, after in (
            ("agent.socket", old.agent.socket, new.agent.socket),
            ("state.dir", old.state.dir, new.state.dir),
            ("agent.lifetime_seconds", old.agent.lifetime_seconds, new.agent.lifetime_seconds),
            ("agent.ssh_agent", old.agent.ssh_agent, new.agent.ssh_agent),
        ):
            if before != after:
                logger.warning("%s changed: it takes effect when the agent next starts", name)
        if old.agent.socket != new.agent.socket or old.state.dir != new.state.dir:
            logger.warning("restart the supervisor to move the socket or state dir")

    def _shutdown(self) -> None:
        if self._phase is not Phase.STOPPING:
            self._move(Phase.STOPPING)
        if self.config.agent.on_stop == "stop-agent" and self._agent is not None:
            self._stop_agent()
        self._move(Phase.STOPPED)
        if self._snapshot is not None:
            final = self._snapshot._replace(supervisor_pid=None, updated=time.time())
            if self._agent is None:
                final = final._replace(
                    state=State.DOWN,
                    reason="supervisor stopped the agent",
                    agent_pid=None,
                    identities=0,
                    fingerprints=(),
                    agent_up=False,
                )
            self._publish(final, force=True)
        for listener in self._listeners:
            with contextlib.suppress(Exception):
                listener.close()
        self._lock.release()

    def _stop_agent(self) -> None:
        assert self._agent is not None
        logger.info("stopping ssh-agent pid %d (on_stop = stop-agent)", self._agent.pid)
        self._agent.stop()
        self._agent = None
        sock = self.config.agent.socket
        with contextlib.suppress(UnsafePathError):
            if paths.check_socket_path(sock) is paths.SocketPath.SOCKET:
                paths.remove_socket(sock)


def _same(old: Snapshot, new: Snapshot) -> bool:
    return old._replace(updated=0.0) == new._replace(updated=0.0)
