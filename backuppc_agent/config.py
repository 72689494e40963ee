"""Find, load and validate the TOML configuration into frozen typed dataclasses.

Each key is declared once, as a dataclass field: the annotation says how its TOML
value converts, ``setting(default, check)`` gives its default as written in the file
and the check of the converted value. Every problem is reported at once, by key path.
"""

from __future__ import annotations

import dataclasses
import os
import pwd
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from backuppc_agent.errors import ConfigError
from backuppc_agent.listen import listen_problem
from backuppc_agent.ssh.limits import control_dir_problem, socket_path_problem, unsafe_path_problem
from backuppc_agent.tomlwriter import toml_document

CONFIG_ENV = "BACKUPPC_AGENT_CONFIG"
SYSTEM_CONFIG = Path("/etc/backuppc-agent/config.toml")
BUILTIN = "<built-in defaults>"

Check = Callable[[Any], str | None]


def setting(default: object, check: Check | None = None) -> dict[str, Any]:
    """A key's field metadata: its default as written in the file, the check of its value."""
    return {"default": default, "check": check}


def _choice(*allowed: str) -> Check:
    words = ", ".join(map(repr, allowed))
    return lambda value: None if value in allowed else f"must be one of {words}"


def _between(low: float, high: float) -> Check:
    return lambda value: None if low <= value <= high else f"must be between {low:g} and {high:g}"


def _fingerprints(value: Any) -> str | None:
    bad = [item for item in value if not re.fullmatch(r"SHA256:[A-Za-z0-9+/]{43}", item)]
    return f"{bad[0]!r} is not a SHA256:... fingerprint (as ssh-add -l prints it)" if bad else None


def _program(value: Any) -> str | None:
    relative = "/" in value and not value.startswith("/")
    if not value or value.startswith("-") or relative or any(c.isspace() for c in value):
        return f"{value!r} must be a program name or an absolute path"
    return None


def _user(value: Any) -> str | None:
    ok = value and not value.startswith("-") and all(c.isalnum() or c in "._-" for c in value)
    return None if ok else f"{value!r} is not a valid user name"


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """[agent]: the supervised ssh-agent and what makes it ready."""

    socket: Path = field(metadata=setting("~/.ssh/agent.socket", socket_path_problem))
    env_file: Path = field(metadata=setting("~/.ssh/agent.env"))
    lifetime_seconds: int = field(metadata=setting(0, _between(0, 2**31 - 1)))
    required_keys: tuple[str, ...] = field(metadata=setting((), _fingerprints))
    on_stop: str = field(metadata=setting("stop-agent", _choice("stop-agent", "keep-agent")))
    poll_seconds: float = field(metadata=setting(0.2, _between(0.01, 60)))
    probe_timeout_seconds: float = field(metadata=setting(2.0, _between(0.05, 60)))
    ssh_agent: str = field(metadata=setting("ssh-agent", _program))
    unlock: str = field(metadata=setting("none", _choice("none", "keyring", "tang")))
    keys: tuple[Path, ...] = field(metadata=setting(()))
    restore_key: Path = field(metadata=setting("~/.ssh/id_restore_ed25519"))
    sign_interval_seconds: float = field(metadata=setting(60.0, _between(1, 86400)))
    expiry_warning_seconds: int = field(metadata=setting(3600, _between(0, 30 * 86400)))

    def restore_key_set_up(self) -> bool:
        """True once the restore key exists (its ``.pub``): backups and restores then part ways."""
        return Path(f"{self.restore_key}.pub").is_file()


@dataclass(frozen=True, slots=True)
class StateConfig:
    """[state]: where the supervisor publishes its state and the hooks record runs."""

    dir: Path = field(metadata=setting("~/.local/state/backuppc-agent"))


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """[metrics]: the Prometheus endpoint; listen = "" disables it."""

    listen: str = field(metadata=setting("127.0.0.1:9842", listen_problem))
    certfile: Path | None = field(metadata=setting(""))
    keyfile: Path | None = field(metadata=setting(""))


