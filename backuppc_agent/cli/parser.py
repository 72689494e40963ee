"""The subcommand table and the argparse parser: global options, the chosen command's own."""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType
from typing import Any, NoReturn

from backuppc_agent import __version__, names

PROG = "backuppc-agent"
DESCRIPTION = "An ssh-agent supervisor and readiness-gated hooks for BackupPC."
#: A usage error is one line: BackupPC copies a hook's output into its XferLOG.
MAX_ERROR_CHARS = 500
#: name -> (module under backuppc_agent.cli, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("run", "run the supervisor (foreground; for supervisord, systemd, sysvinit)"),
    "agent": ("agent_cmd", "run ssh-agent itself on the socket (systemd's backuppc-ssh-agent)"),
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
    "swap": ("swap", "show swap use, swapping rates and the processes in swap"),
    "trust": ("trust", "add a client's host key to known_hosts"),
    "client-setup": ("client_setup", "restrict the backup key on a client to the gate"),
    "passphrase": ("passphrase", "store or delete a key passphrase in the keyring"),
}


class _Parser(argparse.ArgumentParser):
    """argparse, with each error on one line: no usage block, no raw control characters."""

    #: The NAME line of the man page that argparse-manpage builds from this parser.
    man_short_description = "ssh-agent supervisor and readiness-gated hooks for BackupPC"

    def error(self, message: str) -> NoReturn:
        """Print ``PROG: error: MESSAGE (see PROG --help)`` and exit 2."""
        shown = names.escaped(message, MAX_ERROR_CHARS)  # a hostile argument is echoed
        self.exit(2, f"{self.prog}: error: {shown} (see {self.prog} --help)\n")


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


def build_manual_parser() -> argparse.ArgumentParser:
    """Every subcommand with its own arguments: the man page's source (debian/rules)."""
    return _build(list(COMMANDS), with_arguments=True)


def _build(commands: list[str], with_arguments: bool) -> argparse.ArgumentParser:
    """The global options and ``commands``, each with its own arguments if asked."""
    common = _common()
    # Subparsers are built with the parent's class: every level errs on one line.
    parser = _Parser(prog=PROG, parents=[common], description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", prog=PROG)
    for name in commands:
        module, text = COMMANDS[name]
        # A dict: typeshed wants parents of the subparsers' own class (_Parser).
        kwargs: dict[str, Any] = {"parents": [common], "help": text, "description": text}
        child = sub.add_parser(name, **kwargs)
        if with_arguments:
            load(module).add_arguments(child)
    return parser


def load(module: str) -> ModuleType:
    return importlib.import_module(f"backuppc_agent.cli.{module}")


def parse(argv: list[str], selected: str | None) -> argparse.Namespace | int:
    """Parse (building only the ``selected`` command); the namespace, or argparse's exit code."""
    defaults = argparse.Namespace(config=None, debug=False)
    built = _build([selected] if selected else list(COMMANDS), with_arguments=bool(selected))
    try:
        args = built.parse_args(argv, namespace=defaults)
    except SystemExit as exit_:
        return 2 if exit_.code not in (0, None) else 0
    if args.command is None:
        print(f"{PROG}: error: a COMMAND is required (see {PROG} --help)", file=sys.stderr)
        return 2
    return args
