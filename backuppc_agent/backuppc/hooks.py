"""What BackupPC's pre/post user commands do: gate on readiness, keep one master per client.

Pre hooks wait up to ``[hooks] wait_seconds`` for a ready agent (probed, not the
state file), then find or open the master, else fail fast with one XferLOG line.
Post hooks never fail a backup. With the restore key set up, pre-restore needs that
key loaded at once and opens a restore master; post-restore closes it.
"""

from __future__ import annotations

import logging
import os
import pwd
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from backuppc_agent import events, exitcodes, names, paths
from backuppc_agent.agent import readiness
from backuppc_agent.agent.readiness import Cause, Readiness, wait_ready
from backuppc_agent.config import AgentConfig, Config
from backuppc_agent.errors import BackupPCAgentError, BadNameError
from backuppc_agent.ssh import mux, sshconfig
from backuppc_agent.state import State

logger = logging.getLogger(__name__)

PRE_HOOKS = ("pre-dump", "pre-restore", "pre-archive")
POST_HOOKS = ("post-dump", "post-restore", "post-archive")
HOOKS = (*PRE_HOOKS, *POST_HOOKS, "ping")
#: Hooks of jobs that pull from or push to the client over ssh (archives stay local).
SSH_HOOKS = frozenset({"pre-dump", "pre-restore", "post-dump", "post-restore"})
POLL_SECONDS = 0.2


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a hook run ended: the recorded result, the exit code, the lines to print."""

    result: str
    exit_code: int
    lines: tuple[str, ...]
    waited_seconds: float = 0.0
    client: str = ""


def _user_name() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return f"uid {os.getuid()}"


def not_ready_line(config: Config, ready: Readiness) -> str:
    """The one line BackupPC's XferLOG shows when the keys are not there."""
    sock, user = config.agent.socket, _user_name()
    waited = f"gave up after {ready.waited_seconds:.0f} s"
    lines = {
        Cause.AGENT_SLOW: f"ssh-agent did not answer in time (agent socket {sock}: "
        f"{ready.reason}); {waited}: is the machine overloaded?",
        Cause.AGENT_DOWN: f"ssh-agent is not running (agent socket {sock}: {ready.reason}); "
        f"start 'backuppc-agent run', then run 'ssh-add' as {user}",
        Cause.UNUSABLE: f"SSH keys loaded but not usable (agent socket {sock}); {waited}: "
        f"{ready.reason}",
    }
    if ready.cause in lines:
        return lines[ready.cause]
    reason = _supervisors_reason(config, ready)
    return f"SSH keys not loaded; run 'ssh-add' as {user} (agent socket {sock}); {waited}: {reason}"


def _supervisors_reason(config: Config, ready: Readiness) -> str:
    """The supervisor's reason when it too sees no keys: it knows whether they expired."""
    from backuppc_agent import state as published  # noqa: PLC0415  (json: failure path only)

    snap = published.read(config.state.dir)
    if snap is None or ready.identities or snap.identities or not snap.agent_up:
        return ready.reason
    return snap.reason if snap.state is State.WAITING else ready.reason


def ensure_master_line(config: Config, client: str, host: str, restore: bool = False) -> str:
    """Find CLIENT's (restore) master alive or open it, probing a new backup master's access.

    Returns a status line; raises BackupPCAgentError.
    """
    path = sshconfig.master_path(config, client, restore)
    status = mux.check(path, session_timeout=config.hooks.connect_timeout_seconds)
    opened = False
    if not status.alive:
        from backuppc_agent.ssh import master  # noqa: PLC0415  (only to open one)

        _prefix_log_lines()
        status, opened = master.ensure_master(config, client, host, status, restore)
    if opened and not restore:
        from backuppc_agent.ssh import remote  # noqa: PLC0415  (only with a new master)

        try:
            remote.probe_access(config, client, host)
        except BackupPCAgentError as err:  # the metrics keep the last answer; the dump goes on
            logger.debug("%s", err)
    how = ("opened" if opened else "reused") + ("; restore key only" if restore else "")
    what = "restore master" if restore else "master"
    return f"ssh {what} for {client} is up (pid {status.pid}, {how})"