@dataclass(frozen=True, slots=True)
class HooksConfig:
    """[hooks]: how BackupPC's pre/post commands behave."""

    wait_seconds: float = field(metadata=setting(30.0, _between(0, 3600)))
    on_ready: str = field(metadata=setting("backup-all", _choice("backup-all", "none")))
    connect_timeout_seconds: float = field(metadata=setting(10.0, _between(1, 300)))
    post_master: str = field(metadata=setting("keep", _choice("keep", "close")))


@dataclass(frozen=True, slots=True)
class MuxConfig:
    """[mux]: OpenSSH master connections, one per client."""

    control_dir: Path = field(metadata=setting("~/.ssh/mux", control_dir_problem))
    persist_seconds: int = field(metadata=setting(600, _between(10, 7 * 86400)))
    ssh_config: Path = field(metadata=setting("~/.ssh/backuppc-agent.conf"))
    known_hosts: Path = field(metadata=setting("~/.ssh/known_hosts"))
    ssh: str = field(metadata=setting("ssh", _program))
    server_alive_interval: int = field(metadata=setting(30, _between(0, 3600)))
    identity_files: tuple[Path, ...] = field(metadata=setting(()))


@dataclass(frozen=True, slots=True)
class SwapConfig:
    """[swap]: how many of the most-swapped processes to show."""

    top_processes: int = field(metadata=setting(10, _between(0, 1000)))


@dataclass(frozen=True, slots=True)
class BackupPCConfig:
    """[backuppc]: where BackupPC's programs and files live, how its status is read."""

    bin_dir: Path = field(metadata=setting("/usr/share/backuppc/bin"))
    user: str = field(metadata=setting("backuppc", _user))
    top_dir: Path = field(metadata=setting("/var/lib/backuppc"))
    conf_dir: Path = field(metadata=setting("/etc/backuppc"))
    log_dir: Path = field(metadata=setting("/var/lib/backuppc/log"))
    run_dir: Path = field(metadata=setting("/run/backuppc"))
    status_timeout_seconds: float = field(metadata=setting(2.0, _between(0.1, 30)))
    #: a host's backup period when its config does not say it as a plain number
    default_period_hours: float = field(metadata=setting(24.0, _between(0.01, 24 * 366)))


@dataclass(frozen=True, slots=True)
class Config:
    """The whole, validated configuration and the file it came from."""

    source: str
    agent: AgentConfig
    state: StateConfig
    metrics: MetricsConfig
    hooks: HooksConfig
    mux: MuxConfig
    swap: SwapConfig
    backuppc: BackupPCConfig


def sections() -> dict[str, type[Any]]:
    """Each [section] name and the dataclass it fills, in file order."""
    hints = get_type_hints(Config)
    return {spec.name: hints[spec.name] for spec in dataclasses.fields(Config)[1:]}


def defaults() -> dict[str, dict[str, object]]:
    """Every key's default as written in the file, section by section."""
    return {
        name: {spec.name: spec.metadata["default"] for spec in dataclasses.fields(cls)}
        for name, cls in sections().items()
    }


