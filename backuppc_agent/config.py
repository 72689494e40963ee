"""Find, load and validate the TOML configuration, into frozen typed dataclasses.

The file is parsed and checked on every run. Every problem in a file is
reported at once, each with its key path ("agent.socket: ..."), so an operator
fixes the file in one pass; the keys and their checks are in config_schema.py.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backuppc_agent import config_schema
from backuppc_agent.config_schema import SCHEMA, expand_path, home_dir
from backuppc_agent.errors import ConfigError

__all__ = ["SCHEMA", "Config", "expand_path", "from_mapping", "home_dir", "load", "locate"]

CONFIG_ENV = "BACKUPPC_AGENT_CONFIG"
SYSTEM_CONFIG = Path("/etc/backuppc-agent/config.toml")
BUILTIN = "<built-in defaults>"


@dataclass(frozen=True, slots=True)
class AgentConfig:
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
    sign_interval_seconds: float
    expiry_warning_seconds: int


@dataclass(frozen=True, slots=True)
class StateConfig:
    """[state]: where the supervisor publishes its state and the hooks record runs."""

    dir: Path


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """[metrics]: the Prometheus endpoint; listen = "" disables it."""

    listen: str
    certfile: Path | None
    keyfile: Path | None


@dataclass(frozen=True, slots=True)
class HooksConfig:
    """[hooks]: how BackupPC's pre/post commands behave."""

    wait_seconds: float
    on_ready: str
    connect_timeout_seconds: float
    post_master: str


@dataclass(frozen=True, slots=True)
class MuxConfig:
    """[mux]: OpenSSH master connections, one per client."""

    control_dir: Path
    persist_seconds: int
    ssh_config: Path
    known_hosts: Path
    ssh: str
    server_alive_interval: int
    identity_files: tuple[Path, ...]


@dataclass(frozen=True, slots=True)
class SwapConfig:
    """[swap]: where the swap collectors read procfs and how many processes to show."""

    procfs: Path
    top_processes: int


@dataclass(frozen=True, slots=True)
class BackupPCConfig:
    """[backuppc]: where BackupPC's programs and files live, how its status is read."""

    bin_dir: Path
    user: str
    top_dir: Path
    conf_dir: Path
    log_dir: Path
    run_dir: Path
    status_timeout_seconds: float
    #: a host's backup period when its config does not say it as a plain number
    default_period_hours: float


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
    """Find, read and validate the configuration; raise ConfigError on any problem."""
    path = locate(explicit)
    if path is None:
        return from_mapping({}, BUILTIN, home)
    return from_mapping(_parse(path), str(path), home)


def _parse(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as err:
        raise ConfigError(str(path), [f"cannot read: {err.strerror}"]) from err
    except ValueError as err:  # tomllib.TOMLDecodeError, and undecodable bytes
        raise ConfigError(str(path), [f"not valid TOML: {err}"]) from err


def to_toml(config: Config) -> str:
    """Render the effective configuration as TOML (for ``config show``)."""
    lines = [f"# effective configuration (source: {config.source})"]
    for name in SCHEMA:
        lines.append(f"\n[{name}]")
        section = getattr(config, name)
        for name_, value in dataclasses.asdict(section).items():
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