def _post_actions(config: Config, hook: str, client: str, result: str) -> list[str]:
    """Kill what a failed job left on the client, close its master(s) as configured."""
    from backuppc_agent.ssh import master, remote  # noqa: PLC0415  (off the pre hook's path)

    _prefix_log_lines()
    lines = []
    try:
        if result == "failed":
            lines.append(remote.kill_remote(config, client, None))
        if config.hooks.post_master == "close":
            lines.append(master.close_master(config, client).detail)
    except BackupPCAgentError as err:
        lines.append(f"cleanup after {client} failed: {err}")
    if hook == "post-restore" and config.agent.restore_key_set_up():
        try:
            closed = master.close_master(config, client, restore=True)
            lines.append(f"restore master of {client}: {closed.detail}")
        except BackupPCAgentError as err:
            lines.append(f"closing the restore master of {client} failed: {err}")
    return lines


@dataclass(frozen=True, slots=True)
class Seams:
    """A hook's side effects, real by default; unit tests pass fakes (clock, probe, master)."""

    wait: Callable[[AgentConfig, float, float], Readiness] = wait_ready  # (seconds, poll)
    ensure_master: Callable[[Config, str, str], str] = ensure_master_line  # (client, host)
    post_actions: Callable[[Config, str, str, str], list[str]] = _post_actions  # (hook, ...)


REAL = Seams()


def pre_hook(
    config: Config, hook: str, client: str, host: str, xfer_method: str = "", seams: Seams = REAL
) -> Outcome:
    """Gate a dump/restore/archive: ready within wait_seconds, then the master up."""
    skipped = _left_alone(config, hook, client, xfer_method, "ok", exitcodes.BAD_NAME)
    if skipped:
        return skipped
    restore = hook == "pre-restore" and config.agent.restore_key_set_up()
    ready = _gate(config, hook, client, host, seams, need_ready=not restore)
    if isinstance(ready, Outcome):
        return ready
    if restore:
        return _pre_restore(config, client, host, ready)
    line = f"SSH auth ready ({ready.reason}) after {ready.waited_seconds:.2f} s"
    if hook not in SSH_HOOKS:
        return Outcome("ok", exitcodes.OK, (line,), ready.waited_seconds, client)
    opened = partial(seams.ensure_master, config, client, host)
    return _with_master(opened, line, client, ready.waited_seconds)


def _left_alone(
    config: Config, hook: str, client: str, xfer_method: str, result: str, bad_name_exit: int
) -> Outcome | None:
    """The Outcome of a job whose transfer never runs ssh ($XferMethod), or of a refused $client.

    None (gate as usual) for rsync without reading a file; tar asks BackupPC's config.
    """
    if xfer_method in ("", "rsync") or hook not in SSH_HOOKS:
        return None
    from backuppc_agent.backuppc import confdir  # noqa: PLC0415  (only off the rsync path)

    try:
        names.check(client, "client")  # before it becomes a file name
    except BadNameError as err:
        return Outcome("bad-name", bad_name_exit, (str(err),))
    reader = confdir.ConfDir(config.backuppc.conf_dir, config.backuppc.top_dir)
    settings = reader.settings(client) if xfer_method == "tar" else {}  # only tar's command counts
    if confdir.uses_ssh(xfer_method, settings, restore=hook.endswith("-restore")):
        return None
    why = confdir.no_ssh_reason(xfer_method)
    line = f"{client}: {why} does not use ssh: not gated, no ssh master"
    return Outcome(result, exitcodes.OK, (line,), 0.0, client)


def _with_master(open_line: Callable[[], str], line: str, client: str, waited: float) -> Outcome:
    """ok with ``line`` and the master's status line, or the master's failure."""
    try:
        return Outcome("ok", exitcodes.OK, (line, open_line()), waited, client)
    except BackupPCAgentError as err:
        result = "bad-name" if isinstance(err, BadNameError) else "ssh-failed"
        return Outcome(result, err.exit_code, (str(err),), waited, client)


