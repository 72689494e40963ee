"""Keep one ssh-agent alive on the fixed socket: adopt, start, notice death, restart.

Under systemd another unit runs the agent (``starter=None``): the keeper only adopts it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from backuppc_agent import paths
from backuppc_agent.agent import envfile
from backuppc_agent.agent.probe import Probe, ProbeResult, probe
from backuppc_agent.agent.process import (
    Agent,
    AgentHandle,
    AgentStarter,
    make_agent_command,
    start_agent,
)
from backuppc_agent.config import AgentConfig
from backuppc_agent.errors import AgentError, BackupPCAgentError, UnsafePathError
from backuppc_agent.unixsock import Failure

logger = logging.getLogger(__name__)

BACKOFF_FIRST_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0
STABLE_SECONDS = 60.0

#: Called with the agent's pid after a fresh agent was started (not after adoption).
StartedHook = Callable[[int], None]


class AgentKeeper:
    """Attach to (adopt or start) the agent and restart it with backoff when it dies."""

    def __init__(
        self,
        config: AgentConfig,
        probe_fn: Probe = probe,
        clock: Callable[[], float] = time.monotonic,
        on_started: StartedHook | None = None,
        starter: AgentStarter | None = start_agent,
    ) -> None:
        self.config = config
        self._probe = probe_fn
        self._starter = starter
        self._clock = clock
        self._on_started = on_started
        self._agent: AgentHandle | None = None
        self.adopt_only = starter is None  # another service runs the agent
        self.restarts = 0  # how many times the agent was lost and replaced
        self._failures = 0  # restarts in a row that did not last STABLE_SECONDS
        self._due: float | None = None
        self._since = 0.0  # when the agent was started or adopted

    @property
    def pid(self) -> int | None:
        """The agent's pid, or None while there is no agent."""
        return self._agent.pid if self._agent else None

    @property
    def adopted(self) -> bool:
        """True if the agent was left by an earlier supervisor."""
        return bool(self._agent and self._agent.adopted)

    def attach(self) -> ProbeResult | None:
        """Adopt a live agent on the socket (return its probe) or start one; raise if unsafe."""
        found = self.find_agent()
        if found is not None:
            self.adopt(found)
            return found
        if self.adopt_only:
            logger.info("no ssh-agent on %s yet: waiting for one to adopt", self.config.socket)
            return None
        self._start()
        return None

    def find_agent(self) -> ProbeResult | None:
        """The probe of a live agent on the socket, else None (a stale socket removed).

        Raises UnsafePathError or AgentError when something else holds the path.
        """
        sock = self.config.socket
        paths.ensure_private_dir(sock.parent, "agent socket")
        if paths.check_socket_path(sock) is not paths.SocketPath.SOCKET:
            return None
        result = self._probe(sock, self.config.probe_timeout_seconds)
        if result.answered and result.peer_pid:
            return result
        self._clear_socket(result)
        return None

    def adopt(self, result: ProbeResult) -> None:
        """Take over the agent that answered ``result`` (identified by SO_PEERCRED)."""
        assert result.peer_pid is not None
        self._take(Agent(result.peer_pid))
        logger.info(
            "adopted running ssh-agent pid %d on %s (%d keys loaded)",
            result.peer_pid,
            self.config.socket,
            len(result.identities),
        )

    def _clear_socket(self, result: ProbeResult) -> None:
        """Remove a stale socket; refuse a live listener that is not our agent."""
        sock = self.config.socket
        if result.status is Failure.STALE:
            logger.warning("removing stale agent socket %s (nothing listens on it)", sock)
            sock.unlink(missing_ok=True)
            return
        if result.status is Failure.MISSING:
            return
        if result.status is Failure.FOREIGN:
            raise UnsafePathError(result.detail)
        raise AgentError(
            f"agent socket {sock} is in use by something that is not a working ssh-agent "
            f"({result.detail}); stop it or set agent.socket elsewhere"
        )

    def _start(self) -> None:
        assert self._starter is not None
        cfg = self.config
        argv = make_agent_command(cfg.ssh_agent, cfg.socket, cfg.lifetime_seconds)
        agent = self._starter(argv, cfg.socket, cfg.probe_timeout_seconds, self._probe)
        self._take(agent)
        if self._on_started is not None:
            self._on_started(agent.pid)

    def _take(self, agent: AgentHandle) -> None:
        """Make ``agent`` ours and write the env file that points at it."""
        self._agent, self._since = agent, self._clock()
        text = envfile.render("sh", self.config.socket, agent.pid)
        env_path = self.config.env_file
        try:
            paths.ensure_private_dir(env_path.parent, "env file")
            paths.write_private_file(env_path, text.encode())
        except UnsafePathError as err:
            logger.error("cannot write env file: %s", err)

    def check(self, result: ProbeResult) -> None:
        """Notice a dead agent (exit status or socket gone); restart when the backoff is due."""
        if self._agent is not None:
            status = self._agent.exit_status()
            if status is not None:
                self._lost(f"exited with status {status}")
            elif result.status in (Failure.STALE, Failure.MISSING):
                self._lost(f"stopped answering on {self.config.socket} ({result.detail})")
            elif result.answered and result.peer_pid != self._agent.pid:
                logger.warning("agent socket now answered by pid %s; adopting it", result.peer_pid)
                self.adopt(result)
        elif self.adopt_only and result.answered and result.peer_pid:
            self.adopt(result)
            return
        due = self._due
        if self._agent is None and due is not None and self._clock() >= due:
            self._try_restart()

    def _lost(self, how: str) -> None:
        assert self._agent is not None
        pid = self._agent.pid
        if self.adopt_only:
            # Another service runs the agent: ending or replacing it is its job.
            self.restarts += 1
            then = "waiting for its service to start another"
        else:
            self._agent.stop()
            delay = self._back_off()
            then = f"restarting it in {delay:.1f} s"
        self._agent = None
        logger.warning(
            "ssh-agent pid %d %s: its loaded keys are lost; %s. "
            "Re-add keys with: SSH_AUTH_SOCK=%s ssh-add",
            pid,
            how,
            then,
            self.config.socket,
        )

    def _back_off(self) -> float:
        """Set when the next restart is due; return the delay until then."""
        if self._clock() - self._since >= STABLE_SECONDS:
            self._failures = 0
        first = self._failures == 0
        delay = 0.0 if first else BACKOFF_FIRST_SECONDS * 2.0 ** (self._failures - 1)
        delay = min(delay, BACKOFF_MAX_SECONDS)
        self._failures += 1
        self._due = self._clock() + delay
        return delay

    def _try_restart(self) -> None:
        try:
            self.attach()
        except BackupPCAgentError as err:
            delay = self._back_off()
            logger.error("cannot restart ssh-agent: %s; next try in %.1f s", err, delay)
            return
        self._due = None
        self.restarts += 1
        logger.info("ssh-agent restarted (restart #%d)", self.restarts)

    def stop(self) -> None:
        """End the agent and remove its socket (on_stop = stop-agent)."""
        if self._agent is None:
            return
        logger.info("stopping ssh-agent pid %d (on_stop = stop-agent)", self._agent.pid)
        self._agent.stop()
        self._agent = None
        sock = self.config.socket
        try:
            if paths.check_socket_path(sock) is paths.SocketPath.SOCKET:
                sock.unlink(missing_ok=True)
        except UnsafePathError as err:
            logger.warning("left %s in place: %s", sock, err)
