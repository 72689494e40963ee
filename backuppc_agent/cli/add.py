"""``backuppc-agent add [ssh-add args]``: ssh-add against the supervised agent."""

from __future__ import annotations

import argparse
import os
import sys
import time

from backuppc_agent import exitcodes, proc
from backuppc_agent.agent import readiness
from backuppc_agent.cli.common import load_config, probe_agent
from backuppc_agent.config import Config
from backuppc_agent.state import State

SETTLE_SECONDS = 1.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Everything after ``add`` goes to ssh-add unchanged (main() splits it off)."""
    parser.usage = "backuppc-agent [--config PATH] add [ssh-add arguments ...]"
    parser.epilog = "Global options go before 'add': everything after it is ssh-add's."


def run(args: argparse.Namespace) -> int:
    """Run ssh-add with SSH_AUTH_SOCK set, then report the resulting readiness."""
    config = load_config(args)
    env = dict(os.environ)
    env["SSH_AUTH_SOCK"] = str(config.agent.socket)
    env.pop("SSH_AGENT_PID", None)
    status = proc.run_interactive(("ssh-add", *args.ssh_add_args), env)
    if status != 0:
        return status
    current, reason = _settle(config)
    print(f"backuppc-agent: {current.value}: {reason}", file=sys.stderr)
    return exitcodes.OK


def _settle(config: Config) -> tuple[State, str]:
    """Give the agent a moment, so the report reflects what ssh-add just did."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        current, reason = readiness.evaluate(probe_agent(config), config.agent.required_keys)
        if current is State.READY or time.monotonic() >= deadline:
            return current, reason
        time.sleep(0.05)
