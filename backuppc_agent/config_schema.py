"""The configuration schema: every key, its type and default, and how it is checked.

``validate`` turns a parsed TOML document into plain per-section values, or
raises ConfigError naming every problem at once ("agent.socket: ..."). The
typed records those values fill live in config.py.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backuppc_agent.errors import ConfigError
from backuppc_agent.ssh.limits import control_dir_problem, socket_path_problem, unsafe_path_problem

_Check = Callable[[Any], str | None]


@dataclass(frozen=True, slots=True)
class _Key:
    default: Any
    kind: str
    check: _Check | None = None


def _choice(*allowed: str) -> _Check:
    def check(value: Any) -> str | None:
        return None if value in allowed else "must be one of " + ", ".join(map(repr, allowed))

    return check


def _between(low: float, high: float) -> _Check:
    def check(value: Any) -> str | None:
        return None if low <= value <= high else f"must be between {low:g} and {high:g}"

    return check


def _fingerprints(value: Any) -> str | None:
    for item in value:
        body = item.removeprefix("SHA256:")
        if not item.startswith("SHA256:") or len(body) != 43 or not _is_b64(body):
            return f"{item!r} is not a SHA256:... fingerprint (as ssh-add -l prints it)"
    return None


def _is_b64(text: str) -> bool:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    return all(char in alphabet for char in text)


def _listen(value: Any) -> str | None:
    if value == "":
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        return f'{value!r} must be HOST:PORT (e.g. 127.0.0.1:9842) or "" to disable'
    return None


def _program(value: Any) -> str | None:
    if not value or value.startswith("-") or any(c.isspace() for c in value):
        return f"{value!r} must be a program name or absolute path"
    if "/" in value and not value.startswith("/"):
        return f"{value!r} must be a program name or an absolute path"
    return None


def _user(value: Any) -> str | None:
    ok = value and not value.startswith("-") and all(c.isalnum() or c in "._-" for c in value)
    return None if ok else f"{value!r} is not a valid user name"


SCHEMA: dict[str, dict[str, _Key]] = {
    "agent": {
        "socket": _Key("~/.ssh/agent.socket", "path", socket_path_problem),
        "env_file": _Key("~/.ssh/agent.env", "path"),
        "lifetime_seconds": _Key(0, "int", _between(0, 2**31 - 1)),
        "required_keys": _Key((), "str_list", _fingerprints),
        "on_stop": _Key("stop-agent", "str", _choice("stop-agent", "keep-agent")),
        "poll_seconds": _Key(0.2, "float", _between(0.01, 60)),
        "probe_timeout_seconds": _Key(2.0, "float", _between(0.05, 60)),
        "ssh_agent": _Key("ssh-agent", "str", _program),
        "unlock": _Key("none", "str", _choice("none", "keyring")),
        "keys": _Key((), "path_list"),
        "sign_interval_seconds": _Key(60.0, "float", _between(1, 86400)),
        "expiry_warning_seconds": _Key(3600, "int", _between(0, 30 * 86400)),
    },
    "state": {"dir": _Key("~/.local/state/backuppc-agent", "path")},
    "metrics": {
        "listen": _Key("127.0.0.1:9842", "str", _listen),
        "certfile": _Key(None, "opt_path"),
        "keyfile": _Key(None, "opt_path"),
    },
    "hooks": {
        "wait_seconds": _Key(30.0, "float", _between(0, 3600)),
        "on_ready": _Key("backup-all", "str", _choice("backup-all", "none")),
        "connect_timeout_seconds": _Key(10.0, "float", _between(1, 300)),
        "post_master": _Key("keep", "str", _choice("keep", "close")),
    },
    "mux": {
        "control_dir": _Key("~/.ssh/mux", "path", control_dir_problem),
        "persist_seconds": _Key(600, "int", _between(10, 7 * 86400)),
        "ssh_config": _Key("~/.ssh/backuppc-agent.conf", "path"),
        "known_hosts": _Key("~/.ssh/known_hosts", "path"),
        "ssh": _Key("ssh", "str", _program),
        "server_alive_interval": _Key(30, "int", _between(0, 3600)),
        "identity_files": _Key((), "path_list"),
    },
    "swap": {
        "procfs": _Key("/proc", "path"),
        "top_processes": _Key(10, "int", _between(0, 1000)),
    },
    "backuppc": {
        "bin_dir": _Key("/usr/share/backuppc/bin", "path"),
        "user": _Key("backuppc", "str", _user),
        "top_dir": _Key("/var/lib/backuppc", "path"),
        "conf_dir": _Key("/etc/backuppc", "path"),
        "log_dir": _Key("/var/lib/backuppc/log", "path"),
        "run_dir": _Key("/run/backuppc", "path"),
        "status_timeout_seconds": _Key(2.0, "float", _between(0.1, 30)),
        "default_period_hours": _Key(24.0, "float", _between(0.01, 24 * 366)),
    },
}


def home_dir() -> Path:
    """Return the running user's home from the password database (not $HOME)."""
    try:
        return Path(pwd.getpwuid(os.getuid()).pw_dir)
    except KeyError:
        return Path(os.environ.get("HOME", "/"))


