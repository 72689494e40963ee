"""``backuppc-agent run``: the supervisor, in the foreground."""

from __future__ import annotations

import argparse
import logging
import os

from backuppc_agent import __version__
from backuppc_agent import config as config_mod
from backuppc_agent.agent.process import start_agent
from backuppc_agent.agent.publisher import Listener
from backuppc_agent.agent.supervisor import Supervisor
from backuppc_agent.agent.unlock import Unlocker
from backuppc_agent.backuppc.notify import OnReadyNotifier
from backuppc_agent.cli.common import load_config, setup_logging
from backuppc_agent.config import Config

logger = logging.getLogger("backuppc_agent")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--adopt",
        action="store_true",
        help="never start an ssh-agent: adopt the one on the socket and wait while there is "
        "none (systemd runs it as backuppc-ssh-agent.service, `backuppc-agent agent`)",
    )


def build_listeners(config: Config, unlocker: Unlocker) -> list[Listener]:
    """The components that follow the supervisor (unlocker, on-ready notifier, exporter)."""
    # The first two always: a SIGHUP can turn [agent] unlock or [hooks] on_ready on.
    listeners: list[Listener] = [unlocker, OnReadyNotifier(config)]
    if config.metrics.listen:
        # prometheus_client is imported here only: no other command pays for it.
        from backuppc_agent.metrics.exporter import Exporter  # noqa: PLC0415

        listeners.append(Exporter(config))
    return listeners


def run(args: argparse.Namespace) -> int:
    """Run until SIGTERM; return 0 on a clean stop."""
    setup_logging(args.debug)
    config = load_config(args)
    sock = config.agent.socket
    logger.info(
        "backuppc-agent %s starting (config: %s, pid %d)", __version__, config.source, os.getpid()
    )
    logger.info("agent socket: %s; load keys with: SSH_AUTH_SOCK=%s ssh-add", sock, sock)
    unlocker = Unlocker(config)
    supervisor = Supervisor(
        config,
        config_path=args.config,
        listeners=build_listeners(config, unlocker),
        unlock_status=unlocker.status,
        loader=config_mod.load,
        agent_starter=None if args.adopt else start_agent,
    )
    return supervisor.run()
