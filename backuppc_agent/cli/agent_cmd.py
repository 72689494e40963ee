"""``backuppc-agent agent``: ssh-agent itself, as a service of its own (backuppc-ssh-agent).

The socket is prepared as the supervisor would (a live agent refused), then this
process becomes ``ssh-agent -D``: restarting the supervisor (``run --adopt``) or
upgrading the package never touches the loaded keys.
"""

from __future__ import annotations

import argparse
import logging
import os

from backuppc_agent.agent.keeper import AgentKeeper
from backuppc_agent.agent.process import make_agent_command
from backuppc_agent.cli.common import load_config, setup_logging
from backuppc_agent.errors import AgentError

logger = logging.getLogger("backuppc_agent")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options beyond the global ones."""


def run(args: argparse.Namespace) -> int:
    """Exec ssh-agent in the foreground on the configured socket; return only on failure."""
    setup_logging(args.debug)
    agent = load_config(args).agent
    live = AgentKeeper(agent, starter=None).find_agent()
    if live is not None:
        raise AgentError(
            f"an ssh-agent (pid {live.peer_pid}) already answers on {agent.socket}: "
            "stop it first (its keys end), or let `backuppc-agent run` adopt it"
        )
    argv = make_agent_command(agent.ssh_agent, agent.socket, agent.lifetime_seconds)
    logger.info("running %s", " ".join(argv))
    try:
        os.execvp(argv[0], argv)  # noqa: S606 (the argv tuple; no shell)
    except OSError as err:
        raise AgentError(f"cannot run {argv[0]}: {err.strerror}") from err
