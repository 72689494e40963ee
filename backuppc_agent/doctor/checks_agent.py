"""doctor's checks of the agent side: agent and keys, paths, OpenSSH, control paths, unlock."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from pwd import struct_passwd

from backuppc_agent import paths, proc, state
from backuppc_agent.agent import keyfiles, readiness, tang
from backuppc_agent.agent.readiness import Cause
from backuppc_agent.doctor import Env, Finding, Verdict
from backuppc_agent.errors import BackupPCAgentError, UnsafePathError
from backuppc_agent.ssh import sshconfig
from backuppc_agent.state import State

#: IdentityAgent arrived in OpenSSH 7.3; SSH_ASKPASS_REQUIRE (unattended unlock) in 8.4.
IDENTITY_AGENT_VERSION = (7, 3)
ASKPASS_REQUIRE_VERSION = (8, 4)
_VERSION = re.compile(r"OpenSSH_(\d+)\.(\d+)")
START_FIX = (
    "start it: supervisorctl start backuppc-agent, systemctl start backuppc-agent "
    "or service backuppc-agent start"
)
UNUSABLE_FIX = (
    "re-add the key without -c (ssh-add KEY), use a key that needs no touch, "
    "or load a valid certificate"
)


def check_agent(env: Env) -> list[Finding]:
    """The agent answers on its socket and holds the keys that make it ready."""
    config, user, ready = env.ctx.config, env.ctx.user, env.readiness
    supervised = state.supervisor_running(config.state.dir)
    running = "running" if supervised else "NOT running"
    where = f"ssh-agent pid {ready.probe.peer_pid}, supervisor {running}"
    waiting = f"waiting: {ready.reason} ({where})"
    if ready.state is State.READY:
        verdict = Verdict.OK if supervised else Verdict.FAIL
        return [Finding("agent", verdict, f"ready: {ready.reason} ({where})", START_FIX)]
    if ready.cause is Cause.UNUSABLE:
        return [Finding("agent", Verdict.FAIL, waiting, UNUSABLE_FIX)]
    if ready.state is State.WAITING:
        fix = f"su - {user.pw_name}, then ssh-add (or backuppc-agent add)"
        return [Finding("agent", Verdict.FAIL, waiting, fix)]
    message = f"no agent on {config.agent.socket}: {ready.reason}"
    return [Finding("agent", Verdict.FAIL, message, START_FIX)]


def _path_problem(path: Path, uid: int, want_dir: bool, max_mode: int) -> str | None:
    try:
        info = path.lstat()
    except FileNotFoundError:
        return "missing"
    except OSError as err:
        return f"cannot inspect: {err.strerror}"
    kind_ok = stat.S_ISDIR(info.st_mode) if want_dir else not stat.S_ISLNK(info.st_mode)
    if not kind_ok:
        return "is a symlink or the wrong kind of file"
    if info.st_uid != uid:
        return f"owned by uid {info.st_uid}, not {uid}"
    mode = stat.S_IMODE(info.st_mode)
    if mode & ~max_mode:
        return f"mode {mode:04o}, want {max_mode:04o} or tighter"
    return None


def check_paths(env: Env) -> list[Finding]:
    """Socket, its directory, env file and state dir: ours, and private."""
    config, user = env.ctx.config, env.ctx.user
    wanted = [
        ("socket directory", config.agent.socket.parent, True, 0o700),
        ("socket", config.agent.socket, False, 0o600),
        ("env file", config.agent.env_file, False, 0o600),
        ("state dir", config.state.dir, True, 0o700),
    ]
    findings = []
    for what, path, want_dir, max_mode in wanted:
        problem = _path_problem(path, user.pw_uid, want_dir, max_mode)
        if problem is None:
            findings.append(Finding(what, Verdict.OK, f"{path}: {user.pw_name}, private"))
            continue
        fix = f"chown {user.pw_name} {path} && chmod {max_mode:o} {path}"
        if problem == "missing":
            fix = "start the supervisor (it creates it), or run backuppc-agent install"
        findings.append(Finding(what, Verdict.FAIL, f"{path}: {problem}", fix))
    return findings


def parse_ssh_version(text: str) -> tuple[int, int] | None:
    """(major, minor) from ``ssh -V`` output such as ``OpenSSH_9.2p1 Debian-2``."""
    match = _VERSION.search(text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _ssh_version(ssh: str) -> str:
    """What ``ssh -V`` prints (on stderr), or why it could not run."""
    try:
        result = proc.run((ssh, "-V"), timeout=10)
    except proc.CommandError as err:
        return str(err)
    return (result.stderr or result.stdout).decode(errors="replace")


def check_openssh(env: Env) -> list[Finding]:
    """OpenSSH is new enough for IdentityAgent (and SSH_ASKPASS_REQUIRE with unlock)."""
    config = env.ctx.config
    text = _ssh_version(config.mux.ssh)
    version = parse_ssh_version(text)
    if version is None:
        first = text.strip().splitlines()[0] if text.strip() else "no output"
        message = f"cannot parse `{config.mux.ssh} -V`: {first}"
        return [Finding("openssh", Verdict.FAIL, message, "install openssh-client")]
    needed = IDENTITY_AGENT_VERSION
    if config.agent.unlock == "keyring":
        needed = max(needed, ASKPASS_REQUIRE_VERSION)
    shown = f"OpenSSH {version[0]}.{version[1]}"
    if version < needed:
        message = f"{shown} is older than {needed[0]}.{needed[1]}"
        return [Finding("openssh", Verdict.FAIL, message, "upgrade openssh-client")]
    return [Finding("openssh", Verdict.OK, f"{shown}: IdentityAgent, ControlPersist supported")]


def check_control_paths(env: Env) -> list[Finding]:
    """Every BackupPC host's control socket path fits the Unix socket limit."""
    control_dir = env.ctx.config.mux.control_dir
    bad, longest = [], 0
    for name in env.backuppc.host_names():
        try:
            longest = max(longest, len(str(sshconfig.control_path(control_dir, name))))
        except BackupPCAgentError as err:
            fix = "shorten [mux] control_dir or rename the host"
            bad.append(Finding("control path", Verdict.FAIL, str(err), fix))
    if bad:
        return bad
    return [Finding("control path", Verdict.OK, f"longest is {longest} characters (limit 90)")]


