"""Command-line routing: only the chosen module is loaded; usage errors exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from backuppc_agent import exitcodes
from backuppc_agent.cli import main
from backuppc_agent.errors import BackupPCAgentError


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["status", "--json"], "status"),
        (["--config", "status", "wait"], "wait"),
        (["--debug", "hook", "pre-dump"], "hook"),
        (["--config=/x", "env"], "env"),
        (["bogus", "status"], None),
        ([], None),
    ],
)
def test_the_subcommand_is_found_without_parsing(argv: list[str], expected: str | None) -> None:
    assert main._selected_command(argv) == expected


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main.main([]) == exitcodes.USAGE
    assert main.main(["frobnicate"]) == exitcodes.USAGE
    assert main.main(["wait", "--timeout", "soon"]) == exitcodes.USAGE
    assert "not a number of seconds" in capsys.readouterr().err


def test_config_errors_print_one_line_per_problem(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "c.toml"
    bad.write_text('[agent]\npoll_seconds = "x"\nbogus = 1\n')
    assert main.main(["--config", str(bad), "config", "check"]) == exitcodes.USAGE
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        f"backuppc-agent: {bad}: agent.bogus: unknown key",
        f"backuppc-agent: {bad}: agent.poll_seconds: expected a number, got str 'x'",
    ]


def test_every_exit_code_means_one_thing_and_a_failure_is_not_not_ready() -> None:
    codes = {name: value for name, value in vars(exitcodes).items() if name.isupper()}
    assert len(set(codes.values())) == len(codes)
    assert BackupPCAgentError.exit_code == exitcodes.FAILED != exitcodes.NOT_READY


def test_a_failure_without_a_code_of_its_own_exits_failed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-such-key"
    assert main.main(["passphrase", "set", str(missing)]) == exitcodes.FAILED
    assert capsys.readouterr().err == f"backuppc-agent: {missing}: no such key file\n"
