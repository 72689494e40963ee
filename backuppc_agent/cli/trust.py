"""``backuppc-agent trust CLIENT [--host ADDRESS] [--yes]``: add a client's host key.

Shows the key's fingerprint and, once confirmed (``--yes`` for scripts), adds it
to the known_hosts file our ssh options name ([mux] known_hosts). A different
key already on file for the address is refused: that is what a
man-in-the-middle looks like, and also a reinstalled client.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from backuppc_agent import exitcodes, names
from backuppc_agent.backuppc.confdir import ConfDir
from backuppc_agent.cli.common import confirmed
from backuppc_agent.config import Config
from backuppc_agent.errors import BackupPCAgentError
from backuppc_agent.install import context, fsops, trust
from backuppc_agent.install.authkeys import PublicKey


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """CLIENT, --host, --port, --yes, --backuppc-dir."""
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
    address = names.check(args.host or _alias(args, ctx.config, client), "host")
    if not 0 < args.port < 65536:
        raise BackupPCAgentError(f"--port {args.port}: not a TCP port")
    name = trust.host_field(address, args.port)
    known_hosts = ctx.config.mux.known_hosts
    key = trust.scan(address, args.port)
    print(f"{client} ({name}) ed25519 host key {key.fingerprint}")
    if _already_known(known_hosts, name, key):
        print(f"already trusted in {known_hosts}")
        return exitcodes.OK
    hint = "compare it with the client's: ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub"
    if not (args.yes or confirmed(f"add it to {known_hosts}?", hint)):
        raise BackupPCAgentError("not added: confirm with --yes (or answer y on a terminal)")
    user = ctx.user.pw_name
    trust.add(known_hosts, name, key, fsops.Owner.of_user(user), user)
    print(f"added {name} to {known_hosts}")
    return exitcodes.OK


def _alias(args: argparse.Namespace, config: Config, client: str) -> str:
    """The ClientNameAlias BackupPC connects to, else the client name."""
    directory = Path(args.backuppc_dir or config.backuppc.conf_dir)
    return ConfDir(directory, config.backuppc.top_dir).host(client).address


def _already_known(known_hosts: Path, name: str, key: PublicKey) -> bool:
    """True if the key is on file; raise if a different key of its type is."""
    same_type = [k for k in trust.known_keys(known_hosts, name) if k.key_type == key.key_type]
    if any(k.blob == key.blob for k in same_type):
        return True
    if same_type:
        raise BackupPCAgentError(
            f"{known_hosts} holds a DIFFERENT ed25519 key for {name} ({same_type[0].fingerprint}):"
            f" if the client was reinstalled, remove it first: ssh-keygen -R '{name}' "
            f"-f {known_hosts}"
        )
    return False
