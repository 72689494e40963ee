"""Run the shipped service files for real: as user backuppc when we can, else as root.

The venv's interpreter may live where backuppc cannot reach it (a pyenv build
under /root), so a service user other than root gets a small launcher named
``backuppc-agent`` that runs our code with the system python3 (same minor
version) and the venv's site-packages. Its name keeps the process name
``backuppc-agent``, which the sysvinit script matches on.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

from backuppc_agent.install import templates
from tests.helpers import CLI, ROOT, Section, merged, write_config

SERVICE_USER = "backuppc"
SYSTEM_PYTHON = Path("/usr/bin/python3")


def _launcher_text() -> str:
    site = sysconfig.get_path("purelib")
    return (
        f"#!{SYSTEM_PYTHON} -s\n"
        "import sys\n"
        f"sys.path[:0] = [{str(ROOT)!r}, {site!r}]\n"
        "from backuppc_agent.cli.main import main\n"
        "sys.exit(main())\n"
    )


def _user_can_run(user: str, launcher: Path) -> bool:
    result = subprocess.run(
        ["runuser", "-u", user, "--", str(launcher), "--version"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    return result.returncode == 0


@dataclass
class Tree:
    """A private directory owned by the service user, with config and launcher."""

    root: Path
    user: str
    program: Path

    @property
    def socket(self) -> Path:
        return self.root / "ssh" / "agent.socket"

    @property
    def env_file(self) -> Path:
        return self.root / "ssh" / "agent.env"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    def write_config(self, on_stop: str = "stop-agent", **sections: Section) -> None:
        """The tree's config; ``sections`` add or override keys."""
        agent = {
            "socket": self.socket,
            "env_file": self.env_file,
            "on_stop": on_stop,
            "poll_seconds": 0.05,
        }
        base = {"agent": agent, "state": {"dir": self.state_dir}, "metrics": {"listen": ""}}
        write_config(self.config, **merged(base, sections))
        self.config.chmod(0o644)

    def values(self) -> templates.Values:
        """What the shipped files name, for this tree."""
        entry = pwd.getpwnam(self.user)
        return templates.Values(
            program=str(self.program),
            config=str(self.config),
            user=self.user,
            group=grp.getgrgid(entry.pw_gid).gr_name,
            home=str(self.root),
            socket=str(self.socket),
            env_file=str(self.env_file),
            writable_dirs=f"{self.socket.parent} {self.state_dir}",
        )

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def make_tree() -> Tree:
    """A 0700 tree for the service user (backuppc if it can run our code, else root)."""
    root = Path(tempfile.mkdtemp(prefix="bpa-deploy-"))
    user = "root"
    program = Path(CLI)
    if os.geteuid() == 0 and _exists(SERVICE_USER) and SYSTEM_PYTHON.exists():
        launcher = root / "backuppc-agent"
        launcher.write_text(_launcher_text())
        launcher.chmod(0o755)
        entry = pwd.getpwnam(SERVICE_USER)
        os.chown(root, entry.pw_uid, entry.pw_gid)
        if _user_can_run(SERVICE_USER, launcher):
            user, program = SERVICE_USER, launcher
    root.chmod(0o700)
    ssh = root / "ssh"
    ssh.mkdir(mode=0o700)
    entry = pwd.getpwnam(user)
    os.chown(ssh, entry.pw_uid, entry.pw_gid)
    tree = Tree(root, user, program)
    tree.write_config()
    return tree


def _exists(user: str) -> bool:
    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True