def _pre_restore(config: Config, client: str, host: str, checked: Readiness) -> Outcome:
    """With the restore key set up: that key loaded now (backup keys do not matter), its master."""
    if not readiness.restore_key_loaded(config.agent, checked.fingerprints):
        line = (
            "restores need the restore key, which is not loaded: run 'ssh-add -t 1h "
            f"{config.agent.restore_key}' as {_user_name()} (agent socket {config.agent.socket})"
        )
        return Outcome("not-ready", exitcodes.HOOK_NOT_READY, (line,), 0.0, client)
    opened = partial(ensure_master_line, config, client, host, restore=True)
    return _with_master(opened, "restore key loaded", client, 0.0)


def ping_gate(config: Config, host: str, seams: Seams = REAL) -> Outcome:
    """$Conf{PingCmd}: exit 0 with a ``time=`` BackupPC parses when ready; 1 ("no ping") if not."""
    ready = _gate(config, "ping", host, host, seams)
    if isinstance(ready, Outcome):
        return ready
    line = f"SSH auth ready for {host}: time={ready.waited_seconds * 1000:.3f} ms"
    return Outcome("ok", exitcodes.OK, (line,), ready.waited_seconds, host)


def _gate(
    config: Config, hook: str, client: str, host: str, seams: Seams, need_ready: bool = True
) -> Readiness | Outcome:
    """Refuse bad names, then wait for keys; the Readiness, or the Outcome that ends the hook.

    Without ``need_ready``, an agent that answers at once (with whatever keys) is enough.
    """
    try:
        if hook in SSH_HOOKS:
            sshconfig.control_path(config.mux.control_dir, client)
        elif hook != "ping":
            names.check(client, "client")
        if host or hook != "pre-archive":  # an archive connects nowhere
            names.check(host, "host")
    except BadNameError as err:
        return Outcome("bad-name", exitcodes.BAD_NAME, (str(err),))
    seconds = config.hooks.wait_seconds if need_ready else 0.0
    ready = seams.wait(config.agent, seconds, POLL_SECONDS)
    if ready.state is State.DOWN or (need_ready and ready.state is not State.READY):
        code = exitcodes.NOT_READY if hook == "ping" else exitcodes.HOOK_NOT_READY  # "no ping"
        line = not_ready_line(config, ready)
        return Outcome("not-ready", code, (line,), ready.waited_seconds, client)
    return ready


def post_hook(
    config: Config, hook: str, client: str, xfer_ok: str, xfer_method: str = "", seams: Seams = REAL
) -> Outcome:
    """After a job: clean up the client; exit 0 always (else a good backup counts as failed)."""
    result = "ok" if xfer_ok.strip() == "1" else "failed"
    if hook not in SSH_HOOKS:
        return Outcome(result, exitcodes.OK, (), 0.0, client)
    skipped = _left_alone(config, hook, client, xfer_method, result, exitcodes.OK)
    if skipped:
        return skipped
    try:
        sshconfig.control_path(config.mux.control_dir, client)
    except BadNameError as err:
        return Outcome("bad-name", exitcodes.OK, (str(err),))
    lines = seams.post_actions(config, hook, client, result)
    return Outcome(result, exitcodes.OK, tuple(lines), 0.0, client)


def record(config: Config, hook: str, outcome: Outcome) -> str | None:
    """Store the run in the hook-run store; a problem line (unsafe dir, store error) if not."""
    rec = events.HookRecord(
        time.time(), hook, outcome.client, outcome.result, outcome.waited_seconds
    )
    try:
        paths.ensure_private_dir(config.state.dir, "state")
        with events.EventStore(config.state.dir) as store:
            store.record(rec)
    except BackupPCAgentError as err:
        return str(err)
    return None


def _prefix_log_lines() -> None:
    """Warnings of the master code (a dead socket removed, ...) read like the hook's lines."""
    logging.basicConfig(level=logging.WARNING, format="backuppc-agent: %(message)s")