def _rerun_as(user: struct_passwd) -> str:
    return f"su -s /bin/sh {user.pw_name} -c 'backuppc-agent doctor'"


def check_running_user(env: Env) -> list[Finding]:
    """Say which account's view the report is (root sees everything but the keyring)."""
    user = env.ctx.user
    if env.running_uid in (user.pw_uid, 0):
        return []
    message = f"running as uid {env.running_uid}, not {user.pw_name} or root"
    return [Finding("user", Verdict.WARN, message, f"run: {_rerun_as(user)}")]


#: ssh's default key files, which backups offer once the restore key is set up and
#: neither [mux] identity_files nor [agent] keys names the backup keys.
DEFAULT_KEY_FILES = ("id_rsa", "id_ecdsa", "id_ecdsa_sk", "id_ed25519", "id_ed25519_sk")


def check_restore_key(env: Env) -> list[Finding]:
    """Once the restore key exists: are restores armed, and can backups still find their key?"""
    agent = env.ctx.config.agent
    key = agent.restore_key
    if not agent.restore_key_set_up():
        message = f"none at {key}: restores use the backup key (client-setup creates one)"
        return [Finding("restore key", Verdict.SKIP, message)]
    if not env.readiness.probe.answered:
        return []  # check_agent says why
    loaded = set(env.readiness.fingerprints)
    findings = [_backup_keys_finding(env, loaded)]
    if readiness.restore_key_loaded(agent, loaded):
        message = f"{key}: armed (loaded: restores can write to clients until it is removed)"
    else:
        message = f"{key}: not armed (restores fail fast until 'ssh-add -t 1h {key}')"
    return [*filter(None, findings), Finding("restore key", Verdict.OK, message)]


