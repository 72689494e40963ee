"""Fuzz the whole ``hook`` command line through main(), in-process.

Any argv after ``--config C hook`` gives a documented exit code, prints only
one-line messages (every stdout line prefixed for BackupPC's XferLOG, at most
one line on stderr), never a traceback; and whatever ssh runs (a recording
stand-in) only ever gets a valid host after "--". Both parsers are exercised:
the fast path for what it is sure about, argparse for the rest.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from backuppc_agent import names
from backuppc_agent.cli import main
from tests.beds import Bed, make_bed
from tests.hostile_support import recording_program, runs_of

HOOK_CODES = {0, 1, 2, 5, 6, 7}
HOOKS = ["pre-dump", "pre-restore", "pre-archive", "post-dump", "post-restore", "post-archive",
         "ping"]  # fmt: skip
OPTIONS = ["--client", "--host", "--host-ip", "--type", "--xfer-ok", "--share"]
#: options that print help or a version, or turn tracebacks on: not errors, left out
_NOT_FUZZED = ("--help", "--version", "--debug", "--config")


@pytest.fixture(scope="module")
def bed() -> Iterator[Bed]:
    """A config with no agent (hooks are never ready), a recording ssh, short paths."""
    root = Path(tempfile.mkdtemp(prefix="bpa-fh-"))
    ssh = recording_program(root / "bin")
    hooks = {"wait_seconds": 0, "connect_timeout_seconds": 1}
    try:
        yield make_bed(root, root / "agent.socket", ssh=ssh, hooks=hooks)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def ssh_of(bed: Bed) -> Path:
    assert bed.ssh is not None
    return bed.ssh


def _fuzzable(word: str) -> bool:
    """False for -h..., and for a prefix argparse would expand to an option we leave out."""
    if word.startswith("-h") or word == "--":
        return word == "--"
    stem = word.split("=", 1)[0]
    return not (len(stem) > 2 and any(option.startswith(stem) for option in _NOT_FUZZED))


hostile = st.sampled_from(
    ["web01", "root@127.0.0.9", "../x", "-oProxyCommand=x", "-oProxyCommand=touch /tmp/x", "",
     "a b", "a\nb", "\x1b[2J", "%h", "\udcff", "x" * 300, "1", "0", "-", "--", "--bogus", "-x",
     "--clie", "--cl=web01"]
)  # fmt: skip
text = st.text(alphabet=st.characters(exclude_characters="\0"), max_size=30)
values = st.one_of(hostile, text)
tokens = st.one_of(
    st.sampled_from(OPTIONS),
    st.tuples(st.sampled_from(OPTIONS), values).map(lambda pair: f"{pair[0]}={pair[1]}"),
    values,
).filter(_fuzzable)
argvs = st.tuples(st.one_of(st.sampled_from(HOOKS), values), st.lists(tokens, max_size=8))


def run_main(bed: Bed, argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main.main(["--config", str(bed.config), "hook", *argv])
    return code, out.getvalue(), err.getvalue()


@given(argvs)
@example(("pre-dump", ["--client", "web01", "--host", "-oProxyCommand=x"]))
@example(("pre-dump", ["--client", "web\udcff01", "--host", "root@x"]))
@example(("post-dump", ["--client", "web01", "--xfer-ok", "0", "--host", "../x"]))
@example(("post-dump", ["--client=../../x", "--xfer-ok=0"]))
@example(("ping", ["--host", "a\nb"]))
@example(("pre-dump", ["x\ny"]))
@example(("pre-dump", ["--client", "web01", "--client", "web02", "--share", "/etc;rm -rf /"]))
def test_any_hook_argv_gives_an_exit_code_and_one_line_messages(
    bed: Bed, argv: tuple[str, list[str]]
) -> None:
    hook, rest = argv
    before = len(runs_of(ssh_of(bed)))
    code, out, err = run_main(bed, [hook, *rest])
    assert code in HOOK_CODES, (code, out, err)
    for line in out.splitlines():
        assert line.startswith("backuppc-agent: ")
        assert line.isprintable(), line
    assert out.endswith("\n") or not out
    assert err.count("\n") <= 1, err
    assert err.isprintable() or err[:-1].isprintable()
    assert "Traceback" not in err
    for run in runs_of(ssh_of(bed))[before:]:
        host = run[run.index("--") + 1]
        assert names.problem(host) is None, run
