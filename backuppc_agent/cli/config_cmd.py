"""``backuppc-agent config check|show``."""

from __future__ import annotations

import argparse
import sys

from backuppc_agent import config as config_mod
from backuppc_agent import exitcodes
from backuppc_agent.cli.common import load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """check: validate and report; show: print the effective configuration."""
    parser.add_argument("action", choices=("check", "show"))


def run(args: argparse.Namespace) -> int:
    """Exit 0 if valid; a ConfigError (exit 2) lists every problem otherwise."""
    config = load_config(args)
    if args.action == "check":
        print(f"{config.source}: OK")
    else:
        sys.stdout.write(config_mod.to_toml(config))
    return exitcodes.OK
