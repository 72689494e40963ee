"""The hooks' decisions, driven through their seams: a fake clock, a scripted agent, a fake
master. Minutes of BackupPC time run in milliseconds, with no root and no subprocess."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from backuppc_agent import config as config_mod
from backuppc_agent import exitcodes
from backuppc_agent.agent.probe import Probed, ProbeResult
from backuppc_agent.agent.protocol import Identity, encode_string
from backuppc_agent.agent.readiness import wait_ready
from backuppc_agent.backuppc import hooks
from backuppc_agent.config import Config
from backuppc_agent.errors import BackupPCAgentError
from backuppc_agent.unixsock import Failure
from tests.unit.fakes import FakeAgent, FakeClock

KEY = encode_string(b"ssh-ed25519") + encode_string(b"k" * 32)
EMPTY = ProbeResult(Probed.ANSWERED, (), 1, 0)
LOADED = ProbeResult(Probed.ANSWERED, (Identity(KEY, "k"),), 1, 0)
MISSING = ProbeResult(Failure.MISSING, detail="no socket at /s")
SLOW = ProbeResult(Failure.TIMEOUT, detail="no answer within 2 s")
WAIT_SECONDS = 30.0


class MasterRefusedError(BackupPCAgentError):
    exit_code = exitcodes.HOOK_SSH_FAILED


class Bed:
    """One hook run's world: the config, the clock, the agent, what the master was asked."""

    def __init__(self, script: list[tuple[float, ProbeResult]], master_fails: bool = False) -> None:
        self.config: Config = config_mod.from_mapping(
            {"hooks": {"wait_seconds": WAIT_SECONDS}}, "test", Path("/home/t")
        )
        self.clock = FakeClock()
        self.agent = FakeAgent(self.clock, script)
        self.masters: list[tuple[str, str]] = []
        self.cleanups: list[tuple[str, str]] = []
        self.master_fails = master_fails
        wait = functools.partial(
            wait_ready,
            clock=self.clock,
            sleep=self.clock.sleep,
            probe_agent=self.agent,
            sign_agent=self.agent.sign,
        )
        self.seams = hooks.Seams(wait, self.ensure_master, self.post_actions)

    def ensure_master(self, config: Config, client: str, host: str) -> str:
        self.masters.append((client, host))
        if self.master_fails:
            raise MasterRefusedError(f"ssh master for {client} could not be opened")
        return f"ssh master for {client} is up (pid 42, opened)"

    def post_actions(self, config: Config, hook: str, client: str, result: str) -> list[str]:
        self.cleanups.append((client, result))
        return [f"cleaned up {client}"]

    def pre(self, hook: str = "pre-dump", client: str = "web01") -> hooks.Outcome:
        return hooks.pre_hook(self.config, hook, client, f"root@{client}", "", self.seams)


def test_a_pre_dump_waits_for_the_keys_then_brings_the_master_up() -> None:
    bed = Bed([(0, EMPTY), (12.5, LOADED)])
    outcome = bed.pre()
    assert (outcome.result, outcome.exit_code) == ("ok", exitcodes.OK)
    assert outcome.waited_seconds == pytest.approx(12.5, abs=0.2)
    assert outcome.lines[0].startswith("SSH auth ready (1 key loaded) after 12.")
    assert outcome.lines[1] == "ssh master for web01 is up (pid 42, opened)"
    assert bed.masters == [("web01", "root@web01")]


def test_a_pre_dump_gives_up_at_wait_seconds_and_never_touches_the_master() -> None:
    bed = Bed([(0, EMPTY)])
    outcome = bed.pre()
    assert (outcome.result, outcome.exit_code) == ("not-ready", exitcodes.HOOK_NOT_READY)
    assert outcome.waited_seconds == pytest.approx(WAIT_SECONDS)
    assert sum(bed.clock.sleeps) == pytest.approx(WAIT_SECONDS)
    assert "SSH keys not loaded; run 'ssh-add'" in outcome.lines[0]
    assert bed.masters == []


@pytest.mark.parametrize(
    ("probe", "says"),
    [(MISSING, "ssh-agent is not running"), (SLOW, "ssh-agent did not answer in time")],
)
def test_the_not_ready_line_tells_a_dead_agent_from_a_slow_one(
    probe: ProbeResult, says: str
) -> None:
    outcome = Bed([(0, probe)]).pre()
    assert outcome.exit_code == exitcodes.HOOK_NOT_READY
    assert outcome.lines[0].startswith(says)


def test_a_master_that_cannot_be_opened_fails_the_job_with_its_own_code() -> None:
    bed = Bed([(0, LOADED)], master_fails=True)
    outcome = bed.pre()
    assert (outcome.result, outcome.exit_code) == ("ssh-failed", exitcodes.HOOK_SSH_FAILED)
    assert outcome.lines == ("ssh master for web01 could not be opened",)


def test_a_bad_client_name_is_refused_before_any_probe() -> None:
    bed = Bed([(0, LOADED)])
    outcome = bed.pre(client="../etc")
    assert (outcome.result, outcome.exit_code) == ("bad-name", exitcodes.BAD_NAME)
    assert bed.agent.timeouts == []
    assert bed.masters == []


def test_a_pre_archive_gates_on_keys_but_opens_no_master() -> None:
    bed = Bed([(0, LOADED)])
    outcome = bed.pre(hook="pre-archive")
    assert outcome.exit_code == exitcodes.OK
    assert bed.masters == []


def test_the_ping_gate_reports_a_time_when_ready_and_no_ping_otherwise() -> None:
    ready = Bed([(0, EMPTY), (0.4, LOADED)])
    outcome = hooks.ping_gate(ready.config, "web01", ready.seams)
    assert outcome.exit_code == exitcodes.OK
    assert outcome.lines[0].startswith("SSH auth ready for web01: time=4")
    empty = Bed([(0, EMPTY)])
    assert hooks.ping_gate(empty.config, "web01", empty.seams).exit_code == exitcodes.NOT_READY


@pytest.mark.parametrize(("xfer_ok", "result"), [("1", "ok"), ("0", "failed"), ("", "failed")])
def test_a_post_dump_cleans_up_and_never_fails_the_backup(xfer_ok: str, result: str) -> None:
    bed = Bed([(0, EMPTY)])
    outcome = hooks.post_hook(bed.config, "post-dump", "web01", xfer_ok, "", bed.seams)
    assert (outcome.result, outcome.exit_code) == (result, exitcodes.OK)
    assert bed.cleanups == [("web01", result)]
    assert bed.agent.timeouts == []  # a post hook never waits for keys


def test_a_post_hook_with_a_bad_name_or_no_ssh_does_nothing_and_exits_0() -> None:
    bed = Bed([(0, EMPTY)])
    bad = hooks.post_hook(bed.config, "post-dump", "-oProxyCommand=x", "1", "", bed.seams)
    archive = hooks.post_hook(bed.config, "post-archive", "web01", "1", "", bed.seams)
    assert (bad.result, bad.exit_code) == ("bad-name", exitcodes.OK)
    assert (archive.result, archive.exit_code) == ("ok", exitcodes.OK)
    assert bed.cleanups == []
