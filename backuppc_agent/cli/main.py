"""Command-line entry point: parse, dispatch to one subcommand module, print errors.

Only the chosen subcommand's module is imported, so short-lived commands
(status, wait, hook) never pay for paramiko, prometheus_client or keyring.
``main()`` is the one place that prints errors: one line each, documented exit codes.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from backuppc_agent import __version__, exitcodes
from backuppc_agent.errors import BackupPCAgentError, ConfigError

TYPE_CHECKING = False  # not typing's: importing typing costs ~4 ms (see records.py)
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

PROG = "backuppc-agent"
DESCRIPTION = "An ssh-agent supervisor and readiness-gated hooks for BackupPC."

#: name -> (module under backuppc_agent.cli, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("run", "run the supervisor (foreground; for supervisord, systemd, sysvinit)"),
    "status": ("status", "show agent readiness; exit 0 when ready, 1 when not"),
    "wait": ("wait", "wait until SSH auth is ready; exit 1 on timeout"),
    "env": ("env", "print SSH_AUTH_SOCK for sh, csh or fish"),
    "add": ("add", "run ssh-add against the supervised agent"),
    "config": ("config_cmd", "check or show the configuration"),
    "hook": ("hook", "BackupPC pre/post user command (dump, restore, archive)"),
    "backuppc-config": ("backuppc_config", "print the lines to add to BackupPC's config.pl"),
    "ssh-config": ("ssh_config", "print or write the ssh_config used for client pulls"),
    "master": ("master", "list, open, check, close ssh master connections"),
    "install": ("install", "install config, ssh_config, service files and BackupPC lines"),
    "doctor": ("doctor", "check the setup and explain each problem with a fix"),
    "trust": ("trust", "add a client's host key to known_hosts"),
    "passphrase": ("passphrase", "store or delete a key passphrase in the keyring"),
    "askpass": ("askpass", argparse.SUPPRESS),
}


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
    parser = argparse.ArgumentParser(
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
        if text != argparse.SUPPRESS:
            kwargs["help"] = text
        child = sub.add_parser(
            name, description=None if text == argparse.SUPPRESS else text, **kwargs
        )
        if name == selected:
            _load(module).add_arguments(child)
    return parser


def _load(module: str) -> Any:
    return importlib.import_module(f"backuppc_agent.cli.{module}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    selected = _selected_command(args_list)
    passthrough: list[str] = []
    if selected == "add":
        # Everything after "add" belongs to ssh-add, options included (-l, -D, -t 3600).
        cut = args_list.index("add") + 1
        args_list, passthrough = args_list[:cut], args_list[cut:]
    parser = build_parser(selected)
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exit_:
        return exitcodes.USAGE if exit_.code not in (0, None) else exitcodes.OK
    if selected == "add":
        args.ssh_add_args = passthrough
    if args.command is None:
        parser.print_usage(sys.stderr)
        print(f"{PROG}: a COMMAND is required (see {PROG} --help)", file=sys.stderr)
        return exitcodes.USAGE
    args.config = getattr(args, "config", None)
    args.debug = getattr(args, "debug", False)
    return _dispatch(args)


def _dispatch(args: argparse.Namespace) -> int:
    module = _load(COMMANDS[args.command][0])
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
