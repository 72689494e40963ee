"""``backuppc-agent trust CLIENT [--host ADDRESS] [--yes]``: add a client's host key.

Shows the key's fingerprint and, once confirmed (``--yes`` for scripts), adds it
to [mux] known_hosts; a different key already on file for the address is refused.
"""

from __future__ import annotations

import argparse

from backuppc_agent import exitcodes, names
from backuppc_agent.cli.common import confirmed
from backuppc_agent.errors import BackupPCAgentError
from backuppc_agent.install import context, trust


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("client", metavar="CLIENT", help="the BackupPC host name")
    parser.add_argument(
        "--host", metavar="ADDRESS", help="address to scan (default: ClientNameAlias, else CLIENT)"
    )
    parser.add_argument("--port", type=int, default=trust.DEFAULT_PORT, help="ssh port (22)")
    parser.add_argument("--yes", action="store_true", help="add without asking")
    parser.add_argument("--backuppc-dir", metavar="DIR", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    """Scan, show, compare, confirm, add; 0 when the key is (now) trusted."""
    ctx = context.load(args.config)
    client = names.check(args.client, "client")
    address = args.host or ctx.backuppc(args.backuppc_dir).host(client).address
    address = names.check(address, "host")
    if not 0 < args.port < 65536:
        raise BackupPCAgentError(f"--port {args.port}: not a TCP port")
    name = trust.host_field(address, args.port)
    known_hosts = ctx.config.mux.known_hosts
    key = trust.scan(address, args.port)
    print(f"{client} ({name}) ed25519 host key {key.fingerprint}")
    if trust.already_known(known_hosts, name, key):
        print(f"already trusted in {known_hosts}")
        return exitcodes.OK
    hint = "compare it with the client's: ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub"
    if not (args.yes or confirmed(f"add it to {known_hosts}?", hint)):
        raise BackupPCAgentError("not added: confirm with --yes (or answer y on a terminal)")
    trust.add(known_hosts, name, key, ctx.user)
    print(f"added {name} to {known_hosts}")
    return exitcodes.OK
