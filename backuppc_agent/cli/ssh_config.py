"""``backuppc-agent ssh-config [--write [PATH]]``: the ssh_config for client pulls."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from backuppc_agent import exitcodes, paths
from backuppc_agent.cli.common import load_config
from backuppc_agent.ssh import sshconfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--write",
        nargs="?",
        const="",
        metavar="PATH",
        help="write it (mode 0600) instead of printing; default path: [mux] ssh_config",
    )


def run(args: argparse.Namespace) -> int:
    """Print or write the ssh_config; create the control directory (0700) when writing."""
    config = load_config(args)
    text = sshconfig.render(config)
    if args.write is None:
        sys.stdout.write(text)
        return exitcodes.OK
    target = Path(args.write) if args.write else config.mux.ssh_config
    paths.ensure_private_dir(config.mux.control_dir, "control")
    paths.write_private_file(target.absolute(), text.encode())
    print(f"wrote {target.absolute()}; control sockets go to {config.mux.control_dir}")
    return exitcodes.OK
