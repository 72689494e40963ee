"""The long-running supervisor: owns the ssh-agent, polls it, publishes readiness.

Signal handlers only record the signal and wake the loop through the wakeup fd.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import logging
import operator
import os
import select
import signal
import time
from collections.abc import Callable, Sequence

from backuppc_agent import paths, state
from backuppc_agent.agent import readiness
from backuppc_agent.agent.authwatch import AuthWatch
from backuppc_agent.agent.keeper import AgentKeeper, StartedHook
from backuppc_agent.agent.probe import Probe, ProbeResult, probe
from backuppc_agent.agent.process import AgentStarter, start_agent
from backuppc_agent.agent.publisher import Listener, Publisher
from backuppc_agent.agent.readiness import Readiness
from backuppc_agent.agent.signing import SignChecks, sign_keys
from backuppc_agent.config import Config
from backuppc_agent.errors import AgentError, ConfigError
from backuppc_agent.state import Snapshot, State
from backuppc_agent.unixsock import Failure

logger = logging.getLogger(__name__)

_HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)


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
        probe_fn: Probe = probe,
        loader: Callable[[str | None], Config] | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_agent_started: StartedHook | None = None,
        agent_starter: AgentStarter | None = start_agent,
        sign: Callable[..., SignChecks] = sign_keys,
        unlock_status: Callable[[], tuple[str, str]] | None = None,
    ) -> None:
        self.config = config
        self._config_path = config_path
        self._probe = probe_fn
        self._loader = loader
        self.keeper = AgentKeeper(config.agent, probe_fn, clock, on_agent_started, agent_starter)
        self.auth = AuthWatch(config.agent, sign=sign, clock=clock)
        self._publisher = Publisher(config.state.dir, listeners, clock)
        self._phase = Phase.STARTING
        self._signals: list[int] = []
        self._wakeup_r = -1
        self._lock = paths.FileLock(config.state.dir / state.LOCK_FILE)
        self._unlock_status = unlock_status

    @property
    def snapshot(self) -> Snapshot | None:
        return self._publisher.snapshot

    @property
    def phase(self) -> Phase:
        return self._phase

    def run(self) -> int:
        """Start or adopt the agent, supervise it until SIGTERM; return the exit code."""
        self._install_signals()
        self.start()
        try:
            while (seconds := self.poll()) is not None:
                self._sleep(seconds)
        finally:
            self.stop()
        return 0

    def start(self) -> None:
        """Lock the state dir, adopt a live agent or start one; stop again if that fails."""
        paths.ensure_private_dir(self.config.state.dir, "state")
        if not self._lock.acquire(state.LOCK_WAIT_SECONDS):
            raise AgentError(
                f"another backuppc-agent supervisor already runs on {self._lock.path.parent}"
            )
        try:
            adopted = self.keeper.attach()
            if adopted is not None and adopted.peer_pid is not None:
                self._inherit_history(adopted.peer_pid)
            self._move(Phase.RUNNING)
        except BaseException:
            self.stop()
            raise

    def poll(self) -> float | None:
        """Act on signals, probe, restart if due, publish; seconds to the next poll (None: stop)."""
        self._handle_signals()
        if self._phase is Phase.STOPPING:
            return None
        probe_seconds = self._refresh()
        # A probe of an agent holding thousands of keys takes a noticeable
        # fraction of a second: never spend more than a third of the time probing.
        return max(self.config.agent.poll_seconds, 2 * probe_seconds)

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
            signal.signal(signum, self.record_signal)

    def record_signal(self, signum: int, _frame: object = None) -> None:
        """The signal handler: remember ``signum`` for the loop to act on."""
        self._signals.append(signum)

    def _sleep(self, seconds: float) -> None:
        """Wait up to ``seconds``, less if a signal arrives (the wakeup fd becomes readable)."""
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
                self.reload()

    def _inherit_history(self, agent_pid: int) -> None:
        """Keep 'since' and the restart count of the supervisor that ran this agent."""
        previous = state.read(self.config.state.dir)
        if previous is not None and previous.agent_pid == agent_pid:
            self._publisher.snapshot = previous
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
        verdict = self.auth.assess(result)
        self._publisher.publish(self._make_snapshot(verdict))
        return result.seconds

    def _make_snapshot(self, verdict: Readiness) -> Snapshot:
        old = self.snapshot
        since = old.since if old is not None and old.state is verdict.state else time.time()
        waiting, detail = self._unlock_status() if self._unlock_status else ("", "")
        if verdict.state is not State.WAITING:
            waiting = detail = ""
        return Snapshot(
            state=verdict.state,
            reason=f"{verdict.reason}; unattended unlock: {detail}" if detail else verdict.reason,
            socket=str(self.config.agent.socket),
            agent_pid=self.keeper.pid,
            identities=verdict.identities,
            fingerprints=verdict.fingerprints,
            since=since,
            supervisor_pid=os.getpid() if self._phase is not Phase.STOPPED else None,
            agent_restarts=self.keeper.restarts,
            adopted=self.keeper.adopted,
            agent_up=verdict.probe.answered,
            updated=time.time(),
            expiries=verdict.expiries,
            expires=verdict.expires,
            unusable=verdict.unusable,
            unlock_waiting=waiting,
        )

    def reload(self) -> None:
        """Load the configuration again (SIGHUP); keep the old one if the new one has errors."""
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
        self._publisher.state_dir = new.state.dir
        logger.info("SIGHUP: configuration reloaded from %s", new.source)
        self._publisher.reload(new)

    def _warn_static_changes(self, new: Config) -> None:
        old = self.config
        for name in ("agent.socket", "state.dir", "agent.lifetime_seconds", "agent.ssh_agent"):
            if operator.attrgetter(name)(old) != operator.attrgetter(name)(new):
                logger.warning("%s changed: it takes effect when the agent next starts", name)
        if old.agent.socket != new.agent.socket or old.state.dir != new.state.dir:
            logger.warning("restart the supervisor to move the socket or state dir")

    def stop(self) -> None:
        """Stop the agent if on_stop says so, publish the final state, release everything."""
        if self._phase is Phase.STOPPED:
            return
        if self._phase is not Phase.STOPPING:
            self._move(Phase.STOPPING)
        if self.config.agent.on_stop == "stop-agent":
            self.keeper.stop()
        self._move(Phase.STOPPED)
        if self.snapshot is not None:
            self._publisher.publish(self._final_snapshot(self.snapshot), force=True)
        self._publisher.close()
        self._lock.release()

    def _final_snapshot(self, last: Snapshot) -> Snapshot:
        if self.keeper.pid is not None:
            return dataclasses.replace(last, supervisor_pid=None, updated=time.time())
        stopped = ProbeResult(Failure.MISSING, detail="supervisor stopped the agent")
        return self._make_snapshot(readiness.judge(stopped, (), (), None, time.time()))