_SCALARS: dict[object, tuple[tuple[type[Any], ...], str]] = {
    int: ((int,), "an integer"),
    float: ((int, float), "a number"),
    str: ((str,), "a string"),
    Path: ((str,), "a path string"),
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
    path = Path(text)
    if not path.is_absolute():
        return None, f"{text!r} must be absolute (or start with ~/)"
    if ".." in path.parts:
        return None, f"{text!r} must not contain '..'"
    problem = unsafe_path_problem(path)
    return (None, problem) if problem else (path, None)


def _convert(hint: Any, raw: Any, home: Path) -> tuple[Any, str | None]:
    """Type-check one raw TOML value against an annotation and convert it: (value, problem)."""
    if get_origin(hint) is tuple:  # tuple[X, ...]: a TOML list of strings (a tuple as a default)
        if not isinstance(raw, list | tuple) or not all(isinstance(item, str) for item in raw):
            return None, f"expected a list of strings, got {type(raw).__name__} {raw!r}"
        converted = [_convert(get_args(hint)[0], item, home) for item in raw]
        problems = [problem for _, problem in converted if problem]
        return (None, problems[0]) if problems else (tuple(value for value, _ in converted), None)
    if type(None) in get_args(hint):  # X | None: "" leaves it unset
        if raw == "":
            return None, None
        hint = get_args(hint)[0]
    accepted, what = _SCALARS[hint]
    if isinstance(raw, bool) or not isinstance(raw, accepted):
        return None, f"expected {what}, got {type(raw).__name__} {raw!r}"
    return expand_path(raw, home) if hint is Path else (hint(raw), None)


def _build_section(name: str, cls: type[Any], raw: Any, home: Path, problems: list[str]) -> Any:
    """Validate one [section] table into its dataclass, adding each problem to ``problems``."""
    if not isinstance(raw, Mapping):
        problems.append(f"{name}: expected a table, got {type(raw).__name__}")
        raw = {}
    hints = get_type_hints(cls)
    specs = {spec.name: spec.metadata for spec in dataclasses.fields(cls)}
    problems.extend(f"{name}.{_shown(key)}: unknown key" for key in raw if key not in specs)
    values: dict[str, Any] = {}
    for key, spec in specs.items():
        value, problem = _convert(hints[key], raw.get(key, spec["default"]), home)
        if problem is None and spec["check"] is not None and value is not None:
            problem = spec["check"](value)
        if problem:
            problems.append(f"{name}.{key}: {problem}")
        values[key] = value
    return cls(**values)


def _shown(name: str) -> str:
    """A key name as written, or quoted if it holds anything unprintable or odd."""
    return name if name.isprintable() and name and " " not in name else repr(name)


def _cross_checks(config: Config) -> list[str]:
    problems = []
    if (config.metrics.certfile is None) != (config.metrics.keyfile is None):
        problems.append("metrics.certfile, metrics.keyfile: set both for TLS, or neither")
    if config.agent.unlock != "none" and not config.agent.keys:
        problems.append(f'agent.keys: unlock = "{config.agent.unlock}" needs at least one key file')
    return problems


def from_mapping(data: Mapping[str, Any], source: str, home: Path | None = None) -> Config:
    """Validate a parsed TOML document; raise ConfigError listing every problem."""
    home = home if home is not None else home_dir()
    known = sections()
    problems = [f"{_shown(name)}: unknown section" for name in data if name not in known]
    built = {
        name: _build_section(name, cls, data.get(name, {}), home, problems)
        for name, cls in known.items()
    }
    config = Config(source=source, **built)
    problems.extend(_cross_checks(config))
    if problems:
        raise ConfigError(source, problems)
    return config


def locate(explicit: str | None) -> Path | None:
    """Return the config file to read: --config, $BACKUPPC_AGENT_CONFIG, the system file."""
    chosen = explicit or os.environ.get(CONFIG_ENV)
    if chosen:
        return Path(chosen)
    return SYSTEM_CONFIG if SYSTEM_CONFIG.exists() else None


def load(explicit: str | None = None, home: Path | None = None) -> Config:
    """Find, read and validate the configuration; raise ConfigError on any problem."""
    path = locate(explicit)
    if path is None:
        return from_mapping({}, BUILTIN, home)
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as err:
        raise ConfigError(str(path), [f"cannot read: {err.strerror}"]) from err
    except ValueError as err:  # tomllib.TOMLDecodeError, and undecodable bytes
        raise ConfigError(str(path), [f"not valid TOML: {err}"]) from err
    return from_mapping(data, str(path), home)


def to_toml(config: Config) -> str:
    """Render the effective configuration as TOML (for ``config show``)."""
    tables = {name: dataclasses.asdict(getattr(config, name)) for name in sections()}
    return f"# effective configuration (source: {config.source})\n\n" + toml_document(tables)
