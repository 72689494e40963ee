"""Command-line entry point: parse, dispatch to one subcommand module, print errors.

Only the chosen subcommand's module is imported, so short-lived commands
(status, wait, hook) never pay for paramiko, prometheus_client or keyring.
``main()`` is the one place that prints errors: one line each, documented exit codes.
"""

from __future__ import annotations

import sys

from backuppc_agent import exitcodes
from backuppc_agent.cli.commands import COMMANDS, FAST_COMMANDS, PROG
from backuppc_agent.errors import BackupPCAgentError, ConfigError

TYPE_CHECKING = False  # not typing's: importing typing costs ~4 ms (see records.py)
if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import SimpleNamespace
    from typing import Any


def _selected_command(argv: Sequence[str]) -> str | None:
    """Find the subcommand name without parsing (so only its module is imported)."""
    skip = False
    for token in argv:
        if skip:
            skip = False
            continue
        if token == "--config":  # noqa: S105 (an option name, not a password)
            skip = True
        elif token in COMMANDS:
            return token
        elif not token.startswith("-"):
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
    args = _parse(args_list, selected)
    if isinstance(args, int):
        return args
    if selected == "add":
        args.ssh_add_args = passthrough
    args.config = getattr(args, "config", None)
    args.debug = getattr(args, "debug", False)
    return _dispatch(args)


def _parse(args_list: list[str], selected: str | None) -> Any:
    """The fast parser for hot commands, argparse for everything else (and any doubt)."""
    if selected in FAST_COMMANDS:
        from backuppc_agent.cli import fastpath  # noqa: PLC0415

        fast = fastpath.parse(args_list)
        if fast is not None:
            return fast
    from backuppc_agent.cli import parser  # noqa: PLC0415  (argparse: ~4 ms)

    return parser.parse(args_list, selected)


def _dispatch(args: SimpleNamespace) -> int:
    name = f"backuppc_agent.cli.{COMMANDS[args.command][0]}"
    __import__(name)  # not importlib.import_module: importlib costs its own import
    module = sys.modules[name]
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
