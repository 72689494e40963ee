"""The argparse grammar of the hot commands (hook, status, wait): values, defaults, errors."""

from __future__ import annotations

import argparse
import contextlib
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backuppc_agent.backuppc import hooks
from backuppc_agent.cli import parser
from backuppc_agent.cli.main import _selected_command

TOKENS = [
    "hook", "status", "wait", "pre-dump", "post-dump", "ping", "bogus", "--client", "--host",
    "--xfer-ok", "--xfer-method", "--host-ip", "--type", "--share", "--config", "--debug",
    "--json", "--timeout",
    "--quiet", "-q", "--help", "-h", "--", "-", "1", "0.5", "-1", "nan", "inf", "1e3", "c1",
    "127.0.0.2", "--client=c2", "--host=-oProxyCommand=x", "--timeout=2", "--json=1", "--cl",
    "/etc/x.toml", "", "a\nb", "\x1b[2J",
]  # fmt: skip
HOOK_DEFAULTS = {
    "client": "", "host": "", "host_ip": "", "type": "", "xfer_ok": "", "share": "",
    "xfer_method": "",
}  # fmt: skip


def parse(argv: list[str]) -> tuple[argparse.Namespace | int, str]:
    sink = io.StringIO()
    with contextlib.redirect_stderr(sink), contextlib.redirect_stdout(io.StringIO()):
        parsed = parser.parse(argv, _selected_command(argv))
    return parsed, sink.getvalue()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["hook", "pre-dump", "--client", "c1", "--host", "root@127.0.0.2"],
            {"command": "hook", "hook": "pre-dump", **HOOK_DEFAULTS, "client": "c1",
             "host": "root@127.0.0.2"},
        ),
        (
            ["--config", "/etc/b.toml", "hook", "post-dump", "--client", "c", "--xfer-ok", "1"],
            {"command": "hook", "hook": "post-dump", **HOOK_DEFAULTS, "client": "c",
             "xfer_ok": "1", "config": "/etc/b.toml"},
        ),
        (
            ["hook", "--client=c", "ping", "--config=/x.toml", "--debug"],
            {"command": "hook", "hook": "ping", **HOOK_DEFAULTS, "client": "c",
             "config": "/x.toml", "debug": True},
        ),
        (["hook", "pre-dump", "--cl", "x"],
         {"command": "hook", "hook": "pre-dump", **HOOK_DEFAULTS, "client": "x"}),
        (["status", "--json"], {"command": "status", "json": True}),
        (["--debug", "status"], {"command": "status", "json": False, "debug": True}),
        (["wait", "--timeout", "2.5", "-q"], {"command": "wait", "timeout": 2.5, "quiet": True}),
        (["wait"], {"command": "wait", "timeout": None, "quiet": False}),
    ],
)  # fmt: skip
def test_common_command_lines_parse_into_a_namespace(
    argv: list[str], expected: dict[str, object]
) -> None:
    parsed, err = parse(argv)
    assert isinstance(parsed, argparse.Namespace), err
    assert vars(parsed) == {"config": None, "debug": False, **expected}


@pytest.mark.parametrize(
    "argv",
    [
        ["hook", "pre-dumpx"],
        ["hook", "pre-dump", "--client"],
        ["wait", "--timeout", "nan"],
        ["wait", "--timeout", "-1"],
        ["wait", "--timeout", "inf"],
        ["status", "--json=yes"],
        ["hook"],
        ["hook", "pre-dump", "--client", "c", "surplus"],
    ],
)
def test_bad_command_lines_exit_2_with_one_line(argv: list[str]) -> None:
    parsed, err = parse(argv)
    assert parsed == 2
    assert err.count("\n") == 1
    assert err.startswith("backuppc-agent")


def test_help_exits_0() -> None:
    assert parse(["status", "--help"])[0] == 0


def test_the_hook_names_are_the_hooks_module_names() -> None:
    for name in hooks.HOOKS:
        parsed, _ = parse(["hook", name])
        assert isinstance(parsed, argparse.Namespace)
        assert parsed.hook == name


@given(st.lists(st.sampled_from(TOKENS), max_size=8))
def test_any_argv_parses_or_fails_in_one_printable_line(argv: list[str]) -> None:
    parsed, err = parse(argv)
    if isinstance(parsed, int):
        assert parsed in (0, 2)
        if parsed == 2:
            assert err.count("\n") == 1, err
            assert err[:-1].isprintable(), err
    else:
        assert parsed.command in ("hook", "status", "wait")


def test_the_manual_parser_has_every_command_with_its_own_options() -> None:
    manual = parser.build_manual_parser()
    [sub] = [a for a in manual._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(sub.choices) == set(parser.COMMANDS)
    args = manual.parse_args(["doctor", "--procfs", "/x"])
    assert (args.command, args.procfs) == ("doctor", "/x")
    assert manual.parse_args(["hook", "pre-dump"]).hook == "pre-dump"
