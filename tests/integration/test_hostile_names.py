"""Names from BackupPC are refused before they reach a path or an argv: through the real CLI.

Every command runs as a subprocess with argv the way BackupPC builds it (one
word per option value). ``[mux] ssh`` is a stand-in that records its argv: it
must never run. After each refusal the test tree must hold nothing new except
the hook-run store (a refused hook run is recorded as ``bad-name``).
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.beds import Bed, make_bed
from tests.helpers import private_dir, stored_summary
from tests.hostile_support import recording_program, runs_of, tree_snapshot

MARKER = Path(tempfile.gettempdir()) / "bpa-hostile-names-pwned"

HOSTILE = {
    "traversal": "../../etc/cron.d/x",
    "slash": "a/b",
    "backslash": "a\\b",
    "dotdot": "..",
    "dot": ".",
    "empty": "",
    "option": f"-oProxyCommand=touch {MARKER}",
    "option-word": f"-oProxyCommand=/bin/touch${{IFS}}{MARKER}",
    "dash": "-",
    "space": "web 01",
    "tab": "web\t01",
    "newline": "web01\nbackuppc-agent: SSH auth ready",
    "carriage-return": "web01\rX",
    "escape": "web\x1b[2J01",
    "unicode-separator": "web\u202801",
    "bidi-override": "web\u202e10",
    "not-utf8": "web\udcff01",  # the byte 0xff, as Python decodes a non-UTF-8 argv word
    "percent-token": "%h%p",
    "long": "w" * 300,
}
#: what BackupPC passes as the client ($client) when the host ($host) is the hostile one
GOOD_CLIENT = "web01"
GOOD_HOST = "root@127.0.0.9"
#: argparse reads a word that starts with '-' (and has no space) as an option: a usage
#: error (exit 2) before the hook runs, so nothing is recorded
OPTION_LIKE = frozenset({"option-word"})
#: an empty host means "not given": the client's name is the host (documented default)
NOT_A_HOST = frozenset({"empty"})


STORE = {"state", *(f"state/events.sqlite3{tail}" for tail in ("", "-wal", "-shm"))}


@pytest.fixture
def bed() -> Iterator[Bed]:
    """A private tree, a config pointing into it, and a recording ssh; no agent."""
    root = Path(tempfile.mkdtemp(prefix="bpa-hn-"))
    agent = private_dir(root / "agent") / "agent.socket"
    ssh = recording_program(root / "bin")
    try:
        yield make_bed(root, agent, ssh=ssh, hooks={"wait_seconds": 0})
    finally:
        subprocess.run(["rm", "-rf", str(root)], check=False)
        MARKER.unlink(missing_ok=True)


@pytest.fixture
def before(bed: Bed) -> set[str]:
    """Every path in the bed's tree before the test ran a command."""
    return tree_snapshot(bed.root)


def bad_name_runs(bed: Bed) -> dict[tuple[str, str], int]:
    if not bed.state_dir.exists():
        return {}
    return stored_summary(bed.state_dir).runs


def assert_refused(
    bed: Bed, before: set[str], done: subprocess.CompletedProcess[str], code: int, out: str
) -> None:
    """Refused with one line on ``out``, nothing ran, nothing new on disk."""
    text = done.stdout if out == "stdout" else done.stderr
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert text.count("\n") == 1, text
    assert text.startswith("backuppc-agent")
    assert "Traceback" not in done.stdout + done.stderr
    assert bed.ssh is not None
    assert runs_of(bed.ssh) == []
    assert not MARKER.exists()
    assert tree_snapshot(bed.root) - before - STORE == set()


@pytest.mark.parametrize("hook", ["pre-dump", "pre-restore"])
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_pre_hook_refuses_a_hostile_client_or_host(
    bed: Bed, before: set[str], hook: str, name: str
) -> None:
    value = HOSTILE[name]
    runs = [bed.run("hook", hook, "--client", value, "--host", GOOD_HOST)]
    if name not in NOT_A_HOST:
        runs.append(bed.run("hook", hook, "--client", GOOD_CLIENT, "--host", value))
    for done in runs:
        if name in OPTION_LIKE:
            assert_refused(bed, before, done, 2, "stderr")
            continue
        assert_refused(bed, before, done, 7, "stdout")
        assert "refusing" in done.stdout
    if name not in OPTION_LIKE:
        assert bad_name_runs(bed) == {(hook, "bad-name"): len(runs)}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_archive_ping_and_post_hooks_refuse_hostile_names(
    bed: Bed, before: set[str], name: str
) -> None:
    value = HOSTILE[name]
    runs = [
        (bed.run("hook", "pre-archive", "--client", value), 7, "stdout"),
        (bed.run("hook", "ping", "--host", value), 7, "stdout"),
        # a post hook never fails a backup: exit 0, one line, no ssh
        (bed.run("hook", "post-dump", "--client", value, "--xfer-ok", "0"), 0, "stdout"),
        (bed.run("hook", "post-restore", "--client", value, "--xfer-ok", "1"), 0, "stdout"),
    ]
    for done, code, out in runs:
        if name in OPTION_LIKE:
            assert_refused(bed, before, done, 2, "stderr")
        else:
            assert_refused(bed, before, done, code, out)
            assert "refusing" in done.stdout


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_master_commands_refuse_hostile_names(bed: Bed, before: set[str], name: str) -> None:
    value = HOSTILE[name]
    runs = [
        bed.run("master", "check", "--", value),
        bed.run("master", "open", "--host", GOOD_HOST, "--", value),
        bed.run("master", "close", "--", value),
        bed.run("master", "kill-remote", "--", value),
        # rsync_bpc's argv: master ssh CLIENT [options] $hostIP rsync --server ...
        bed.run("master", "ssh", "--", value, "-l", "root", "127.0.0.9", "rsync", "--server"),
        bed.run("master", "ssh", GOOD_CLIENT, "-l", "root", value, "rsync", "--server", "."),
    ]
    if name not in NOT_A_HOST:
        runs.append(bed.run("master", "open", f"--host={value}", GOOD_CLIENT))
        runs.append(bed.run("master", "kill-remote", f"--host={value}", GOOD_CLIENT))
    for done in runs:
        assert_refused(bed, before, done, 7, "stderr")
        assert "refusing" in done.stderr
