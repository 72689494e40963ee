"""``backuppc-agent client-setup CLIENT``: restrict the backup key on a client to the gate.

Reaches CLIENT as BackupPC does (its ClientNameAlias, our ssh options, the agent's
keys), restricts the backup key to ``GATE backup AUTHKEYS`` and the restore key to
``GATE restore AUTHKEYS`` (``restrict,from="ADDR",command=...``), installs the gate
and keeps the original file.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from backuppc_agent import exitcodes, names, proc
from backuppc_agent.agent import probe as agent_probe
from backuppc_agent.backuppc import confdir
from backuppc_agent.backuppc.confdir import ConfDir, Host
from backuppc_agent.cli.common import confirmed
from backuppc_agent.errors import BackupPCAgentError
from backuppc_agent.install import authkeys, client, clientkeys, context, fsops
from backuppc_agent.install.authkeys import PublicKey, Target
from backuppc_agent.ssh.remote import Answer, Probe

EXIT_CODES = (
    "Exit codes: 0 set up, already set up, undone or nothing to undo; 2 bad arguments or "
    "config; 7 a refused client or user name; 9 failed or refused (ssh failed, another "
    "forced command answers, not confirmed, the restore key missing or not loaded)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("client", metavar="CLIENT", help="the BackupPC host name")
    parser.add_argument(
        "--login-user", metavar="USER", default="root", help="the account ssh logs in as (root)"
    )
    parser.add_argument("--yes", action="store_true", help="change the client without asking")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--print", dest="print_only", action="store_true",
        help="print what to install by hand; connect nowhere",
    )  # fmt: skip
    mode.add_argument("--undo", action="store_true", help="put the saved authorized_keys back")
    parser.add_argument("--backuppc-dir", metavar="DIR", help=argparse.SUPPRESS)
    parser.epilog = EXIT_CODES


@dataclass(frozen=True)
class Keys:
    """The backup keys (the agent's, but the restore key) and the restore key."""

    backup: tuple[PublicKey, ...]
    restore: PublicKey
    restore_loaded: bool

    @property
    def backup_idents(self) -> set[tuple[str, bytes]]:
        """What names each backup key in an authorized_keys line (type and blob)."""
        return {key.ident for key in self.backup}


def run(args: argparse.Namespace) -> int:
    """Set up, undo or print; the exit code (failures raise BackupPCAgentError)."""
    ctx = context.load(args.config)
    client_name = names.check(args.client, "client")
    login = names.check(args.login_user, "login user")
    if args.print_only:
        return _print_manual(login, _keys(ctx))
    backuppc = ctx.backuppc(args.backuppc_dir)
    host = backuppc.host(client_name)
    address = names.check(host.address, "host")
    # ssh and ssh-keygen run as the BackupPC user, when we are root and it is not
    runas = ctx.user if os.geteuid() == 0 and ctx.user.pw_uid != 0 else None
    base = client.Session(ctx.config, login, address, runas)
    if not args.undo:
        _ensure_restore_key(ctx, base)
    keys = _keys(ctx)
    with base.offering(keys.backup) as session:
        if args.undo:
            return _undo(client_name, session, keys)
        code = _setup(client_name, session, keys, args.yes)
    _protect_args_note(backuppc, host)
    return code


def _protect_args_note(backuppc: ConfDir, host: Host) -> None:
    """Name the HOST.pl lines an rsync host needs behind the gate, which refuses -s."""
    problem = client.protect_args_problem(backuppc, host)
    if problem is None:
        return
    print(f"{problem}: add to {backuppc.conf_dir / host.name}.pl:")
    for line in confdir.WITHOUT_PROTECT_ARGS:
        print(f"  {line}")


def _keys(ctx: context.Context) -> Keys:
    """The agent's identities and RESTORE_KEY.pub; raise if either is missing."""
    config = ctx.config
    restore_path = config.agent.restore_key
    restore = authkeys.public_key(fsops.read_text(Path(f"{restore_path}.pub")) or "")
    if restore is None:
        raise BackupPCAgentError(f"{restore_path}.pub: missing or not a public key")
    uid = ctx.user.pw_uid if os.geteuid() == 0 else None
    found = agent_probe.probe(config.agent.socket, config.agent.probe_timeout_seconds, uid)
    if not found.answered:
        raise BackupPCAgentError(
            f"no agent answers at {config.agent.socket} ({found.status.value}): "
            "client-setup uses its keys (backuppc-agent status)"
        )
    listed = [PublicKey(i.key_type, i.blob, i.comment) for i in found.identities]
    backup = tuple(key for key in listed if key.ident != restore.ident)
    if not backup:
        raise BackupPCAgentError(
            "the agent holds no backup key: load it first (backuppc-agent add)"
        )
    return Keys(backup, restore, len(backup) < len(listed))


def _ensure_restore_key(ctx: context.Context, session: client.Session) -> None:
    """Create the restore key with ssh-keygen at the terminal if there is none."""
    path = ctx.config.agent.restore_key
    if path.exists() or ctx.config.agent.restore_key_set_up():
        return
    comment = f"backuppc-restore@{socket.gethostname()}"
    keygen = ("ssh-keygen", "-t", "ed25519", "-f", str(path), "-C", comment)
    if not sys.stdin.isatty():
        raise BackupPCAgentError(
            f"no restore key {path}: create it at a terminal, as {ctx.user.pw_name}: "
            + " ".join(keygen)
        )
    fsops.ensure_dir(path.parent, 0o700, fsops.owner_of(ctx.user))
    print(f"creating the restore key {path}: ssh-keygen asks for its passphrase")
    # ssh-keygen reads the passphrase from the terminal itself: we never see it.
    code = proc.run_interactive((*session.prefix(), *keygen), session.env())
    if code != 0 or not ctx.config.agent.restore_key_set_up():
        raise BackupPCAgentError(f"ssh-keygen failed (exit {code}): no restore key {path}")


def _probe(name: str, session: client.Session) -> Probe:
    """What answers the backup key: a shell or our gate; raise if another forced command."""
    found = session.probe()
    if found.answer is Answer.OTHER:
        raise BackupPCAgentError(f"{name}: another forced command answers the probe: {found.text}")
    return found


def _setup(name: str, session: client.Session, keys: Keys, yes: bool) -> int:
    gate = client.gate_text()
    found, version = _probe(name, session), client.gate_version(gate)
    if found.answer is Answer.GATE and found.version == version:
        print(f"{name}: already set up (gate {version}, backup key restricted): nothing to change")
        return exitcodes.OK
    if found.answer is Answer.GATE:
        raise BackupPCAgentError(
            f"{name}: gate {found.version} is installed, this is {version}: "
            f"run client-setup --undo {name} (restore key loaded), then client-setup {name}"
        )
    authkeys_path, old, new = _plan(name, session, keys)
    if not (yes or confirmed("change the client?")):
        raise BackupPCAgentError("nothing changed: confirm with --yes (or answer y at a terminal)")
    clientkeys.write(session, authkeys_path, old, new, gate)
    after = session.probe()
    if after.answer is not Answer.GATE:
        raise BackupPCAgentError(
            f"{name}: written, but the backup key still gets {after.answer.value}: "
            "another authorized_keys entry or file lets it in"
        )
    print(f"{name}: set up (gate {after.version}, backup key restricted)")
    return exitcodes.OK


def _plan(name: str, session: client.Session, keys: Keys) -> tuple[str, str, str]:
    """Find the file with the backup key, show its rewrite; (its path, old text, new text)."""
    account = clientkeys.inspect(session)
    keys_file = _file_with_backup_key(account, keys, clientkeys.read(session, account.files))
    target = Target(keys_file.path, account.address)
    problem = authkeys.check_target(target)
    if problem is not None:
        raise BackupPCAgentError(f"{name}: {problem}: set it up by hand (--print)")
    old = keys_file.text or ""
    new = authkeys.rewrite(old, keys.backup_idents, keys.restore, target)
    print(f"{name}: {session.login}@{session.address}, {target.authkeys} ({account.source})")
    if target.address is None:
        print("  the server's address was not found: no from= restriction")
    for line in authkeys.summary(old, new):
        print(f"  {line}")
    print(f"  install the gate {target.gate} (mode 0755)")
    if not keys_file.saved:
        print(f"  keep the original as {target.saved} (mode 0600)")
    return target.authkeys, old, new


def _file_with_backup_key(
    account: clientkeys.Account, keys: Keys, files: list[clientkeys.KeysFile]
) -> clientkeys.KeysFile:
    wanted = keys.backup_idents
    for keys_file in files:
        lines = authkeys.parse(keys_file.text or "")
        if any(authkeys.gate_mode(line, wanted, keys.restore) == authkeys.BACKUP for line in lines):
            return keys_file
    states = ", ".join(f"{f.path} ({f.state})" for f in files) or "none"
    raise BackupPCAgentError(
        f"no backup key in the authorized_keys files of {account.user} ({account.source}): "
        f"{states}: sshd lets it in another way (AuthorizedKeysCommand, a certificate); "
        "set it up by hand (--print)"
    )


def _undo(name: str, session: client.Session, keys: Keys) -> int:
    if _probe(name, session).answer is Answer.SHELL:
        restored = clientkeys.undo_by_shell(session, clientkeys.inspect(session).files)
        print(f"{name}: " + (f"{restored} put back" if restored else "not set up: nothing to undo"))
        return exitcodes.OK
    if not keys.restore_loaded:
        restore_path = session.config.agent.restore_key
        raise BackupPCAgentError(f"the restore key is not loaded: ssh-add -t 1h {restore_path}")
    with session.offering((keys.restore,)) as restore:
        restore.run(client.UNDO_COMMAND, check=True)
    if session.probe().answer is not Answer.SHELL:
        raise BackupPCAgentError(f"{name}: the gate did not undo the setup")
    print(f"{name}: undone: the saved authorized_keys is back, the gate removed")
    return exitcodes.OK


def _print_manual(login: str, keys: Keys) -> int:
    home = "/root" if login == "root" else f"/home/{login}"
    target = Target(f"{home}/{clientkeys.DEFAULT_AUTHKEYS}")
    gate, end, ak, saved = target.gate, "BACKUPPC_AGENT_GATE_END", target.authkeys, target.saved
    lines = [
        f"# On the client, as {login} (adjust the paths if its home or AuthorizedKeysFile differ).",
        f"# 1. The gate, mode 0755, owner {login}: run these lines up to chmod",
        f"cat > {gate} <<'{end}'",
        client.gate_text().removesuffix("\n"),
        f"{end}\nchmod 755 {gate}",
        f"# 2. Keep the original: cp {ak} {saved} && chmod 600 {saved}",
        f"# 3. In {ak}, replace the backup key's line and add the restore key's;",
        '#    after restrict, add from="ADDRESS" (this server as the client sees it):',
        *(authkeys.entry(authkeys.BACKUP, target, key) for key in keys.backup),
        authkeys.entry(authkeys.RESTORE, target, keys.restore),
        f"# Undo: mv {saved} {ak} && rm {gate}",
    ]
    print("\n".join(lines))
    return exitcodes.OK
