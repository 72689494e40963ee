"""``backuppc-agent status``: readiness from a live probe plus the published state."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from backuppc_agent import exitcodes, names, state
from backuppc_agent.agent import certs, readiness
from backuppc_agent.agent.probe import ProbeResult, probe
from backuppc_agent.cli.common import load_config_for_caller
from backuppc_agent.config import Config
from backuppc_agent.state import Snapshot, State
from backuppc_agent.unixsock import Failure

#: ``probe.probe``: path, timeout, the uid expected to serve it (None: ours).
UidProbe = Callable[[Path, float, int | None], ProbeResult]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")


@dataclass(frozen=True, slots=True)
class Status:
    """What status reports: the live verdict, with history from the published state."""

    verdict: readiness.Readiness
    socket: str
    restore_key_path: str
    #: the restore key's fingerprint once it is set up, else None
    restore_key: str | None
    since: float | None = None
    supervisor_pid: int | None = None
    agent_restarts: int | None = None

    @property
    def restores(self) -> str:
        """ "armed" (the restore key is loaded), "disarmed", or "not-set-up"."""
        if self.restore_key is None:
            return "not-set-up"
        return "armed" if self.restore_key in self.verdict.fingerprints else "disarmed"

    @property
    def agent_pid(self) -> int | None:
        return self.verdict.probe.peer_pid if self.verdict.probe.answered else None

    def to_json(self) -> dict[str, object]:
        """The documented JSON shape."""
        verdict = self.verdict
        return {
            "state": verdict.state.value,
            "ready": verdict.state is State.READY,
            "reason": verdict.reason,
            "socket": self.socket,
            "agent_pid": self.agent_pid,
            "identities": verdict.identities,
            "fingerprints": list(verdict.fingerprints),
            "since": self.since,
            "supervisor_pid": self.supervisor_pid,
            "agent_restarts": self.agent_restarts,
            "restores": self.restores,
            "expires": verdict.expires,
            "expiries": [
                {"fingerprint": fp, "expires": when, "source": source}
                for fp, when, source in verdict.expiries
            ],
        }


def probe_listener(
    config: Config, trusted_uid: int | None, probe_agent: UidProbe = probe
) -> tuple[ProbeResult, int | None]:
    """Probe the agent socket, expecting ``trusted_uid`` (the BackupPC user) to serve it.

    Returns the probe and ``trusted_uid`` if that user serves the socket, else None (ours).
    A listener of another uid is probed again as ours: our own agent answers, and anyone
    else's fails as foreign to us, as it always did.
    """
    path, seconds = config.agent.socket, config.agent.probe_timeout_seconds
    if trusted_uid is None or trusted_uid == os.getuid():
        return probe_agent(path, seconds, None), None
    result = probe_agent(path, seconds, trusted_uid)
    if result.status is Failure.FOREIGN:
        return probe_agent(path, seconds, None), None
    return result, trusted_uid if result.peer_uid == trusted_uid else None


def gather(config: Config, result: ProbeResult) -> Status:
    """Judge ``result`` (a probe of the agent socket) and merge in what was published."""
    published = state.read(config.state.dir)
    lifetimes = published.expiries if published else ()
    kept = [item for item in lifetimes if item[2] == certs.LIFETIME]
    timeout = config.agent.probe_timeout_seconds
    ready = readiness.check_probe(config.agent, result, timeout, lifetimes=kept)
    restore_key = readiness.restore_key_fingerprint(config.agent)
    status = Status(ready, str(config.agent.socket), str(config.agent.restore_key), restore_key)
    if published is None:
        return status
    return _with_history(status, published, state.supervisor_running(config.state.dir))


def _with_history(status: Status, published: Snapshot, supervised: bool) -> Status:
    """``status`` with since, supervisor pid (only while its lock is held) and restarts."""
    ready = status.verdict
    waiting = ready.state is State.WAITING and published.state is State.WAITING
    if waiting and published.fingerprints == ready.fingerprints:
        # the supervisor knows more (keys that expired)
        ready = dataclasses.replace(ready, reason=published.reason)
    return dataclasses.replace(
        status,
        verdict=ready,
        since=published.since if published.state is ready.state else None,
        supervisor_pid=published.supervisor_pid if supervised else None,
        agent_restarts=published.agent_restarts,
    )


def render_text(status: Status, now: float) -> str:
    """Human-readable status, one fact per line."""
    verdict = status.verdict
    identities = verdict.probe.identities
    lines = [
        f"state:       {verdict.state.value} ({verdict.reason})",
        f"socket:      {status.socket}",
        f"agent pid:   {status.agent_pid if status.agent_pid else '-'}",
        f"identities:  {len(identities)}",
    ]
    ends = certs.by_fingerprint(verdict.expiries)
    lines += [
        f"  {fp} {ident.key_type} {names.visible(ident.comment, 200)}{_ends(ends.get(fp), now)}"
        for ident, fp in zip(identities[:50], verdict.fingerprints[:50], strict=True)
    ]
    if len(identities) > 50:
        lines.append(f"  ... and {len(identities) - 50} more (use --json)")
    if verdict.expires is not None:
        lines.append(f"expires:     {_when(verdict.expires, now)}")
    lines.append(f"since:       {_since(status.since, now)}")
    supervisor = (
        f"pid {status.supervisor_pid}" if status.supervisor_pid else "supervisor not running"
    )
    lines.append(f"supervisor:  {supervisor}")
    if status.agent_restarts:
        lines.append(f"restarts:    {status.agent_restarts} (keys were lost each time)")
    lines.append(f"restores:    {_restores(status, ends, now)}")
    return "\n".join(lines) + "\n"


def _restores(status: Status, ends: Mapping[str, tuple[float, str]], now: float) -> str:
    """Whether restores can run now, and until when as far as anything tells."""
    if status.restores == "not-set-up":
        return "use the backup key (no restore key: see backuppc-agent client-setup)"
    if status.restores == "disarmed":
        return f"not armed: run 'ssh-add -t 1h {status.restore_key_path}' to allow them"
    end = ends.get(status.restore_key or "")
    until = _when(end[0], now) if end else "its ssh-add -t lifetime ends (the agent does not say)"
    return f"armed: the restore key is loaded, until {until}"


def _since(since: float | None, now: float) -> str:
    if since is None:
        return "unknown"
    return f"{certs.local_stamp(since)} ({_ago(now - since)} ago)"


def _ends(end: tuple[float, str] | None, now: float) -> str:
    if end is None:
        return ""
    when, source = end
    return f" [{source} expires {_when(when, now)}]"


def _when(when: float, now: float) -> str:
    stamp = certs.local_stamp(when)
    return f"{stamp} (in {_ago(when - now)})" if when > now else f"{stamp} (passed)"


def _ago(seconds: float) -> str:
    whole = max(0, int(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m {whole % 60}s"
    if whole < 86400:
        return f"{whole // 3600}h {whole % 3600 // 60}m"
    return f"{whole // 86400}d {whole % 86400 // 3600}h"


def run(args: argparse.Namespace) -> int:
    """Print the status; exit 0 when ready, 1 otherwise."""
    config, owner_uid, owner = load_config_for_caller(args)
    result, uid = probe_listener(config, owner_uid)
    owner = owner if uid is not None else None
    status = gather(config, result)
    if args.json:
        shown = status.to_json() | ({"user": owner} if owner else {})
        sys.stdout.write(json.dumps(shown, sort_keys=True) + "\n")
    else:
        if owner:
            sys.stdout.write(f"agent of:    {owner} (uid {owner_uid})\n")
        sys.stdout.write(render_text(status, time.time()))
    return exitcodes.OK if status.verdict.state is State.READY else exitcodes.NOT_READY