def _backup_keys_finding(env: Env, loaded: set[str]) -> Finding | None:
    """A FAIL when no key backups may offer (IdentitiesOnly) is in the agent."""
    named = [Path(v) for k, v in sshconfig.identity_options(env.ctx.config) if k == "IdentityFile"]
    files = named or [env.ctx.home / ".ssh" / name for name in DEFAULT_KEY_FILES]
    if not loaded or any(keyfiles.key_fingerprint(path) in loaded for path in files):
        return None
    message = (
        "backups offer only " + ", ".join(str(path) for path in files) + " (IdentitiesOnly, "
        "since the restore key exists), and the agent holds none of them: every backup fails"
    )
    fix = "name the backup key in [mux] identity_files or [agent] keys, or ssh-add that key"
    return Finding("restore key", Verdict.FAIL, message, fix)


def check_unlock(env: Env) -> list[Finding]:
    """Say which unlock is in force, then check what it needs for each key.

    keyring: a stored passphrase that opens the key (only the BackupPC user can
    read its keyring). tang: the JWE is the BackupPC user's alone, each Tang it
    is bound to answers, and still advertises the thumbprint pinned at store
    time (else ``passphrase rekey``).
    """
    config, user = env.ctx.config, env.ctx.user
    method = config.agent.unlock
    findings = [Finding("unlock", Verdict.OK, f'unattended unlock: "{method}"')]
    if method == "keyring" and env.running_uid != user.pw_uid:
        message = f"only {user.pw_name} can read its keyring"
        findings.append(Finding("keyring", Verdict.SKIP, message, _rerun_as(user)))
    elif method == "keyring":
        findings += [_key_passphrase(key) for key in config.agent.keys]
    elif method == "tang":
        for key in config.agent.keys:
            findings += _key_findings(key, tang.jwe_path(config.state.dir, key), user.pw_uid)
    return findings


def _key_passphrase(key: Path) -> Finding:
    """Does the keyring hold a passphrase that opens ``key``?"""
    from backuppc_agent.agent import passphrases  # noqa: PLC0415  (keyring costs ~50 ms)

    fix = f"backuppc-agent passphrase set {key}"
    try:
        secret = passphrases.get(key)
        good = secret is not None and passphrases.opens(key, secret)
    except passphrases.KeyringError as err:
        return Finding("keyring", Verdict.FAIL, f"{key}: {err}", fix)
    except BackupPCAgentError as err:  # opens' errors name the key
        return Finding("keyring", Verdict.FAIL, str(err), fix)
    if good:
        return Finding("keyring", Verdict.OK, f"{key}: the stored passphrase opens it")
    return Finding("keyring", Verdict.FAIL, f"{key}: no stored passphrase that opens it", fix)


def _key_findings(key: Path, where: Path, owner_uid: int) -> list[Finding]:
    fix = f"backuppc-agent passphrase set {key} --tang URL"
    try:
        info = os.lstat(where)
    except OSError as err:
        return [Finding("tang", Verdict.FAIL, f"{key}: {where}: {err.strerror}", fix)]
    if not stat.S_ISREG(info.st_mode) or info.st_uid != owner_uid or info.st_mode & 0o077:
        message = f"{where}: must be a regular file of uid {owner_uid}, mode 0600"
        return [Finding("tang", Verdict.FAIL, message, f"chmod 600 {where}")]
    try:  # read as unlock reads it: bounded, never through a symlink
        pinned = tang.jwe_thumbprints(paths.read_bounded(where, tang.JWE_MAX_BYTES) or b"")
    except UnsafePathError as err:  # it names the file
        return [Finding("tang", Verdict.FAIL, f"{key}: {err}", fix)]
    except BackupPCAgentError as err:
        return [Finding("tang", Verdict.FAIL, f"{where}: {err}", fix)]
    return [_tang_finding(key, url, thps) for url, thps in pinned.items()]


def _tang_finding(key: Path, url: str, pinned: list[str]) -> Finding:
    rekey = f"backuppc-agent passphrase rekey {key}"
    try:
        advertised = tang.advertised_thumbprints(url)
    except BackupPCAgentError as err:
        return Finding("tang", Verdict.FAIL, f"{key}: {url}: {err}", "start that Tang server")
    if not set(pinned) & set(advertised):
        message = f"{key}: {url} no longer advertises the signing key pinned at store time"
        return Finding("tang", Verdict.WARN, message, rekey)
    return Finding("tang", Verdict.OK, f"{key}: {url} answers and advertises the pinned key")
