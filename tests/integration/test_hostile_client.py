"""A client that answers the kill session with garbage: the post hook still exits 0.

After a failed transfer the post hook runs a kill script on the client and
reads its "killed N" line. That output comes from the client, so it is
untrusted: ``[mux] ssh`` is a stand-in that prints a hostile answer.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from backuppc_agent import exitcodes
from tests.beds import Bed, make_bed
from tests.helpers import cli, private_dir, stored_summary

ANSWERS = {
    "no-count": b"killed \n",
    "superscript-digit": "killed \u00b2\n".encode(),
    "huge-count": b"killed 99999999999999999999999999999999\n",
    "escape-sequences": b"\x1b[2J\x1b]0;owned\x07killed 3\r\nkilled x\n",
    "binary": bytes(range(256)) * 4,
    "endless-line": b"A" * 300_000,
}


@pytest.fixture(params=sorted(ANSWERS))
def bed(request: pytest.FixtureRequest) -> Iterator[Bed]:
    """A bed whose ssh swallows its input and answers ANSWERS[param]."""
    root = Path(tempfile.mkdtemp(prefix="bpa-hc-"))
    answer = root / "answer"
    answer.write_bytes(ANSWERS[request.param])
    ssh = private_dir(root / "bin") / "ssh"
    ssh.write_text(f"#!/bin/sh\ncat > /dev/null\ncat '{answer}'\nexit 0\n")
    ssh.chmod(0o700)
    try:
        yield make_bed(root, root / "agent.socket", ssh=ssh, hooks={"connect_timeout_seconds": 2})
    finally:
        subprocess.run(["rm", "-rf", str(root)], check=False)


def test_a_post_hook_survives_any_answer_from_the_client(bed: Bed) -> None:
    done = cli(
        "hook", "post-dump", "--client", "web01", "--host", "root@127.0.0.9", "--xfer-ok", "0",
        config=bed.config,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("backuppc-agent: ")
    assert lines[0].isprintable()
    assert len(lines[0]) < 1000
    assert stored_summary(bed.state_dir).runs == {("post-dump", "failed"): 1}


def test_kill_remote_reports_a_bad_answer_in_one_line(bed: Bed) -> None:
    done = cli("master", "kill-remote", "--host", "root@127.0.0.9", "web01", config=bed.config)
    assert done.returncode in (0, exitcodes.FAILED), done.stdout + done.stderr
    out = done.stdout if done.returncode == 0 else done.stderr
    assert out.count("\n") == 1
    assert out[:-1].isprintable()
    assert "internal error" not in done.stderr
