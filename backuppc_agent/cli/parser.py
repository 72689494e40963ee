"""The argparse parser: the global options, and the chosen subcommand's own arguments."""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType
from typing import Any, NoReturn

from backuppc_agent import __version__, names
from backuppc_agent.cli.commands import COMMANDS, PROG

DESCRIPTION = "An ssh-agent supervisor and readiness-gated hooks for BackupPC."
#: A usage error is one line: BackupPC copies a hook's output into its XferLOG.
MAX_ERROR_CHARS = 500


class _Parser(argparse.ArgumentParser):
    """argparse, with each error on one line: no usage block, no raw control characters."""

    #: The NAME line of the man page that argparse-manpage builds from this parser.
    man_short_description = "ssh-agent supervisor and readiness-gated hooks for BackupPC"

    def error(self, message: str) -> NoReturn:
        """Print ``PROG: error: MESSAGE (see PROG --help)`` and exit 2."""
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def one_line(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """``text`` with control characters escaped (a hostile argument is echoed), cut short."""
    return names.escaped(text, limit)


def _common() -> argparse.ArgumentParser:
    """--config and --debug, accepted before and after the command name."""
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a value given before the command is not reset by the subparser's default.
    common.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="config file (default: $BACKUPPC_AGENT_CONFIG, /etc/backuppc-agent/config.toml)",
    )
    common.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log debug detail and show tracebacks of internal errors",
    )
    return common


def build_parser(selected: str | None) -> argparse.ArgumentParser:
    """Build the parser; only ``selected``'s module is imported to add its own arguments."""
    # With a command chosen, only its parser is built (and only its module imported).
    chosen = {selected: COMMANDS[selected]} if selected else COMMANDS
    return _build(chosen, with_arguments={selected} if selected else set())


def build_manual_parser() -> argparse.ArgumentParser:
    """Build every subcommand with its own arguments: the man page's source.

    debian/rules runs argparse-manpage on it when the package is built.
    """
    return _build(COMMANDS, with_arguments=set(COMMANDS))


def _build(
    commands: dict[str, tuple[str, str]], with_arguments: set[str]
) -> argparse.ArgumentParser:
    """The global options and ``commands``; those in ``with_arguments`` get their own."""
    common = _common()
    # Subparsers are built with the parent's class: every level errs on one line.
    parser = _Parser(prog=PROG, parents=[common], description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", prog=PROG)
    for name, (module, text) in commands.items():
        # A dict: typeshed wants parents of the subparsers' own class (_Parser).
        kwargs: dict[str, Any] = {"parents": [common], "help": text, "description": text}
        child = sub.add_parser(name, **kwargs)
        if name in with_arguments:
            load(module).add_arguments(child)
    return parser


def load(module: str) -> ModuleType:
    return importlib.import_module(f"backuppc_agent.cli.{module}")


def parse(argv: list[str], selected: str | None) -> argparse.Namespace | int:
    """Parse with argparse; return the namespace, or the exit code argparse asked for."""
    parser = build_parser(selected)
    defaults = argparse.Namespace(config=None, debug=False)
    try:
        args = parser.parse_args(argv, namespace=defaults)
    except SystemExit as exit_:
        return 2 if exit_.code not in (0, None) else 0
    if args.command is None:
        print(f"{PROG}: error: a COMMAND is required (see {PROG} --help)", file=sys.stderr)
        return 2
    return args
