"""Config: defaults, ~ expansion, and every problem reported at once."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backuppc_agent import config, tomlwriter
from backuppc_agent.errors import ConfigError

HOME = Path("/home/backuppc")


def problems(data: dict[str, object]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config.from_mapping(data, "test.toml", HOME)
    assert info.value.source == "test.toml"
    return info.value.problems


def test_defaults_expand_tilde_to_the_given_home() -> None:
    cfg = config.from_mapping({}, "defaults", HOME)
    assert cfg.agent.socket == HOME / ".ssh/agent.socket"
    assert cfg.agent.env_file == HOME / ".ssh/agent.env"
    assert cfg.state.dir == HOME / ".local/state/backuppc-agent"
    assert cfg.agent.lifetime_seconds == 0
    assert cfg.agent.required_keys == ()
    assert cfg.agent.on_stop == "stop-agent"
    assert cfg.metrics.listen == "127.0.0.1:9842"


def test_values_are_converted_and_kept() -> None:
    cfg = config.from_mapping(
        {
            "agent": {
                "socket": "/run/a.sock",
                "poll_seconds": 1,
                "on_stop": "keep-agent",
                "required_keys": ["SHA256:" + "A" * 43],
            },
            "metrics": {"listen": ""},
        },
        "x",
        HOME,
    )
    assert cfg.agent.socket == Path("/run/a.sock")
    assert cfg.agent.poll_seconds == 1.0
    assert isinstance(cfg.agent.poll_seconds, float)
    assert cfg.agent.on_stop == "keep-agent"
    assert cfg.agent.required_keys == ("SHA256:" + "A" * 43,)
    assert cfg.metrics.listen == ""


def test_every_bad_key_is_named_at_once() -> None:
    found = problems(
        {
            "agent": {
                "socket": "relative/path",
                "poll_seconds": "fast",
                "bogus": 1,
                "on_stop": "explode",
                "required_keys": ["MD5:aa"],
                "lifetime_seconds": -1,
            },
            "state": {"dir": "/var/../etc"},
            "metrics": {"listen": "nowhere"},
            "nonsense": {},
        }
    )
    text = "\n".join(found)
    for needle in (
        "agent.socket: 'relative/path' must be absolute",
        "agent.poll_seconds: expected a number",
        "agent.bogus: unknown key",
        "agent.on_stop: must be one of",
        "agent.required_keys: 'MD5:aa' is not a SHA256",
        "agent.lifetime_seconds: must be between",
        "state.dir: '/var/../etc' must not contain '..'",
        "metrics.listen: 'nowhere' must be HOST:PORT",
        "nonsense: unknown section",
    ):
        assert needle in text
    assert len(found) == 9


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("agent", "lifetime_seconds", True),
        ("agent", "lifetime_seconds", 1.5),
        ("agent", "required_keys", "SHA256:x"),
        ("agent", "required_keys", [1, 2]),
        ("agent", "socket", 42),
        ("agent", "keys", ["relative"]),
        ("hooks", "wait_seconds", [30]),
        ("mux", "ssh", "-oProxyCommand=x"),
        ("agent", "ssh_agent", "bin/ssh-agent"),
        ("backuppc", "user", "-root"),
        ("metrics", "listen", "127.0.0.1:" + "9" * 5000),  # int() refuses 4,300+ digits
    ],
)
def test_wrong_types_and_values_are_refused(section: str, key: str, value: object) -> None:
    found = problems({section: {key: value}})
    assert any(p.startswith(f"{section}.{key}:") for p in found), found


def test_a_section_that_is_not_a_table_is_refused() -> None:
    assert problems({"agent": 5}) == ["agent: expected a table, got int"]


def test_tls_needs_both_files() -> None:
    found = problems({"metrics": {"certfile": "/etc/cert.pem"}})
    assert found == ["metrics.certfile, metrics.keyfile: set both for TLS, or neither"]


def test_keyring_unlock_needs_keys() -> None:
    assert problems({"agent": {"unlock": "keyring"}}) == [
        'agent.keys: unlock = "keyring" needs at least one key file'
    ]


def test_load_reads_a_file_and_reports_bad_toml(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[agent]\nsocket = "~/s.sock"\n')
    assert config.load(str(good), HOME).agent.socket == HOME / "s.sock"
    bad = tmp_path / "bad.toml"
    bad.write_text("[agent\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(str(bad), HOME)
    with pytest.raises(ConfigError, match="cannot read"):
        config.load(str(tmp_path / "missing.toml"), HOME)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(str(binary), HOME)


def test_locate_prefers_flag_then_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(config.CONFIG_ENV, "/from/env.toml")
    assert config.locate("/from/flag.toml") == Path("/from/flag.toml")
    assert config.locate(None) == Path("/from/env.toml")


def test_show_renders_toml_that_loads_back(tmp_path: Path) -> None:
    cfg = config.from_mapping({"agent": {"required_keys": ["SHA256:" + "b" * 43]}}, "x", HOME)
    rendered = tmp_path / "shown.toml"
    rendered.write_text(config.to_toml(cfg))
    again = config.load(str(rendered), HOME)
    assert dataclasses.replace(again, source="x") == cfg


@given(st.text())
def test_the_toml_writer_gives_back_any_string(text: str) -> None:
    assert tomllib.loads(f"v = {tomlwriter.toml_value(text)}")["v"] == text


def test_the_toml_writer_writes_tables_that_load_back() -> None:
    tables = {"a": {"n": 1, "f": 0.5, "b": True, "p": Path("/x"), "l": ["s", Path("/y")]}, "c": {}}
    loaded = tomllib.loads(tomlwriter.toml_document(tables))
    assert loaded == {"a": {"n": 1, "f": 0.5, "b": True, "p": "/x", "l": ["s", "/y"]}, "c": {}}
    commented = tomlwriter.toml_document(tables, key_prefix="# ")
    assert tomllib.loads(commented) == {"a": {}, "c": {}}
    with pytest.raises(TypeError):
        tomlwriter.toml_value(object())
