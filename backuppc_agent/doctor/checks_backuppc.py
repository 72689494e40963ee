"""doctor's checks of the BackupPC side and the host: hooks, access, known_hosts, clients, swap."""

from __future__ import annotations

from pathlib import Path

from backuppc_agent.agent import certs
from backuppc_agent.backuppc import confdir, snippets
from backuppc_agent.config import Config
from backuppc_agent.doctor import Env, Finding, Verdict, swapcrypt
from backuppc_agent.errors import BackupPCAgentError
from backuppc_agent.install import access, client, trust
from backuppc_agent.ssh import masterfiles, mux, remote, sshconfig
from backuppc_agent.ssh.remote import Answer

#: Each BackupPC setting doctor requires, with text its effective value must contain.
REQUIRED_SETTINGS = {
    **{setting: f" hook {hook} " for setting, hook, _ in snippets.USER_COMMANDS},
    "RsyncSshArgs": " master ssh ",
}


def check_backuppc_config(env: Env) -> list[Finding]:
    """config.pl runs our hooks with UserCmdCheckStatus = 1, and no host file undoes it."""
    main = env.backuppc.main()
    config_pl = env.backuppc.conf_dir / "config.pl"
    if main is None:
        fix = "install BackupPC (apt install backuppc)"
        return [Finding("backuppc config", Verdict.FAIL, f"{config_pl} not found", fix)]
    findings = _problems(main, str(config_pl), every=True)
    for path in filter(None, map(env.backuppc.host_file, env.backuppc.host_names())):
        settings = confdir.assignments(confdir.read_text(path) or "")
        findings += _problems(settings, str(path), every=False)
    if findings:
        return findings
    message = f"{config_pl}: our hooks and UserCmdCheckStatus = 1 are in effect"
    return [Finding("backuppc config", Verdict.OK, message)]


def _problems(settings: dict[str, str], where: str, every: bool) -> list[Finding]:
    """What in ``settings`` breaks the gate; ``every``: a missing setting counts too."""
    fix = "backuppc-agent install (or the lines of backuppc-agent backuppc-config)"
    findings = []
    for key, marker in {"UserCmdCheckStatus": None, **REQUIRED_SETTINGS}.items():
        value = settings.get(key)
        if (value is None and not every) or _setting_ok(value, marker):
            continue
        shown = "is not set" if value is None else f"= {value[:100]}"
        findings.append(
            Finding("backuppc config", Verdict.FAIL, f"{where}: $Conf{{{key}}} {shown}", fix)
        )
    return findings


def _setting_ok(value: str | None, marker: str | None) -> bool:
    """UserCmdCheckStatus must be 1; a command must contain its marker (" hook pre-dump ")."""
    if marker is None:
        return value == "1"
    return value is not None and marker in f" {value} "


def check_access(env: Env) -> list[Finding]:
    """The BackupPC user runs the program config.pl names, reads the config and key files."""
    user = env.ctx.user
    if env.running_uid not in (0, user.pw_uid):
        message = f"only root or {user.pw_name} can run commands as {user.pw_name}"
        return [Finding("access", Verdict.SKIP, message)]
    pre = (env.backuppc.main() or {}).get("DumpPreUserCmd")
    command = confdir.first_string(pre) or ""
    program = command.split()[0] if " hook " in f" {command} " else None
    found = access.problems(user, program, env.ctx.config_path, env.ctx.config, env.runner)
    if found:
        return [Finding("access", Verdict.FAIL, item.message, item.fix) for item in found]
    what = f"runs {program} and reads" if program else "reads"
    return [Finding("access", Verdict.OK, f"{user.pw_name} {what} {env.ctx.config_path}")]


def check_known_hosts(env: Env) -> list[Finding]:
    """Each host BackupPC reaches through ssh has a known_hosts entry (BatchMode needs it)."""
    known_hosts = env.ctx.config.mux.known_hosts
    every = _hosts(env)
    skipped = [_no_ssh(host) for host in every if not host.uses_ssh]
    hosts = [host for host in every if host.uses_ssh]
    if not hosts:
        return [*skipped, Finding("known_hosts", Verdict.SKIP, "no BackupPC host uses ssh")]
    missing = [host for host in hosts if not trust.lookup(known_hosts, host.address)]
    if not missing:
        message = f"all {len(hosts)} ssh hosts are in {known_hosts}"
        return [*skipped, Finding("known_hosts", Verdict.OK, message)]
    return [*skipped, *(_unknown_host(host, known_hosts) for host in missing)]


def _hosts(env: Env) -> list[confdir.Host]:
    main = env.backuppc.main() or {}
    return [env.backuppc.host(name, main) for name in env.backuppc.host_names()]


