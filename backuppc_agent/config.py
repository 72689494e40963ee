"""Find, load and validate the TOML configuration once, into typed immutable records.

Every problem in a file is reported at once, each with its key path
("agent.socket: ..."), so an operator fixes the file in one pass; the keys and
their checks are in config_schema.py.

The records are typed NamedTuples (records.Record: immutable, like frozen
dataclasses) because this module is on the hook's hot path: importing
dataclasses pulls in inspect, each frozen dataclass costs about a millisecond
to create, and typing costs ~4 ms to import, which a 40 ms budget for a whole
command cannot afford.
"""

from __future__ import annotations

import os
from pathlib import Path

from backuppc_agent import config_cache, config_schema
from backuppc_agent.config_schema import SCHEMA, expand_path, home_dir
from backuppc_agent.errors import ConfigError
from backuppc_agent.records import Record

__all__ = ["SCHEMA", "Config", "expand_path", "from_mapping", "home_dir", "load", "locate"]

CONFIG_ENV = "BACKUPPC_AGENT_CONFIG"
SYSTEM_CONFIG = Path("/etc/backuppc-agent/config.toml")
BUILTIN = "<built-in defaults>"

TYPE_CHECKING = False  # see records.py: typing stays off the hot path
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any


class AgentConfig(Record):
    """[agent]: the supervised ssh-agent and what makes it ready."""

    socket: Path
    env_file: Path
    lifetime_seconds: int
    required_keys: tuple[str, ...]
    on_stop: str
    poll_seconds: float
    probe_timeout_seconds: float
    ssh_agent: str
    unlock: str
    keys: tuple[Path, ...]


class StateConfig(Record):
    """[state]: where the supervisor publishes its state and the hooks record runs."""

    dir: Path


class MetricsConfig(Record):
    """[metrics]: the Prometheus endpoint; listen = "" disables it."""

    listen: str
    certfile: Path | None
    keyfile: Path | None


class HooksConfig(Record):
    """[hooks]: how BackupPC's pre/post commands behave."""

    wait_seconds: float
    on_ready: str
    connect_timeout_seconds: float
    post_master: str


class MuxConfig(Record):
    """[mux]: OpenSSH master connections, one per client."""

    control_dir: Path
    persist_seconds: int
    ssh_config: Path
    known_hosts: Path
    ssh: str
    server_alive_interval: int
    identity_files: tuple[Path, ...]


class SwapConfig(Record):
    """[swap]: where the swap collectors read procfs and how many processes to show."""

    procfs: Path
    top_processes: int


class BackupPCConfig(Record):
    """[backuppc]: where BackupPC's programs live."""

    bin_dir: Path
    user: str


class Config(Record):
    """The whole, validated configuration and the file it came from."""

    source: str
    agent: AgentConfig
    state: StateConfig
    metrics: MetricsConfig
    hooks: HooksConfig
    mux: MuxConfig
    swap: SwapConfig
    backuppc: BackupPCConfig


_SECTIONS: dict[str, type[Any]] = {
    "agent": AgentConfig,
    "state": StateConfig,
    "metrics": MetricsConfig,
    "hooks": HooksConfig,
    "mux": MuxConfig,
    "swap": SwapConfig,
    "backuppc": BackupPCConfig,
}


def from_mapping(data: Mapping[str, Any], source: str, home: Path | None = None) -> Config:
    """Validate a parsed TOML document; raise ConfigError listing every problem."""
    return _assemble(
        config_schema.validate(data, source, home if home is not None else home_dir()), source
    )


def _assemble(sections: dict[str, dict[str, Any]], source: str) -> Config:
    built = {name: _SECTIONS[name](**values) for name, values in sections.items()}
    return Config(source=source, **built)


def locate(explicit: str | None) -> Path | None:
    """Return the config file to read: --config, $BACKUPPC_AGENT_CONFIG, the system file."""
    if explicit:
        return Path(explicit)
    from_env = os.environ.get(CONFIG_ENV)
    if from_env:
        return Path(from_env)
    return SYSTEM_CONFIG if SYSTEM_CONFIG.exists() else None


def load(explicit: str | None = None, home: Path | None = None) -> Config:
    """Find, read and validate the configuration; raise ConfigError on any problem.

    A file already validated in this exact version is taken from the private
    cache (config_cache) instead of being parsed again.
    """
    path = locate(explicit)
    home = home if home is not None else home_dir()
    if path is None:
        return from_mapping({}, BUILTIN, home)
    key = config_cache.file_key(path, home, _schema_signature())
    cached = config_cache.read(home, path, key) if key is not None else None
    if cached is not None:
        restored = _from_cache(cached)
        if restored is not None:
            return _assemble(restored, str(path))
    sections = config_schema.validate(_parse(path), str(path), home)
    if key is not None:
        config_cache.write(home, path, key, sections)
    return _assemble(sections, str(path))


def _parse(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            import tomllib  # noqa: PLC0415  (only on a cache miss: it costs ~10 ms)

            return tomllib.load(handle)
    except OSError as err:
        raise ConfigError(str(path), [f"cannot read: {err.strerror}"]) from err
    except ValueError as err:  # tomllib.TOMLDecodeError, and undecodable bytes
        raise ConfigError(str(path), [f"not valid TOML: {err}"]) from err


def _schema_signature() -> str:
    return ";".join(
        f"{s}.{k}:{spec.kind}" for s, keys in SCHEMA.items() for k, spec in keys.items()
    )


def _from_cache(cached: dict[str, Any]) -> dict[str, dict[str, Any]] | None:
    """Rebuild validated sections from their JSON form; None if anything is off."""
    try:
        return {
            name: {key: _revive(spec.kind, cached[name][key]) for key, spec in keys.items()}
            for name, keys in SCHEMA.items()
        }
    except (KeyError, TypeError, ValueError):
        return None


def _revive(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind in ("path", "opt_path"):
        return Path(value)
    if kind == "path_list":
        return tuple(Path(item) for item in value)
    if kind == "str_list":
        return tuple(str(item) for item in value)
    if kind == "float":
        return float(value)
    return value


def to_toml(config: Config) -> str:
    """Render the effective configuration as TOML (for ``config show``)."""
    lines = [f"# effective configuration (source: {config.source})"]
    for name in SCHEMA:
        lines.append(f"\n[{name}]")
        section = getattr(config, name)
        for name_, value in section._asdict().items():
            lines.append(f"{name_} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if value is None:
        return '""'
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'
