"""Helpers shared by subcommands: config loading, a yes/no question, logging set-up."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from backuppc_agent import config as config_mod
from backuppc_agent.config import Config
from backuppc_agent.errors import BackupPCAgentError

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def load_config(args: argparse.Namespace) -> Config:
    """Load the config named by --config or the usual places; raise ConfigError."""
    return config_mod.load(args.config)


def load_config_for_caller(args: argparse.Namespace) -> tuple[Config, int | None, str | None]:
    """(config, uid, name): root sees the paths as the BackupPC user has them (its agent,
    its masters), not root's own ``~``; others get their own view and no uid or name.
    """
    if os.geteuid() != 0:
        return load_config(args), None, None
    from backuppc_agent.install import context  # noqa: PLC0415  (root only: pwd, more config)

    try:
        ctx = context.load(args.config)
    except BackupPCAgentError:  # no such account: root's own view
        return load_config(args), None, None
    return ctx.config, ctx.user.pw_uid, ctx.user.pw_name


def confirmed(question: str, hint: str = "") -> bool:
    """Ask ``question [y/N]`` at a terminal (``hint`` first); False without one or a yes."""
    if not sys.stdin.isatty():
        return False
    if hint:
        print(hint)
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def setup_logging(debug: bool) -> None:
    """Log to stderr, one line per event (supervisord and journald capture it)."""
    level = logging.DEBUG if debug else logging.INFO
    logging.basicConfig(level=level, format=LOG_FORMAT, stream=sys.stderr)
