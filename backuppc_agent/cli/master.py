"""``backuppc-agent master list|check|open|close|kill-remote|ssh``: the per-client masters.

``list`` and ``check`` speak the mux protocol directly (no ssh subprocess).
``ssh CLIENT [ssh args] HOST [command]`` is what ``$Conf{RsyncSshArgs}`` runs:
a session on CLIENT's master that kills its remote job if it is aborted.
"""

from __future__ import annotations

import argparse
import json
import time

from backuppc_agent import exitcodes
from backuppc_agent.cli.common import load_config, load_config_for_caller
from backuppc_agent.config import Config
from backuppc_agent.ssh import mux, sshconfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(
        dest="action", metavar="ACTION", required=True, prog="backuppc-agent master"
    )
    listing = actions.add_parser("list", help="every control socket, checked over mux")
    check = actions.add_parser("check", help="is CLIENT's master alive (exit 0) or not (1)")
    for action, timeout_help in ((listing, "per socket (s)"), (check, "seconds")):
        action.add_argument("--json", action="store_true", help="one JSON document")
        action.add_argument("--timeout", type=float, default=mux.CHECK_SECONDS, help=timeout_help)
    for name, text in (
        ("open", "open CLIENT's master (or find it alive)"),
        ("close", "ask CLIENT's master to exit (like ssh -O exit)"),
        ("kill-remote", "kill what backups started on CLIENT"),
    ):
        actions.add_parser(name, help=text).add_argument(
            "--host", default="", help="address (default: the last one used, else CLIENT)"
        )
    ssh = actions.add_parser("ssh", help="$Conf{RsyncSshArgs}: an abort-safe session")
    ssh.add_argument("client", help="BackupPC's host name")
    ssh.add_argument("ssh_args", nargs=argparse.REMAINDER, help="[options] HOST [command]")
    for name in ("check", "open", "close", "kill-remote"):
        actions.choices[name].add_argument("client", help="BackupPC's host name")


def _list(args: argparse.Namespace) -> int:
    from backuppc_agent.ssh.master import list_masters  # noqa: PLC0415

    # As root: the BackupPC user's masters (root's own ~ has none worth listing).
    config, owner_uid, owner = load_config_for_caller(args)
    masters = list_masters(config.mux.control_dir, args.timeout)
    if args.json:
        rows = [master.as_dict() for master in masters]
        print(json.dumps(rows, sort_keys=True))
        return exitcodes.OK
    if owner:
        print(f"masters of: {owner} (uid {owner_uid})")
    now = time.time()
    for info in masters:
        state = f"up pid {info.pid}" if info.alive else f"dead ({info.detail})"
        age = f"opened {now - info.opened:.0f} s ago" if info.opened else ""
        print(f"{info.client}\t{state}\t{age}".rstrip())
    if not masters:
        print(f"no masters in {config.mux.control_dir}")
    return exitcodes.OK


def _check(config: Config, args: argparse.Namespace) -> int:
    path = sshconfig.control_path(config.mux.control_dir, args.client)
    status = mux.check(path, args.timeout)
    if args.json:
        print(json.dumps(status.as_dict(), sort_keys=True))
    else:
        print(f"{args.client}: {status.detail}")
    return exitcodes.OK if status.alive else exitcodes.NOT_READY


def _open(config: Config, args: argparse.Namespace) -> int:
    from backuppc_agent.ssh.master import ensure_master  # noqa: PLC0415
    from backuppc_agent.ssh.masterfiles import remembered_host  # noqa: PLC0415

    host = args.host or remembered_host(config, args.client) or args.client
    status, opened = ensure_master(config, args.client, host)
    print(f"{args.client}: master pid {status.pid} ({'opened' if opened else 'already up'})")
    return exitcodes.OK


def _stop(config: Config, args: argparse.Namespace) -> str:
    """close: ask the master to exit; kill-remote: end what backups started on the client."""
    if args.action == "close":
        from backuppc_agent.ssh.master import close_master  # noqa: PLC0415

        return close_master(config, args.client).detail
    from backuppc_agent.ssh.remote import kill_remote  # noqa: PLC0415

    return kill_remote(config, args.client, None, args.host or None)


def run(args: argparse.Namespace) -> int:
    if args.action == "list":
        return _list(args)
    config = load_config(args)
    if args.action == "ssh":
        from backuppc_agent.ssh.wrap import run_session  # noqa: PLC0415

        return run_session(config, args.client, args.ssh_args)
    if args.action == "check":
        return _check(config, args)
    if args.action == "open":
        return _open(config, args)
    print(f"{args.client}: {_stop(config, args)}")
    return exitcodes.OK
