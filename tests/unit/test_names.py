"""Names from BackupPC are refused before they reach a path or an argv."""

from __future__ import annotations

import pytest

from backuppc_agent import exitcodes, names
from backuppc_agent.errors import BadNameError


@pytest.mark.parametrize(
    "name",
    ["web01", "web01.example.org", "127.0.0.2", "db_backup-2", "root@host", "fe80::1", "x" * 253],
)
def test_ordinary_host_names_pass(name: str) -> None:
    assert names.check(name, "client") == name


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "empty"),
        ("a/b", "'/'"),
        ("../etc", "'/'"),
        ("..", "'.' or '..'"),
        (".", "'.' or '..'"),
        ("-oProxyCommand=touch /tmp/x", "starts with '-'"),
        ("a b", "whitespace"),
        ("a\tb", "whitespace"),
        ("a\nb", "whitespace"),
        ("a\x1bb", "control character"),
        ("a\x00b", "control character"),
        ("%h", "'%'"),
        ("a\\b", "'\\'"),
        ("x" * 254, "254 characters"),
    ],
)
def test_hostile_names_are_refused_with_the_reason(name: str, why: str) -> None:
    with pytest.raises(BadNameError) as info:
        names.check(name, "client")
    message = str(info.value)
    assert why in message
    assert "\n" not in message
    assert info.value.exit_code == exitcodes.BAD_NAME


def test_a_smaller_bound_applies_when_given() -> None:
    assert names.problem("abcdef", max_chars=5) == "is 6 characters long (at most 5)"


def test_printable_escapes_and_truncates() -> None:
    shown = names.printable("\x1b[31m" + "y" * 100)
    assert "\x1b" not in shown
    assert shown.endswith("...'")
