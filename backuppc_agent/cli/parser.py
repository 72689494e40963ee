"""The argparse parser of every command (the hot ones usually go through fastpath)."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any, NoReturn

from backuppc_agent import __version__
from backuppc_agent.cli.commands import COMMANDS, HIDDEN, PROG

DESCRIPTION = "An ssh-agent supervisor and readiness-gated hooks for BackupPC."
#: A usage error is one line: BackupPC copies a hook's output into its XferLOG.
MAX_ERROR_CHARS = 500


class _Parser(argparse.ArgumentParser):
    """argparse, with each error on one line: no usage block, no raw control characters."""

    def error(self, message: str) -> NoReturn:
        """Print ``PROG: error: MESSAGE (see PROG --help)`` and exit 2."""
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def one_line(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """``text`` with control characters escaped (a hostile argument is echoed), cut short."""
    shown = "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)
    return shown if len(shown) <= limit else shown[:limit] + "..."


class _Formatter(argparse.HelpFormatter):
    """A help formatter with a fixed width.

    argparse builds a formatter for every add_argument() call, and the default
    one imports shutil (and with it bz2, lzma, zlib) to ask the terminal size.
    """

    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 30,
        width: int | None = None,
    ) -> None:
        super().__init__(prog, indent_increment, max_help_position, width or 98)


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False, formatter_class=_Formatter)
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
    """Build the parser; only ``selected``'s module adds its own arguments."""
    common = _common()
    # Subparsers are built with the parent's class: every level errs on one line.
    parser = _Parser(
        prog=PROG, parents=[common], description=DESCRIPTION, formatter_class=_Formatter
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    # An explicit prog keeps argparse from building a formatter (and importing
    # shutil, bz2, lzma) on every start.
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", prog=PROG)
    # With a command chosen, only its parser is built: 15 parsers cost ~2 ms.
    chosen = {selected: COMMANDS[selected]} if selected else COMMANDS
    for name, (module, text) in chosen.items():
        kwargs: dict[str, Any] = {"parents": [common], "formatter_class": _Formatter}
        if text != HIDDEN:
            kwargs["help"] = text
        child = sub.add_parser(name, description=text or None, **kwargs)
        if name == selected:
            load(module).add_arguments(child)
    return parser


def load(module: str) -> Any:
    """Import one subcommand module."""
    return importlib.import_module(f"backuppc_agent.cli.{module}")


def parse(argv: list[str], selected: str | None) -> argparse.Namespace | int:
    """Parse with argparse; return the namespace, or the exit code argparse asked for."""
    parser = build_parser(selected)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return 2 if exit_.code not in (0, None) else 0
    if args.command is None:
        print(f"{PROG}: error: a COMMAND is required (see {PROG} --help)", file=sys.stderr)
        return 2
    return args
