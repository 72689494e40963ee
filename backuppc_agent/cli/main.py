"""Command-line entry point: parse, dispatch to one subcommand module, print errors.

Only the chosen subcommand's module is imported (and only its parser built), so
short-lived commands (status, wait, hook) never pay for prometheus_client or
keyring. ``main()`` is the one place that prints errors: one line each.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from backuppc_agent import exitcodes
from backuppc_agent.cli import parser
from backuppc_agent.cli.parser import COMMANDS, PROG
from backuppc_agent.errors import BackupPCAgentError, ConfigError


def _selected_command(argv: Sequence[str]) -> str | None:
    """Find the subcommand name before parsing, so only its module is imported."""
    words = iter(argv)
    for word in words:
        if word == "--config":
            next(words, None)  # its value
        elif word in COMMANDS:
            return word
        elif not word.startswith("-"):
            return None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    selected = _selected_command(args_list)
    passthrough: list[str] = []
    if selected == "add":
        # Everything after "add" belongs to ssh-add, options included (-l, -D, -t 3600).
        cut = args_list.index("add") + 1
        args_list, passthrough = args_list[:cut], args_list[cut:]
    args = parser.parse(args_list, selected)
    if isinstance(args, int):
        return args
    if selected == "add":
        args.ssh_add_args = passthrough
    return _dispatch(args)


def _dispatch(args: argparse.Namespace) -> int:
    module = parser.load(COMMANDS[args.command][0])
    try:
        return int(module.run(args))
    except ConfigError as err:
        for problem in err.problems:
            print(f"{PROG}: {err.source}: {problem}", file=sys.stderr)
        return err.exit_code
    except BackupPCAgentError as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if args.debug:
            raise
        print(
            f"{PROG}: internal error: {type(err).__name__}: {err} (rerun with --debug)",
            file=sys.stderr,
        )
        return exitcodes.INTERNAL
