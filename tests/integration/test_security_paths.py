"""The paths we own: state dir, its lock and store, the env file.

Each one refuses a symlink, a foreign owner and a directory other users can
write, and everything we create is private (directories 0700, files 0600) even
under umask 000. Foreign-owner cases chown to nobody and need root.
"""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import (
    CLI,
    Setup,
    agent_pids_on,
    cli,
    kill_agents_on,
    make_setup,
    private_dir,
    running,
    wait_for,
)

NOBODY = 65534
needs_root = pytest.mark.root("needs root to chown to nobody")


def symlinked(path: Path) -> None:
    """Replace ``path`` by a symlink to a private directory next to it."""
    target = private_dir(path.with_name(path.name + ".real"))
    if path.exists():
        path.rmdir()
    path.symlink_to(target)


def world_writable(path: Path) -> None:
    path.mkdir(mode=0o700, exist_ok=True)
    path.chmod(0o777)


def foreign(path: Path) -> None:
    path.mkdir(mode=0o700, exist_ok=True)
    os.chown(path, NOBODY, NOBODY)


SPOILERS: dict[str, tuple[Callable[[Path], None], str]] = {
    "symlink": (symlinked, "is a symlink"),
    "world-writable": (world_writable, "is writable by other users"),
    "foreign": (foreign, f"is owned by uid {NOBODY}"),
}


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    """A private installation whose hooks give up at once (no agent runs for them)."""
    tmp_path.chmod(0o700)
    installation = make_setup(tmp_path / "inst", hooks={"wait_seconds": 0})
    try:
        yield installation
    finally:
        kill_agents_on(installation.socket)


SPOILER_PARAMS = [
    pytest.param(name, marks=needs_root) if name == "foreign" else name for name in SPOILERS
]


# -- the state dir and its lock -------------------------------------------------------


@pytest.mark.parametrize("spoiler", SPOILER_PARAMS)
def test_the_supervisor_refuses_an_unsafe_state_dir(setup: Setup, spoiler: str) -> None:
    spoil, needle = SPOILERS[spoiler]
    spoil(setup.state_dir)
    result = cli("run", config=setup.config, timeout=20)
    assert result.returncode == 3, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("backuppc-agent:")]
    assert len(lines) == 1, result.stderr
    assert needle in lines[0]
    assert "state directory" in lines[0]
    assert agent_pids_on(setup.socket) == []
    assert not setup.socket.exists()


def test_the_supervisor_refuses_a_symlinked_lock_and_leaves_its_target_alone(
    setup: Setup,
) -> None:
    private_dir(setup.state_dir)
    victim = setup.root / "victim"
    victim.write_text("keep me\n")
    (setup.state_dir / "supervisor.lock").symlink_to(victim)
    result = cli("run", config=setup.config, timeout=20)
    assert result.returncode == 3, result.stderr
    assert "cannot lock" in result.stderr
    assert victim.read_text() == "keep me\n"
    assert agent_pids_on(setup.socket) == []


@pytest.mark.parametrize("spoiler", SPOILER_PARAMS)
def test_a_hook_does_not_record_into_an_unsafe_state_dir_and_says_so(
    setup: Setup, spoiler: str
) -> None:
    spoil, needle = SPOILERS[spoiler]
    spoil(setup.state_dir)
    done = cli("hook", "pre-archive", "--client", "web01", config=setup.config)
    # not ready (no agent): the same exit code it would have had, plus why it is unrecorded
    assert done.returncode == 5, done.stdout + done.stderr
    last = done.stdout.splitlines()[-1]
    assert last.startswith("backuppc-agent: this hook run was not recorded: state directory")
    assert needle in last
    real = setup.state_dir.resolve()
    assert not (real / "events.sqlite3").exists()


def test_a_symlinked_hook_store_is_not_followed(setup: Setup) -> None:
    private_dir(setup.state_dir)
    victim = setup.root / "victim.db"
    victim.write_bytes(b"not a database\n")
    (setup.state_dir / "events.sqlite3").symlink_to(victim)
    done = cli("hook", "pre-archive", "--client", "web01", config=setup.config)
    assert done.returncode == 5
    assert "this hook run was not recorded" in done.stdout
    assert victim.read_bytes() == b"not a database\n"


# -- the env file ---------------------------------------------------------------------


def env_setup(setup: Setup, env_dir: Path) -> Path:
    """Point agent.env_file into ``env_dir`` (apart from the socket's directory)."""
    env_file = env_dir / "agent.env"
    text = setup.config.read_text().replace(str(setup.env_file), str(env_file))
    setup.config.write_text(text)
    return env_file


@pytest.mark.parametrize("spoiler", SPOILER_PARAMS)
def test_an_unsafe_env_dir_gets_no_env_file_and_an_error_line(setup: Setup, spoiler: str) -> None:
    spoil, needle = SPOILERS[spoiler]
    env_dir = setup.root / "envdir"
    spoil(env_dir)
    env_file = env_setup(setup, env_dir)
    with running(setup) as sup:
        log = sup.logtext()
    assert "ERROR" in log
    assert f"cannot write env file: env file directory {env_dir} {needle}" in log
    assert not env_file.exists()
    assert not env_file.resolve().exists()


def test_an_env_file_symlink_is_replaced_not_followed(setup: Setup) -> None:
    victim = setup.root / "victim.profile"
    victim.write_text("export PATH=/usr/bin\n")
    setup.env_file.symlink_to(victim)
    with running(setup):
        pass
    assert victim.read_text() == "export PATH=/usr/bin\n"
    assert not setup.env_file.is_symlink()
    assert stat.S_IMODE(setup.env_file.stat().st_mode) == 0o600
    assert "SSH_AUTH_SOCK=" in setup.env_file.read_text()


# -- everything we create is private ----------------------------------------------------


def test_everything_created_is_private_even_under_umask_000(setup: Setup) -> None:
    os.rmdir(setup.socket.parent)  # let the supervisor create the socket dir itself
    env = {**os.environ}
    run = subprocess.Popen(
        [CLI, "--config", str(setup.config), "run"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        umask=0,
        env=env,
    )
    try:
        wait_for(lambda: setup.published("waiting"), timeout=15)
        hook = subprocess.run(
            [CLI, "--config", str(setup.config), "hook", "post-archive", "--client", "web01"],
            capture_output=True,
            text=True,
            timeout=30,
            umask=0,
            check=False,
        )
        assert hook.returncode == 0, hook.stdout + hook.stderr
        created = [setup.socket.parent, *setup.socket.parent.rglob("*")]
        created += [setup.state_dir, *setup.state_dir.rglob("*")]
        modes = {str(path): stat.S_IMODE(path.lstat().st_mode) for path in created}
    finally:
        run.terminate()
        run.wait(timeout=10)
    assert str(setup.state_dir / "events.sqlite3") in modes
    assert str(setup.env_file) in modes
    loose = {path: oct(mode) for path, mode in modes.items() if mode & 0o077}
    assert loose == {}