def expand_path(text: str, home: Path) -> tuple[Path | None, str | None]:
    """Expand a leading ``~``; require an absolute path without ``..`` that ssh reads as is."""
    if text == "~" or text.startswith("~/"):
        text = str(home) + text[1:]
    if "\0" in text:
        return None, "must not contain NUL"
    path = Path(text)
    if not path.is_absolute():
        return None, f"{text!r} must be absolute (or start with ~/)"
    if ".." in path.parts:
        return None, f"{text!r} must not contain '..'"
    problem = unsafe_path_problem(path)
    return (None, problem) if problem else (path, None)


_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "path": (str,),
    "opt_path": (str,),
    "str_list": (list,),
    "path_list": (list,),
}


def _convert(kind: str, raw: Any, home: Path) -> tuple[Any, str | None]:
    """Type-check and convert one raw TOML value; return (value, problem)."""
    if isinstance(raw, bool) or not isinstance(raw, _TYPES[kind]):
        return None, f"expected {_describe(kind)}, got {type(raw).__name__} {raw!r}"
    return _convert_checked(kind, raw, home)


def _convert_checked(kind: str, raw: Any, home: Path) -> tuple[Any, str | None]:
    if kind == "float":
        return float(raw), None
    if kind in ("path", "opt_path"):
        return (None, None) if kind == "opt_path" and raw == "" else expand_path(raw, home)
    if kind in ("str_list", "path_list"):
        return _convert_list(kind, raw, home)
    return raw, None


def _convert_list(kind: str, raw: list[Any], home: Path) -> tuple[Any, str | None]:
    if not all(isinstance(item, str) for item in raw):
        return None, "expected a list of strings"
    if kind == "str_list":
        return tuple(raw), None
    paths = []
    for item in raw:
        path, problem = expand_path(item, home)
        if problem:
            return None, problem
        paths.append(path)
    return tuple(paths), None


def _describe(kind: str) -> str:
    return {
        "int": "an integer",
        "float": "a number",
        "str": "a string",
        "path": "a path string",
        "opt_path": "a path string",
        "str_list": "a list of strings",
        "path_list": "a list of path strings",
    }[kind]


def _build_section(name: str, raw: Any, home: Path, problems: list[str]) -> dict[str, Any]:
    """Validate one [section] table into keyword arguments for its dataclass."""
    if not isinstance(raw, Mapping):
        problems.append(f"{name}: expected a table, got {type(raw).__name__}")
        raw = {}
    schema = SCHEMA[name]
    problems.extend(f"{name}.{_shown(key)}: unknown key" for key in raw if key not in schema)
    values: dict[str, Any] = {}
    for key, spec in schema.items():
        value, problem = _value(spec, raw.get(key, spec.default), key in raw, home)
        if problem:
            problems.append(f"{name}.{key}: {problem}")
        values[key] = value
    return values


def _value(spec: _Key, raw: Any, given: bool, home: Path) -> tuple[Any, str | None]:
    if not given and spec.default is None:
        return None, None
    if not given and isinstance(spec.default, tuple):
        raw = list(spec.default)
    value, problem = _convert(spec.kind, raw, home)
    if problem is None and spec.check is not None and value is not None:
        problem = spec.check(value)
    return value, problem


def validate(data: Mapping[str, Any], source: str, home: Path) -> dict[str, dict[str, Any]]:
    problems = [f"{_shown(name)}: unknown section" for name in data if name not in SCHEMA]
    sections = {name: _build_section(name, data.get(name, {}), home, problems) for name in SCHEMA}
    problems.extend(_cross_checks(sections))
    if problems:
        raise ConfigError(source, problems)
    return sections


def _shown(name: str) -> str:
    """A key name as written, or quoted if it holds anything unprintable or odd."""
    return name if name.isprintable() and name and " " not in name else repr(name)


def _cross_checks(sections: dict[str, dict[str, Any]]) -> list[str]:
    problems = []
    metrics = sections["metrics"]
    if (metrics["certfile"] is None) != (metrics["keyfile"] is None):
        problems.append("metrics.certfile, metrics.keyfile: set both for TLS, or neither")
    agent = sections["agent"]
    if agent["unlock"] == "keyring" and not agent["keys"]:
        problems.append('agent.keys: unlock = "keyring" needs at least one key file')
    return problems
