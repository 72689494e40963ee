"""The long-running supervisor: owns the ssh-agent, polls it, publishes readiness.

Signal handlers only record the signal and wake the loop through the wakeup
fd; the loop acts. Every wait has a deadline (the poll interval).
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import logging
import os
import select
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from backuppc_agent import paths, state
from backuppc_agent.agent.authwatch import AuthView, AuthWatch
from backuppc_agent.agent.keeper import AgentKeeper, StartedHook
from backuppc_agent.agent.probe import ProbeResult, probe
from backuppc_agent.agent.protocol import Identity
from backuppc_agent.config import Config
from backuppc_agent.errors import AgentError, ConfigError, UnsafePathError
from backuppc_agent.state import Snapshot, State

logger = logging.getLogger(__name__)

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
        on_agent_started: StartedHook | None = None,
    ) -> None:
        self.config = config
        self._config_path = config_path
        self._listeners = list(listeners)
        self._probe = probe_fn
        self._loader = loader
        self._clock = clock
        self.keeper = AgentKeeper(config.agent, probe_fn, clock, on_agent_started)
        self.auth = AuthWatch(config.agent, clock=clock)
        self._phase = Phase.STARTING
        self._signals: list[int] = []
        self._wakeup_r = -1
        self._snapshot: Snapshot | None = None
        self._publish_error_at = -PUBLISH_ERROR_REPEAT_SECONDS
        self._unpublished = False
        self._lock = state.SupervisorLock(config.state.dir)
        self._last_identities: tuple[Identity, ...] = ()
        self._last_fingerprints: tuple[str, ...] = ()

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
            adopted = self.keeper.attach()
            if adopted is not None and adopted.peer_pid is not None:
                self._inherit_history(adopted.peer_pid)
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
            probe_seconds = self._refresh()
            # A probe of an agent holding thousands of keys takes a noticeable
            # fraction of a second: never spend more than a third of the time probing.
            self._sleep(max(self.config.agent.poll_seconds, 2 * probe_seconds))

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

    # -- readiness --------------------------------------------------------

    def _inherit_history(self, agent_pid: int) -> None:
        """Keep 'since' and the restart count of the supervisor that ran this agent."""
        previous = state.read(self.config.state.dir)
        if previous is not None and previous.agent_pid == agent_pid:
            self._snapshot = previous
            self.keeper.restarts = previous.agent_restarts
            self.auth.lifetimes.seed(previous.expiries, self.config.agent.lifetime_seconds)

    def _refresh(self) -> float:
        """Probe the agent, let the keeper react, publish; return the probe's duration."""
        agent_cfg = self.config.agent
        result = self._probe(agent_cfg.socket, agent_cfg.probe_timeout_seconds)
        before = self.keeper.pid
        self.keeper.check(result)
        if self.keeper.pid is not None and self.keeper.pid != before:
            # The keeper has just started or adopted an agent: report that one.
            result = self._probe(agent_cfg.socket, agent_cfg.probe_timeout_seconds)
        view = self.auth.assess(result, self._fingerprints(result))
        self._publish(self._make_snapshot(result, view))
        return result.seconds

    def _fingerprints(self, result: ProbeResult) -> tuple[str, ...]:
        """Fingerprints of the probe's identities, reusing the last ones if unchanged."""
        if result.identities != self._last_identities:
            self._last_identities = result.identities
            self._last_fingerprints = result.fingerprints
        return self._last_fingerprints

    def _make_snapshot(self, result: ProbeResult, view: AuthView) -> Snapshot:
        old = self._snapshot
        since = old.since if old is not None and old.state is view.state else time.time()
        return Snapshot(
            state=view.state,
            reason=view.reason,
            socket=str(self.config.agent.socket),
            agent_pid=self.keeper.pid,
            identities=len(result.identities),
            fingerprints=self._fingerprints(result),
            since=since,
            supervisor_pid=os.getpid() if self._phase is not Phase.STOPPED else None,
            agent_restarts=self.keeper.restarts,
            adopted=self.keeper.adopted,
            agent_up=result.answered,
            updated=time.time(),
            expiries=view.expiries,
            expires=view.expires,
            unusable=view.unusable,
        )

    def _publish(self, new: Snapshot, force: bool = False) -> None:
        old = self._snapshot
        if not force and old is not None and _same(old, new):
            if self._unpublished:
                self._write_state(new)
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
        """Write the state file; on failure say so (once a minute) and retry each poll."""
        try:
            state.publish(self.config.state.dir, snap)
        except UnsafePathError as err:
            self._unpublished = True
            if self._clock() - self._publish_error_at >= PUBLISH_ERROR_REPEAT_SECONDS:
                self._publish_error_at = self._clock()
                logger.error("cannot publish state (readers see stale state): %s", err)
            return
        if self._unpublished:
            self._unpublished = False
            logger.info("state published again after earlier write failures")

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
        self.keeper.config = new.agent
        self.auth.config = new.agent
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
        if self.config.agent.on_stop == "stop-agent":
            self.keeper.stop()
        self._move(Phase.STOPPED)
        if self._snapshot is not None:
            final = dataclasses.replace(self._snapshot, supervisor_pid=None, updated=time.time())
            if self.keeper.pid is None:
                final = dataclasses.replace(
                    final,
                    state=State.DOWN,
                    reason="supervisor stopped the agent",
                    agent_pid=None,
                    identities=0,
                    fingerprints=(),
                    agent_up=False,
                    expiries=(),
                    expires=None,
                    unusable=(),
                )
            self._publish(final, force=True)
        for listener in self._listeners:
            with contextlib.suppress(Exception):
                listener.close()
        self._lock.release()


def _same(old: Snapshot, new: Snapshot) -> bool:
    return dataclasses.replace(old, updated=0.0) == dataclasses.replace(new, updated=0.0)
