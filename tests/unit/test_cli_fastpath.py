"""The fast parser of hook/status/wait agrees with argparse, or defers to it."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backuppc_agent.cli import fastpath, parser
from backuppc_agent.cli.main import _selected_command

TOKENS = [
    "hook", "status", "wait", "pre-dump", "post-dump", "ping", "bogus", "--client", "--host",
    "--xfer-ok", "--host-ip", "--type", "--share", "--config", "--debug", "--json", "--timeout",
    "--quiet", "-q", "--help", "-h", "--", "-", "1", "0.5", "-1", "nan", "inf", "1e3", "c1",
    "127.0.0.2", "--client=c2", "--host=-oProxyCommand=x", "--timeout=2", "--json=1", "--cl",
    "/etc/x.toml", "",
]  # fmt: skip


def argparse_result(argv: list[str]) -> dict[str, object] | None:
    sink = io.StringIO()
    with contextlib.redirect_stderr(sink), contextlib.redirect_stdout(sink):
        parsed = parser.parse(argv, _selected_command(argv))
    if isinstance(parsed, int):
        return None
    values = vars(parsed)
    values.setdefault("config", None)
    values.setdefault("debug", False)
    return values


@pytest.mark.parametrize(
    "argv",
    [
        ["hook", "pre-dump", "--client", "c1", "--host", "root@127.0.0.2"],
        ["--config", "/etc/b.toml", "hook", "post-dump", "--client", "c", "--xfer-ok", "1"],
        ["hook", "--client=c", "ping", "--config=/x.toml", "--debug"],
        ["status", "--json"],
        ["--debug", "status"],
        ["wait", "--timeout", "2.5", "-q"],
        ["wait"],
    ],
)
def test_common_command_lines_take_the_fast_path_and_match_argparse(argv: list[str]) -> None:
    fast = fastpath.parse(argv)
    assert fast is not None
    assert vars(fast) == argparse_result(argv)


@pytest.mark.parametrize(
    "argv",
    [
        ["hook", "pre-dumpx"],
        ["hook", "pre-dump", "--client"],
        ["hook", "pre-dump", "--cl", "x"],
        ["status", "--help"],
        ["wait", "--timeout", "nan"],
        ["wait", "--timeout", "-1"],
        ["status", "--json=yes"],
        ["hook"],
    ],
)
def test_anything_unusual_is_left_to_argparse(argv: list[str]) -> None:
    assert fastpath.parse(argv) is None


@given(st.lists(st.sampled_from(TOKENS), max_size=8))
def test_any_argv_fast_parse_agrees_with_argparse_or_defers(argv: list[str]) -> None:
    fast = fastpath.parse(argv)
    if fast is not None:
        assert vars(fast) == argparse_result(argv)


def test_a_hook_does_not_import_argparse() -> None:
    code = (
        "import sys; from backuppc_agent.cli import main; "
        "main.main(['hook', 'pre-dump', '--client', 'c', '--host', 'h']); "
        "print('argparse' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", "BACKUPPC_AGENT_CONFIG": "/nonexistent"},
    )
    assert out.stdout.strip().splitlines()[-1] == "False", out.stderr
