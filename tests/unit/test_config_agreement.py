"""Every command that loads the config reaches the same verdict on its paths.

A path ssh would misread (whitespace, quotes, backslash, '%', '$', '#', control
characters) or a socket path too long to bind is refused at load, naming the
key: ``config check``, a pre-dump hook, ``master ssh``, ``ssh-config`` and
``backuppc-config`` all exit 2 with the same line. Before, ``config check``
passed a known_hosts path that ``ssh-config`` refused and the hooks handed to ssh.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import get_args, get_origin, get_type_hints

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backuppc_agent import config as config_mod
from backuppc_agent import exitcodes
from backuppc_agent.cli import main
from tests import helpers

COMMANDS = {
    "config check": ["config", "check"],
    "pre-dump hook": ["hook", "pre-dump", "--client", "c1", "--host", "root@127.0.0.9"],
    "master ssh": ["master", "ssh", "c1", "root@127.0.0.9", "true"],
    "ssh-config": ["ssh-config"],
    "backuppc-config": ["backuppc-config", "--program", "/usr/bin/backuppc-agent"],
}
#: What commands that run nothing (no probe, no ssh) print for any config.
PURE = ("config check", "ssh-config", "backuppc-config")
PATH_KEYS = [
    (section, key, "path_list" if get_origin(hint) is tuple else "path")
    for section, cls in config_mod.sections().items()
    for key, hint in get_type_hints(cls).items()
    if Path in (hint, *get_args(hint))
]
BAD_PATHS = [
    "/srv/with space", "/srv/tab\there", "/srv/new\nline", "/srv/esc\x1b[2J", "/srv/quo\"te",
    "/srv/it's", "/srv/back\\slash", "/srv/%h", "/srv/$HOME", "/srv/#comment", "/srv/\u00a0nbsp",
]  # fmt: skip


def write_config(root: Path, section: str, key: str, kind: str, value: str) -> Path:
    """A valid config (short private paths) with one path key set to ``value``."""
    tables: dict[str, dict[str, object]] = {
        "metrics": {"listen": ""},
        "hooks": {"wait_seconds": 0},
        "mux": {"ssh": "/bin/false", "control_dir": "/run/bpa-test/mux"},
    }
    tables.setdefault(section, {})[key] = [value] if kind == "path_list" else value
    if section == "metrics":  # TLS needs both files
        other = "keyfile" if key == "certfile" else "certfile"
        tables["metrics"][other] = "/srv/tls/other.pem"
    return helpers.write_config(root / "config.toml", **tables)


def run(config: Path, argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main.main(["--config", str(config), *argv])
    return code, err.getvalue()


@pytest.mark.parametrize("value", BAD_PATHS)
@pytest.mark.parametrize(("section", "key", "kind"), PATH_KEYS)
def test_a_path_ssh_would_misread_is_refused_by_every_command_naming_the_key(
    tmp_path: Path, section: str, key: str, kind: str, value: str
) -> None:
    config = write_config(tmp_path, section, key, kind, value)
    for name, argv in COMMANDS.items():
        code, err = run(config, argv)
        assert code == exitcodes.USAGE, (name, err)
        assert f"backuppc-agent: {config}: {section}.{key}: " in err, (name, err)
        assert all(line.isprintable() for line in err.splitlines()), (name, err)


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [("agent", "socket", "/run/" + "s" * 103), ("mux", "control_dir", "/run/" + "m" * 60)],
)
def test_a_socket_path_too_long_to_bind_is_refused_by_every_command(
    tmp_path: Path, section: str, key: str, value: str
) -> None:
    config = write_config(tmp_path, section, key, "path", value)
    for name, argv in COMMANDS.items():
        code, err = run(config, argv)
        assert code == exitcodes.USAGE, (name, err)
        assert f": {section}.{key}: " in err, (name, err)


def test_a_good_config_passes_the_commands_that_only_print(tmp_path: Path) -> None:
    config = write_config(tmp_path, "mux", "known_hosts", "path", "/srv/bpa/known_hosts")
    for name in PURE:
        assert run(config, COMMANDS[name])[0] == exitcodes.OK, name


@given(st.text(max_size=12))
def test_any_path_gets_one_verdict_from_every_command_that_prints(text: str) -> None:
    with contextlib.ExitStack() as stack:
        import tempfile  # noqa: PLC0415

        root = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        config = write_config(root, "mux", "known_hosts", "path", "/srv/" + text)
        verdicts = {name: run(config, COMMANDS[name]) for name in PURE}
    codes = {code for code, _ in verdicts.values()}
    assert len(codes) == 1, verdicts
    assert codes <= {exitcodes.OK, exitcodes.USAGE}
