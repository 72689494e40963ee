"""The configuration as the BackupPC user sees it, wherever install/doctor/trust run.

``~`` in the config is the home of the user who runs the supervisor: these
commands, often run as root, load it with the home of ``[backuppc] user``.
``root`` maps the real paths into a test tree (``--root DIR``).
"""

from __future__ import annotations

import dataclasses
import pwd
from dataclasses import dataclass
from pathlib import Path

from backuppc_agent import config as config_mod
from backuppc_agent.backuppc.confdir import ConfDir
from backuppc_agent.config import Config
from backuppc_agent.errors import BackupPCAgentError


@dataclass(frozen=True)
class Context:
    """A loaded config, the account it is for, and where the file system is."""

    config: Config
    config_path: Path
    user: pwd.struct_passwd
    root: Path

    def under(self, path: Path) -> Path:
        """Where the real path ``path`` lies under the root."""
        return self.root / Path(path).relative_to("/") if self.root != Path("/") else Path(path)

    @property
    def home(self) -> Path:
        """The account's home, as a real path."""
        return Path(self.user.pw_dir)

    def backuppc(self, conf_dir: str | None = None) -> ConfDir:
        """BackupPC's config: ``conf_dir`` (a --backuppc-dir) or [backuppc] conf_dir."""
        backuppc = self.config.backuppc
        return ConfDir(Path(conf_dir or backuppc.conf_dir), backuppc.top_dir)


def load(explicit: str | None, root: Path = Path("/")) -> Context:
    """Load the config (``explicit``, else the system file) for the BackupPC user.

    A missing file gives the defaults. Raises ConfigError or BackupPCAgentError.
    """
    path = Path(explicit) if explicit else config_mod.SYSTEM_CONFIG
    on_disk = root / path.relative_to("/") if path.is_absolute() else path
    name = _load(on_disk, path, None).backuppc.user
    try:
        user = pwd.getpwnam(name)
    except KeyError:
        raise BackupPCAgentError(
            f"user {name} does not exist: install BackupPC first (apt install backuppc), "
            "or set [backuppc] user"
        ) from None
    config = _load(on_disk, path, Path(user.pw_dir))
    return Context(config, path.absolute(), user, root)


def _load(on_disk: Path, path: Path, home: Path | None) -> Config:
    if on_disk.exists():
        return dataclasses.replace(config_mod.load(str(on_disk), home), source=str(path))
    return config_mod.from_mapping({}, str(path), home)