def _no_ssh(host: confdir.Host) -> Finding:
    reason = confdir.no_ssh_reason(host.xfer_method)
    message = f"{host.name}: {reason}: no ssh, so no known_hosts entry and no gate"
    return Finding("known_hosts", Verdict.SKIP, message)


def _unknown_host(host: confdir.Host, known_hosts: Path) -> Finding:
    message = (
        f"{host.name} ({host.address}) is not in {known_hosts}: "
        "BatchMode fails with 'Host key verification failed'"
    )
    fix = f"backuppc-agent trust {host.name}"
    if host.address != host.name:
        fix += f" --host {host.address}"
    return Finding("known_hosts", Verdict.FAIL, message, fix)


def check_client_keys(env: Env) -> list[Finding]:
    """On each ssh host, does the backup key reach only client-setup's gate, or a root shell?

    Asked through the host's live master (a harmless probe, no new login); a host
    without one shows what the last master that opened found.
    """
    hosts = [host for host in _hosts(env) if host.uses_ssh]
    if not hosts:
        return [Finding("client keys", Verdict.SKIP, "no BackupPC host uses ssh")]
    config = env.ctx.config
    recorded = remote.remembered_accesses(config.state.dir)
    mine = env.running_uid == env.ctx.user.pw_uid
    findings = [_client_finding(host.name, _access(config, host, recorded, mine)) for host in hosts]
    findings += [
        _protected_finding(env, host, problem)
        for host, finding in zip(hosts, findings, strict=True)
        if finding.verdict is Verdict.OK
        if (problem := client.protect_args_problem(env.backuppc, host))
    ]
    if all(f.verdict is Verdict.OK for f in findings):
        message = f"the backup key reaches only the gate on all {len(hosts)} ssh hosts"
        return [Finding("client keys", Verdict.OK, message)]
    return [f for f in findings if f.verdict is not Verdict.OK]


def _access(
    config: Config, host: confdir.Host, recorded: dict[str, tuple[Answer, float]], record: bool
) -> tuple[Answer, str] | None:
    """(access, when it was seen) for ``host``: probed now through its master, else recorded."""
    try:
        if mux.check(sshconfig.master_path(config, host.name)).alive:
            target = masterfiles.remembered_host(config, host.name) or host.address
            return remote.probe_access(config, host.name, target, record), "now"
    except BackupPCAgentError:
        pass  # no usable master: what was recorded, if anything
    if host.name not in recorded:
        return None
    access, when = recorded[host.name]
    return access, f"when its master opened at {certs.local_stamp(when)}"


def _protected_finding(env: Env, host: confdir.Host, problem: str) -> Finding:
    """A gated rsync host whose args still carry --protect-args: the gate refuses its dumps."""
    where = env.backuppc.conf_dir / f"{host.name}.pl"
    fix = f"add to {where}: " + " ".join(confdir.WITHOUT_PROTECT_ARGS)
    return Finding("client keys", Verdict.FAIL, problem, fix)


def _client_finding(name: str, seen: tuple[Answer, str] | None) -> Finding:
    if seen is None:
        message = f"{name}: not probed yet (its next master is, when a backup opens it)"
        return Finding("client keys", Verdict.SKIP, message)
    access, when = seen
    if access is Answer.GATE:
        return Finding("client keys", Verdict.OK, f"{name}: the backup key reaches only the gate")
    if access is Answer.SHELL:
        message = (
            f"{name}: the backup key gets a login shell ({when}): while the keys are loaded, "
            "anything running as the BackupPC user is root there"
        )
        return Finding("client keys", Verdict.WARN, message, f"backuppc-agent client-setup {name}")
    message = f"{name}: another forced command answers for the backup key ({when}): not ours"
    fix = f"see docs/security.md; or client-setup {name}"
    return Finding("client keys", Verdict.WARN, message, fix)


SWAP_FIX = "encrypt swap (a 'swap' line in /etc/crypttab, or LVM on LUKS) or turn it off"


def check_swap(env: Env) -> list[Finding]:
    """No swap, or only encrypted swap: ssh-agent's keys can be paged out."""
    verdicts = swapcrypt.check(env.procfs, env.sysfs)
    if verdicts is None:
        return [Finding("swap", Verdict.WARN, f"cannot read {env.procfs / 'swaps'}")]
    if not verdicts:
        return [Finding("swap", Verdict.OK, "no swap in use: the agent's keys stay in RAM")]
    return [_swap_finding(item) for item in verdicts]


def _swap_finding(item: swapcrypt.Encryption) -> Finding:
    where = f"{item.area.device} ({item.area.type}): {item.why}"
    if item.encrypted:
        return Finding("swap", Verdict.OK, where)
    if item.encrypted is None:
        return Finding("swap", Verdict.WARN, where, SWAP_FIX)
    message = f"{where}: the agent's decrypted keys can be paged out to it"
    return Finding("swap", Verdict.FAIL, message, SWAP_FIX)
